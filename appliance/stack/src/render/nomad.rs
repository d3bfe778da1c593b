//! Nomad server config: one server, ACLs on, Consul and Vault integration.
//! The tokens Nomad needs for Consul and Vault exist only after the
//! bootstrap created them; it writes them to `nomad.d/50-kindling-tokens.json`
//! (Nomad merges every file of its config directory) and restarts Nomad, so
//! this base file has Vault integration off.

use super::{lan_address, RenderError};
use crate::layout::StackLayout;
use kindling_site::SiteConfig;
use serde_json::{json, Value};

pub fn nomad_config(site: &SiteConfig, layout: &StackLayout) -> Result<Value, RenderError> {
    let lan = lan_address(site)?;
    let p = &layout.ports;
    let http = if lan == layout.loopback {
        lan.to_string()
    } else {
        format!("{} {}", layout.loopback, lan)
    };
    let mut config = json!({
        "datacenter": site.stack.datacenter,
        "name": site.site.hostname,
        "data_dir": layout.nomad_data(),
        "bind_addr": lan.to_string(),
        "addresses": { "http": http, "rpc": lan.to_string(), "serf": lan.to_string() },
        "advertise": { "http": lan.to_string(), "rpc": lan.to_string(), "serf": lan.to_string() },
        "ports": { "http": p.nomad_http, "rpc": p.nomad_rpc, "serf": p.nomad_serf },
        "server": { "enabled": true, "bootstrap_expect": 1 },
        "acl": { "enabled": true },
        "vault": {
            "enabled": false,
            "address": format!("http://{}:{}", layout.loopback, p.vault_api),
            "create_from_role": "nomad-cluster",
        },
        "disable_update_check": true,
        "log_level": "INFO",
    });
    if site.stack.consul.enabled {
        config["consul"] = json!({
            "address": format!("{}:{}", layout.loopback, p.consul_http),
            "server_service_name": "nomad",
            "auto_advertise": true,
            "server_auto_join": true,
            "client_auto_join": true,
        });
    }
    Ok(config)
}
