//! `consul-config`: the Consul client agent's configuration
//! (`/etc/consul.d/kindling.json`, 0640, root: it holds
//! the token and the gossip key), from what earlier steps put on disk: join
//! the appliance, gossip encrypted, TLS with the node's certificate checking
//! the servers' names, ACLs with the node's token, and node metadata from
//! the profile (its tags, `profile`).

use super::Ctx;
use crate::error::StepError;
use crate::files::{paths, Root};
use serde_json::{json, Map, Value};

pub(super) fn run(ctx: &mut Ctx) -> Result<String, StepError> {
    let who = ctx.identity()?.clone();
    let stack = ctx.stack()?.clone();
    let secret = |rel: &str| -> Result<String, StepError> {
        ctx.root
            .read_string(rel)?
            .map(|s| s.trim().to_string())
            .ok_or_else(|| StepError::Config(format!("{} is missing", Root::on_node(rel))))
    };
    let token = secret(paths::CONSUL_TOKEN)?;
    let gossip = secret(paths::CONSUL_GOSSIP)?;
    let meta = node_meta(&who.profile, &who.tags)?;
    let config = json!({
        "datacenter": stack.datacenter,
        "node_name": who.hostname,
        "server": false,
        "data_dir": Root::on_node(paths::CONSUL_DATA),
        "client_addr": "127.0.0.1",
        "retry_join": stack.consul_join,
        "encrypt": gossip,
        "encrypt_verify_incoming": true,
        "encrypt_verify_outgoing": true,
        "ca_file": Root::on_node(paths::TLS_CA),
        "cert_file": Root::on_node(paths::TLS_CERT),
        "key_file": Root::on_node(paths::TLS_KEY),
        "verify_incoming": false,
        "verify_outgoing": true,
        "verify_server_hostname": true,
        "tls_min_version": "tls12",
        "acl": {
            "enabled": true,
            "default_policy": "deny",
            "down_policy": "extend-cache",
            "tokens": {"agent": token, "default": token},
        },
        "node_meta": meta,
        "disable_update_check": true,
    });
    let text = serde_json::to_vec_pretty(&config)
        .map_err(|e| StepError::Config(format!("rendering the Consul config: {e}")))?;
    ctx.root.create_dir(paths::CONSUL_DATA, 0o750)?;
    if ctx.root.write(paths::CONSUL_CONFIG, &text, 0o640)? {
        ctx.changed.insert("consul");
        Ok(format!("{} written", Root::on_node(paths::CONSUL_CONFIG)))
    } else {
        Ok(format!("{} unchanged", Root::on_node(paths::CONSUL_CONFIG)))
    }
}

/// The node meta key naming the profile; the appliance's catalog check
/// (`kindling_inventory::membership::PROFILE_META`) expects this one.
pub const PROFILE_META: &str = "kindling-profile";

/// The profile's tags and its name as Consul node metadata, checked
/// against Consul's rules (keys of letters, digits, `-` and `_`, at most
/// 128; values at most 512; the `consul-` prefix is Consul's own).
pub(super) fn node_meta(
    profile: &str,
    tags: &std::collections::BTreeMap<String, String>,
) -> Result<Map<String, Value>, StepError> {
    let mut meta = Map::new();
    for (k, v) in tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([(PROFILE_META, profile)])
    {
        let key_ok = !k.is_empty()
            && k.len() <= 128
            && !k.starts_with("consul-")
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !key_ok || v.len() > 512 {
            return Err(StepError::Config(format!(
                "profile tag {k:?} cannot be Consul node metadata (keys: letters, digits, - and _, at most 128, not consul-*; values at most 512 bytes)"
            )));
        }
        meta.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The appliance judges `joined` by this key: the two must agree.
    #[test]
    fn the_profile_key_is_the_one_the_appliance_checks() {
        assert_eq!(PROFILE_META, kindling_inventory::membership::PROFILE_META);
    }

    #[test]
    fn tags_become_node_metadata_or_a_clear_error() {
        let tags = [("env".to_string(), "dev".to_string())].into();
        let meta = node_meta("dev", &tags).unwrap();
        assert_eq!(
            Value::Object(meta),
            json!({"env": "dev", "kindling-profile": "dev"})
        );
        for bad in ["consul-x", "has space", ""] {
            let tags = [(bad.to_string(), "v".to_string())].into();
            let err = node_meta("dev", &tags).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
