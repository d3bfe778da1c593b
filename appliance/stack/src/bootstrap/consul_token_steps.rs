//! `consul-tokens`: the gossip key's copy in Vault, the per-profile node
//! policies, the agent token (set on the agent) and the assignments sync's
//! token (copied to the data partition for `kindlingd api`). The parts write
//! different things and none reads what another writes, so they are sent at
//! the same time.
//!
//! `consul-connect-ca`: with `connect_vault_ca`, Connect's CA switched to
//! Vault; a step of its own because it is slow (Consul makes its CA in
//! Vault) and nothing after it needs it.
//!
//! Every part keeps what is in place: a part cut off by another's failure
//! is finished by the next run. Must never put a token anywhere but Vault,
//! the agent, and the assignments token's file.

use super::acl_steps::kept_or_new_consul_token;
use super::policies::{self, KV_MOUNT};
use super::{Outcome, Run, StepError};
use crate::consul::ConsulApi;
use crate::vault::VaultApi;
use futures_util::future::try_join_all;
use serde_json::{json, Value};

const CONSUL_AGENT: &str = "stack/consul/agent";
const CONSUL_GOSSIP: &str = "stack/consul/gossip";
const CONSUL_CONNECT_CA: &str = "stack/consul/connect-ca-vault-token";
const CONSUL_ASSIGNMENTS: &str = "stack/consul/assignments";

/// What a part did in this run, for the step's detail.
type Did = Option<&'static str>;

pub(super) async fn consul_tokens(run: &Run) -> Result<Outcome, StepError> {
    if !run.opts.site.stack.consul.enabled {
        return Ok(Outcome::skipped("stack.consul.enabled = false"));
    }
    let consul = run.consul_admin()?;
    let vault = run.vault_authed()?;
    let (gossip, _, agent, assignments) = tokio::try_join!(
        gossip_key(run, &vault),
        node_policies(run, &consul),
        agent_token(run, &consul),
        assignments_token(run, &consul),
    )?;
    let (assignments_made, assignments_copied) = assignments;
    let done: Vec<&str> = [gossip, agent, assignments_made, assignments_copied]
        .into_iter()
        .flatten()
        .collect();
    if done.is_empty() {
        Ok(Outcome::already("agent token set; policies checked"))
    } else {
        Ok(Outcome::done(format!(
            "{}; agent token set",
            done.join("; ")
        )))
    }
}

/// Gossip key: rendered from the data partition; Vault keeps a copy for nodes.
async fn gossip_key(run: &Run, vault: &VaultApi) -> Result<Did, StepError> {
    let key = crate::render::ensure_gossip_key(&run.opts.layout.state_dir())?;
    let stored = vault.kv_read(KV_MOUNT, CONSUL_GOSSIP).await?;
    if stored
        .as_ref()
        .and_then(|v| v.get("key"))
        .and_then(Value::as_str)
        == Some(key.as_str())
    {
        return Ok(None);
    }
    vault
        .kv_write(KV_MOUNT, CONSUL_GOSSIP, &json!({"key": key}))
        .await?;
    Ok(Some("gossip key stored in Vault"))
}

async fn node_policies(run: &Run, consul: &ConsulApi) -> Result<(), StepError> {
    try_join_all(run.opts.site.profiles.keys().map(|name| async move {
        let profile = name.to_string();
        consul
            .upsert_policy(
                &format!("node-{profile}"),
                &policies::consul_node_rules(&profile),
                &format!("kindling nodes of profile {profile}"),
            )
            .await
    }))
    .await?;
    Ok(())
}

/// The appliance agent's token, set on the agent.
async fn agent_token(run: &Run, consul: &ConsulApi) -> Result<Did, StepError> {
    consul
        .upsert_policy(
            "kindling-agent",
            policies::CONSUL_AGENT_RULES,
            "kindling appliance agent",
        )
        .await?;
    let (agent, created) = kept_or_new_consul_token(
        run,
        consul,
        CONSUL_AGENT,
        "kindling appliance agent",
        "kindling-agent",
    )
    .await?;
    consul.set_agent_token(&agent).await?;
    Ok(created.then_some("agent token created"))
}

/// The assignments sync's token: recorded in Vault like every Consul token
/// kindling makes, copied to the data partition for `kindlingd api` (which
/// must keep syncing while Vault is sealed). Whether it was made, and
/// whether the copy was written.
async fn assignments_token(run: &Run, consul: &ConsulApi) -> Result<(Did, Did), StepError> {
    crate::assignments::upsert_policy(consul).await?;
    let (assignments, created) = kept_or_new_consul_token(
        run,
        consul,
        CONSUL_ASSIGNMENTS,
        "kindling assignments sync",
        crate::assignments::POLICY,
    )
    .await?;
    let copied = if run.store.read_consul_assignments_token()?.as_deref() != Some(&assignments) {
        run.store.write_consul_assignments_token(&assignments)?;
        Some("assignments token copied for the API's KV sync")
    } else {
        None
    };
    Ok((created.then_some("assignments token created"), copied))
}

/// Connect's CA switched to Vault (`connect_vault_ca`), with a token from
/// the `consul-connect-ca` role kept in Vault.
pub(super) async fn connect_ca(run: &Run) -> Result<Outcome, StepError> {
    let st = &run.opts.site.stack;
    if !st.consul.enabled {
        return Ok(Outcome::skipped("stack.consul.enabled = false"));
    }
    if !(st.consul.connect_vault_ca && st.vault.enabled) {
        return Ok(Outcome::skipped(
            "Connect keeps Consul's own CA (connect_vault_ca = false or no Vault)",
        ));
    }
    let consul = run.consul_admin()?;
    let vault = run.vault_authed()?;
    if consul.connect_ca_provider().await? == "vault" {
        return Ok(Outcome::already("Connect's CA is Vault"));
    }
    vault
        .set_policy("consul-connect-ca", policies::CONSUL_CONNECT_CA_POLICY)
        .await?;
    let token = match vault.kv_read(KV_MOUNT, CONSUL_CONNECT_CA).await? {
        Some(v) if v.get("token").and_then(Value::as_str).is_some() => {
            v["token"].as_str().unwrap_or_default().to_string()
        }
        _ => {
            let t = vault
                .create_role_token("consul-connect-ca", "consul-connect-ca")
                .await?;
            vault
                .kv_write(KV_MOUNT, CONSUL_CONNECT_CA, &json!({"token": t}))
                .await?;
            t
        }
    };
    let config = json!({
        "Address": run.opts.layout.vault_local_url(),
        "Token": token,
        "RootPKIPath": "connect_root",
        "IntermediatePKIPath": "connect_inter",
    });
    consul.set_connect_ca("vault", &config).await?;
    Ok(Outcome::done("Connect CA switched to Vault"))
}
