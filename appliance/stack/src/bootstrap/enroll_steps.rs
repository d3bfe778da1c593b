//! The `enrollment` step: everything node enrollment needs that takes more
//! power than minting a grant, done here once per boot so the LAN-facing PXE
//! service never holds that power.
//!
//! - the Vault policy `kindling-enroll` ([`policies::enroll_policy`]), from
//!   the site's profiles and grant life;
//! - the enrollment token (orphan, periodic, that policy only, no default
//!   policy), kept at `<state>/for-pxe/enroll-token` (0640, group pxe) for the PXE service;
//! - per profile, `kindling/profiles/<name>/meta` (profile and tags) in
//!   Vault KV, which every node of the profile may read;
//! - per node the site names, `kindling/nodes/<mac>/meta` and, with Consul,
//!   the node's Consul token (its node identity, policy `node-<profile>`) at
//!   `kindling/nodes/<mac>/consul`, which only that node may read.
//!
//! Idempotent: what is in place is left alone, so a rerun is "already done".

use super::policies::{self, ENROLL_POLICY, KV_MOUNT};
use super::{Outcome, Run, StepError};
use crate::consul::ConsulApi;
use crate::enroll::mac_key;
use crate::vault::VaultApi;
use serde_json::{json, Value};

pub(super) async fn enrollment(run: &Run) -> Result<Outcome, StepError> {
    if !run.opts.site.stack.vault.enabled {
        return Ok(Outcome::skipped("stack.vault.enabled = false"));
    }
    let vault = run.vault_authed()?;
    let mut done: Vec<String> = Vec::new();
    let site = &run.opts.site;

    let rules = policies::enroll_policy(
        site.profiles.keys().map(|p| p.as_str()),
        site.enrollment.grant_ttl_secs.secs(),
    );
    if vault.policy_text(ENROLL_POLICY).await?.as_deref() != Some(rules.as_str()) {
        vault.set_policy(ENROLL_POLICY, &rules).await?;
        done.push(format!("policy {ENROLL_POLICY} written"));
    }

    match run.store.read_enroll_token()? {
        Some(token) if vault.with_token(&token).token_valid().await? => {
            vault.with_token(&token).renew_self().await?;
        }
        _ => {
            // The token role (written by `vault-setup`) makes it orphan,
            // periodic and without the `default` policy.
            let token = vault
                .create_role_token(ENROLL_POLICY, "kindling-enroll")
                .await?;
            run.store.write_enroll_token(&token)?;
            done.push("enrollment token created".into());
        }
    }

    let mut entries = 0;
    for (name, profile) in &site.profiles {
        let want = json!({"profile": name.as_str(), "tags": profile.tags});
        if put_if_changed(&vault, &format!("profiles/{name}/meta"), &want).await? {
            entries += 1;
        }
    }
    for node in &site.nodes {
        let key = mac_key(&node.mac.to_string()).unwrap_or_default();
        let hostname = node
            .hostname
            .clone()
            .unwrap_or_else(|| node.mac.default_hostname());
        let tags = site
            .profiles
            .get(node.profile.as_str())
            .map(|p| json!(p.tags))
            .unwrap_or(Value::Null);
        let want = json!({"mac": key, "profile": node.profile.as_str(), "hostname": hostname, "tags": tags});
        if put_if_changed(&vault, &format!("nodes/{key}/meta"), &want).await? {
            entries += 1;
        }
    }
    if entries > 0 {
        done.push(format!(
            "{entries} Vault KV entr(ies) for profiles and nodes"
        ));
    }

    if site.stack.consul.enabled {
        let consul = run.consul_admin()?;
        let mut created = 0;
        for node in &site.nodes {
            if ensure_node_consul_token(run, &vault, &consul, node).await? {
                created += 1;
            }
        }
        if created > 0 {
            done.push(format!("{created} node Consul token(s)"));
        }
    }

    let nodes = site.nodes.len();
    Ok(if done.is_empty() {
        Outcome::already(format!(
            "enrollment token valid (renewed); policy and entries for {nodes} node(s) in place"
        ))
    } else {
        Outcome::done(done.join("; "))
    })
}

/// Writes `data` at `kindling/<path>` unless it is there already; true if written.
async fn put_if_changed(vault: &VaultApi, path: &str, data: &Value) -> Result<bool, StepError> {
    if vault.kv_read(KV_MOUNT, path).await?.as_ref() == Some(data) {
        return Ok(false);
    }
    vault.kv_write(KV_MOUNT, path, data).await?;
    Ok(true)
}

/// The Consul token of one node the site names, made once: node identity
/// (its hostname) in the stack's datacenter, policy `node-<profile>`,
/// recorded where only that node's Vault login can read it. True if made.
async fn ensure_node_consul_token(
    run: &Run,
    vault: &VaultApi,
    consul: &ConsulApi,
    node: &kindling_site::NodeAssignment,
) -> Result<bool, StepError> {
    let key = mac_key(&node.mac.to_string()).unwrap_or_default();
    let path = format!("nodes/{key}/consul");
    let stored = vault.kv_read(KV_MOUNT, &path).await?;
    if stored
        .as_ref()
        .and_then(|v| v.get("secret_id"))
        .and_then(Value::as_str)
        .is_some()
    {
        return Ok(false);
    }
    let hostname = node
        .hostname
        .clone()
        .unwrap_or_else(|| node.mac.default_hostname());
    let policy = policies::node_role(node.profile.as_str());
    let token = consul
        .create_token(
            &format!("kindling node {hostname} ({key})"),
            &[policy.as_str()],
            &[(hostname, run.opts.site.stack.datacenter.clone())],
        )
        .await?;
    vault
        .kv_write(
            KV_MOUNT,
            &path,
            &json!({"accessor_id": token.accessor_id, "secret_id": token.secret_id}),
        )
        .await?;
    Ok(true)
}
