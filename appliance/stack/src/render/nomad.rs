//! Nomad server config: one server, ACLs on, Consul and Vault integration,
//! mutual TLS on HTTP and RPC (`tls` block: `verify_https_client`,
//! `verify_server_hostname`) and gossip encryption (`server.encrypt`).
//! The tokens Nomad needs for Consul and Vault exist only after the
//! bootstrap created them; it writes them to `nomad.d/50-kindling-tokens.json`
//! (Nomad merges every file of its config directory) and restarts Nomad, so
//! this base file has Vault integration off.
//!
//! Checked against Nomad's published agent configuration documentation
//! (`tls`, `server`, `addresses` blocks) by the Nomad test double's config
//! check; real Nomad is not available on the build machines.

use super::{exposed_on_uplink, lan_address, RenderError};
use crate::layout::StackLayout;
use crate::tls::{self, Leaf};
use kindling_site::SiteConfig;
use serde_json::{json, Value};

/// Nomad's region: one appliance, the default region.
pub const REGION: &str = "global";

/// The names Nomad's certificate must carry: `server.<region>.nomad` is what
/// `verify_server_hostname` checks; the rest what HTTPS clients dial.
pub fn certificate_names(
    site: &SiteConfig,
    layout: &StackLayout,
) -> Result<Vec<String>, RenderError> {
    super::server_names(format!("server.{REGION}.nomad"), site, layout)
}

pub fn nomad_config(
    site: &SiteConfig,
    layout: &StackLayout,
    gossip_key: &str,
) -> Result<Value, RenderError> {
    let lan = lan_address(site)?;
    let p = &layout.ports;
    let state = layout.state_dir();
    let cert = tls::leaf_files(&state, Leaf::Nomad);
    let http = if exposed_on_uplink(site, "nomad") {
        "0.0.0.0".to_string()
    } else if lan == layout.loopback {
        lan.to_string()
    } else {
        format!("{} {}", layout.loopback, lan)
    };
    let mut config = json!({
        "region": REGION,
        "datacenter": site.stack.datacenter,
        "name": site.site.hostname,
        "data_dir": layout.nomad_data(),
        "bind_addr": lan.to_string(),
        "addresses": { "http": http, "rpc": lan.to_string(), "serf": lan.to_string() },
        "advertise": { "http": lan.to_string(), "rpc": lan.to_string(), "serf": lan.to_string() },
        "ports": { "http": p.nomad_http, "rpc": p.nomad_rpc, "serf": p.nomad_serf },
        "server": { "enabled": true, "bootstrap_expect": 1, "encrypt": gossip_key },
        "acl": { "enabled": true },
        "tls": {
            "http": true,
            "rpc": true,
            // Client certificates from the appliance CA (the bootstrap) and
            // Vault's PKI (nodes): the bundle holds both roots.
            "ca_file": tls::trust_bundle_file(&state),
            "cert_file": cert.cert,
            "key_file": cert.key,
            "verify_server_hostname": true,
            "verify_https_client": true,
            "tls_min_version": "tls12",
        },
        "vault": {
            "enabled": false,
            "address": layout.vault_local_url(),
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
