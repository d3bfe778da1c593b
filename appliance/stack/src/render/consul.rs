//! Consul server config: one-server datacenter on the LAN address, gossip
//! encryption, ACLs on with default deny, Connect on. Connect's CA provider is
//! switched to Vault by the bootstrap through Consul's API (it needs a Vault
//! token that exists only after Vault is set up), not here.

use super::{lan_address, RenderError};
use crate::layout::StackLayout;
use kindling_site::SiteConfig;
use serde_json::{json, Value};

pub fn consul_config(
    site: &SiteConfig,
    layout: &StackLayout,
    gossip_key: &str,
    node_id: &str,
) -> Result<Value, RenderError> {
    let lan = lan_address(site)?;
    let p = &layout.ports;
    let client_addr = if lan == layout.loopback {
        lan.to_string()
    } else {
        format!("{} {}", layout.loopback, lan)
    };
    Ok(json!({
        "datacenter": site.stack.datacenter,
        "node_name": site.site.hostname,
        // Ours, written durably: Consul's own node-id file is not fsynced and
        // can come back empty after a power cut, which stops Consul for good.
        "node_id": node_id,
        "domain": site.dns.consul_domain,
        "server": true,
        "bootstrap_expect": 1,
        "data_dir": layout.consul_data(),
        "bind_addr": lan.to_string(),
        "advertise_addr": lan.to_string(),
        "client_addr": client_addr,
        "ports": {
            "http": p.consul_http,
            "dns": p.consul_dns,
            "server": p.consul_server,
            "serf_lan": p.consul_serf_lan,
            "serf_wan": p.consul_serf_wan,
        },
        "encrypt": gossip_key,
        "acl": {
            "enabled": true,
            "default_policy": "deny",
            "down_policy": "extend-cache",
            // The agent token set by the bootstrap survives a Consul restart.
            "enable_token_persistence": true,
        },
        "connect": { "enabled": true },
        "node_meta": { "kindling-role": "appliance" },
        // One server: elect at once instead of the production-safe 5x timers.
        "performance": { "raft_multiplier": 1 },
        "ui": true,
        "disable_update_check": true,
        "log_level": "INFO",
    }))
}
