//! `consul-token`: the node's Consul token (made ahead of time by the
//! appliance's bootstrap, node identity `<hostname>`, readable only by this
//! node's login), Consul's gossip key and the profile's tags, from Vault KV.
//! The token and the key are kept root-only for `consul-config`.

use super::Ctx;
use crate::error::StepError;
use crate::files::paths;
use serde_json::Value;
use std::collections::BTreeMap;

const KV_MOUNT: &str = "kindling";

pub(super) async fn run(ctx: &mut Ctx) -> Result<String, StepError> {
    let Some(vault) = ctx.vault.as_ref() else {
        if ctx.root.exists(paths::CONSUL_TOKEN) && ctx.root.exists(paths::CONSUL_GOSSIP) {
            return Ok("already on disk".into());
        }
        return Err(StepError::NeedsLogin {
            what: "the Consul token or gossip key".into(),
        });
    };
    let who = ctx.identity()?.clone();
    let read = |path: String| async move {
        vaultrs::kv2::read::<Value>(vault, KV_MOUNT, &path)
            .await
            .map_err(|e| {
                if crate::vault::is_status(&e, 404) {
                    StepError::Vault(format!("Vault KV {KV_MOUNT}/{path} does not exist"))
                } else {
                    crate::vault::error(&format!("read {KV_MOUNT}/{path}"), e)
                }
            })
    };
    let token = read(format!("nodes/{}/consul", who.mac))
        .await
        .map_err(|e| {
            StepError::Vault(format!(
            "{e} (the appliance makes Consul tokens ahead of time for the nodes its site names)"
        ))
        })?;
    let token = token
        .get("secret_id")
        .and_then(Value::as_str)
        .ok_or_else(|| StepError::Vault("the node's Consul entry has no secret_id".into()))?
        .to_string();
    let gossip = read("stack/consul/gossip".into()).await?;
    let gossip = gossip
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| StepError::Vault("the gossip entry has no key".into()))?
        .to_string();
    let profile = read(format!("profiles/{}/meta", who.profile)).await?;
    let tags: BTreeMap<String, String> = profile
        .get("tags")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    ctx.root.create_dir("etc/kindling/secrets", 0o700)?;
    let a = ctx
        .root
        .write(paths::CONSUL_TOKEN, token.as_bytes(), 0o600)?;
    let b = ctx
        .root
        .write(paths::CONSUL_GOSSIP, gossip.as_bytes(), 0o600)?;
    if let Some(node) = ctx.state.node.as_mut() {
        node.tags = tags;
    }
    ctx.state.save(&ctx.root)?;
    Ok(if a || b {
        format!(
            "token and gossip key written to {}",
            crate::files::Root::on_node("etc/kindling/secrets")
        )
    } else {
        "token and gossip key unchanged".into()
    })
}
