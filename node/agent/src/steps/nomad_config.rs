//! `nomad-config`: the Nomad client's configuration
//! (`/etc/nomad.d/kindling.json`, 0640: it holds the Consul token): client
//! only, the appliance's servers, mutual TLS with the node's certificate
//! (servers' names checked), ACLs on, the local Consul agent with the
//! node's token, and the profile's tags as client metadata. Only parameters
//! Nomad documents (checked by the Nomad double's key list in the tests).
//! Nothing where node.json names no Nomad servers (the site runs no Nomad).

use super::Ctx;
use crate::error::StepError;
use crate::files::{paths, Root};
use serde_json::json;

pub(super) fn run(ctx: &mut Ctx) -> Result<String, StepError> {
    let stack = ctx.stack()?.clone();
    if !ctx.runs_nomad() {
        return Ok(
            "the site runs no Nomad (node.json names no Nomad servers): no Nomad client".into(),
        );
    }
    let who = ctx.identity()?.clone();
    let token = ctx
        .root
        .read_string(paths::CONSUL_TOKEN)?
        .map(|s| s.trim().to_string())
        .ok_or_else(|| {
            StepError::Config(format!("{} is missing", Root::on_node(paths::CONSUL_TOKEN)))
        })?;
    let meta = super::consul_config::node_meta(&who.profile, &who.tags)?;
    let config = json!({
        "region": "global",
        "datacenter": stack.datacenter,
        "name": who.hostname,
        "data_dir": Root::on_node(paths::NOMAD_DATA),
        "disable_update_check": true,
        "server": {"enabled": false},
        "client": {
            "enabled": true,
            "servers": stack.nomad_servers,
            "meta": meta,
        },
        "acl": {"enabled": true},
        "tls": {
            "http": true,
            "rpc": true,
            "ca_file": Root::on_node(paths::TLS_CA),
            "cert_file": Root::on_node(paths::TLS_CERT),
            "key_file": Root::on_node(paths::TLS_KEY),
            "verify_server_hostname": true,
            "verify_https_client": false,
        },
        "consul": {"address": "127.0.0.1:8500", "token": token},
    });
    let text = serde_json::to_vec_pretty(&config)
        .map_err(|e| StepError::Config(format!("rendering the Nomad config: {e}")))?;
    ctx.root.create_dir(paths::NOMAD_DATA, 0o700)?;
    if ctx.root.write(paths::NOMAD_CONFIG, &text, 0o640)? {
        ctx.changed.insert("nomad");
        Ok(format!("{} written", Root::on_node(paths::NOMAD_CONFIG)))
    } else {
        Ok(format!("{} unchanged", Root::on_node(paths::NOMAD_CONFIG)))
    }
}
