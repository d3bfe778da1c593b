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
//!   `kindling/nodes/<mac>/consul`, which only that node may read;
//! - the roles nodes issue their own certificates with: `pki_int/roles/node`
//!   and `ssh/roles/node-host` ([`policies::node_pki_role`],
//!   [`policies::node_ssh_role`]), templated on the AppRole mount's accessor.
//!
//! Idempotent: what is in place is left alone, so a rerun is "already done".

use super::policies::{self, ENROLL_POLICY, KV_MOUNT};
use super::{Outcome, Run, StepError};
use crate::consul::ConsulApi;
use crate::enroll::mac_key;
use crate::vault::VaultApi;
use futures_util::future::try_join_all;
use serde_json::{json, Value};

pub(super) async fn enrollment(run: &Run) -> Result<Outcome, StepError> {
    if !run.opts.site.stack.vault.enabled {
        return Ok(Outcome::skipped("stack.vault.enabled = false"));
    }
    let vault = run.vault_authed()?;
    let consul = if run.opts.site.stack.consul.enabled {
        Some(run.consul_admin()?)
    } else {
        None
    };
    // Independent writes, sent at once; each keeps what is in place.
    let (policy, token, entries, tokens, ()) = tokio::try_join!(
        enroll_policy(run, &vault),
        enroll_token(run, &vault),
        kv_entries(run, &vault),
        node_consul_tokens(run, &vault, consul.as_ref()),
        node_issuing_roles(run, &vault),
    )?;
    let mut done: Vec<String> = [policy, token].into_iter().flatten().collect();
    if entries > 0 {
        done.push(format!(
            "{entries} Vault KV entr(ies) for profiles and nodes"
        ));
    }
    if tokens > 0 {
        done.push(format!("{tokens} node Consul token(s)"));
    }
    let nodes = run.opts.site.nodes.len();
    Ok(if done.is_empty() {
        Outcome::already(format!(
            "enrollment token valid (renewed); policy and entries for {nodes} node(s) in place"
        ))
    } else {
        Outcome::done(done.join("; "))
    })
}

async fn enroll_policy(run: &Run, vault: &VaultApi) -> Result<Option<String>, StepError> {
    let site = &run.opts.site;
    let roles = site
        .profiles
        .keys()
        .map(|p| policies::node_role(p.as_str()))
        .chain(site.nodes.iter().filter_map(|n| {
            mac_key(&n.mac.to_string())
                .ok()
                .map(|k| policies::site_node_role(&k))
        }));
    let rules = policies::enroll_policy(roles, site.enrollment.grant_ttl_secs.secs());
    if vault.policy_text(ENROLL_POLICY).await?.as_deref() == Some(rules.as_str()) {
        return Ok(None);
    }
    vault.set_policy(ENROLL_POLICY, &rules).await?;
    Ok(Some(format!("policy {ENROLL_POLICY} written")))
}

/// The PKI and SSH roles nodes issue for their own hostname with, written
/// every run (an overwrite with the same values changes nothing).
async fn node_issuing_roles(run: &Run, vault: &VaultApi) -> Result<(), StepError> {
    let accessor = vault
        .auth_mounts()
        .await?
        .get(&format!("{}/", policies::APPROLE_MOUNT))
        .map(|(_, acc)| acc.clone())
        .ok_or(StepError::NoApproleAccessor)?;
    let site = &run.opts.site;
    let pki = policies::node_pki_role(&accessor, &site.stack.datacenter);
    let ssh = policies::node_ssh_role(&accessor, &site.site.domain);
    let pki_path = format!(
        "{}/roles/{}",
        policies::PKI_INT_MOUNT,
        policies::NODE_PKI_ROLE
    );
    let ssh_path = format!("{}/roles/{}", policies::SSH_MOUNT, policies::NODE_SSH_ROLE);
    tokio::try_join!(
        vault.call(
            "write PKI role node",
            reqwest::Method::POST,
            &pki_path,
            Some(&pki),
        ),
        vault.call(
            "write SSH role node-host",
            reqwest::Method::POST,
            &ssh_path,
            Some(&ssh),
        ),
    )?;
    Ok(())
}

/// The PXE service's enrollment token: renewed while valid, else made anew.
async fn enroll_token(run: &Run, vault: &VaultApi) -> Result<Option<String>, StepError> {
    match run.store.read_enroll_token()? {
        Some(token) if vault.with_token(&token).token_valid().await? => {
            vault.with_token(&token).renew_self().await?;
            Ok(None)
        }
        _ => {
            // The token role (written by `vault-setup`) makes it orphan,
            // periodic and without the `default` policy.
            let token = vault
                .create_role_token(ENROLL_POLICY, "kindling-enroll")
                .await?;
            run.store.write_enroll_token(&token)?;
            Ok(Some("enrollment token created".into()))
        }
    }
}

/// The profiles' and site nodes' `meta` entries; how many were written.
async fn kv_entries(run: &Run, vault: &VaultApi) -> Result<usize, StepError> {
    let site = &run.opts.site;
    let mut wanted: Vec<(String, Value)> = Vec::new();
    for (name, profile) in &site.profiles {
        let want = json!({"profile": name.as_str(), "tags": profile.tags});
        wanted.push((format!("profiles/{name}/meta"), want));
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
        wanted.push((format!("nodes/{key}/meta"), want));
    }
    let written = try_join_all(
        wanted
            .iter()
            .map(|(path, data)| put_if_changed(vault, path, data)),
    )
    .await?;
    Ok(written.into_iter().filter(|w| *w).count())
}

/// The site nodes' Consul tokens (with Consul); how many were made.
async fn node_consul_tokens(
    run: &Run,
    vault: &VaultApi,
    consul: Option<&ConsulApi>,
) -> Result<usize, StepError> {
    let Some(consul) = consul else {
        return Ok(0);
    };
    let made = try_join_all(
        run.opts
            .site
            .nodes
            .iter()
            .map(|node| ensure_node_consul_token(run, vault, consul, node)),
    )
    .await?;
    Ok(made.into_iter().filter(|m| *m).count())
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
    let path = crate::node_tokens::kv_path(&node.mac);
    let stored = vault.kv_read(KV_MOUNT, &path).await?;
    if stored
        .as_ref()
        .and_then(|v| v.get("secret_id"))
        .and_then(Value::as_str)
        .is_some()
    {
        return Ok(false);
    }
    let token = crate::node_tokens::make(consul, &run.opts.site, node).await?;
    crate::node_tokens::record(vault, &node.mac, &token).await?;
    Ok(true)
}
