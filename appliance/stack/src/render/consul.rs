//! Consul server config: one-server datacenter on the LAN address, gossip
//! encryption, ACLs on with default deny, Connect on, TLS everywhere a node
//! can reach: RPC and the HTTPS API ask for a client certificate
//! (`verify_incoming`), Consul checks the servers it dials
//! (`verify_outgoing`, `verify_server_hostname`). Plain HTTP and DNS listen
//! on loopback only, for the appliance itself. Connect's CA provider is
//! switched to Vault by the bootstrap through Consul's API (it needs a Vault
//! token that exists only after Vault is set up), not here.

use super::{exposed_on_uplink, lan_address, RenderError};
use crate::layout::StackLayout;
use crate::tls::{self, Leaf};
use kindling_site::SiteConfig;
use serde_json::{json, Value};

/// The names Consul's certificate must carry: `server.<dc>.<domain>` is what
/// `verify_server_hostname` checks (Consul 1.8), the rest what HTTPS clients dial.
pub fn certificate_names(
    site: &SiteConfig,
    layout: &StackLayout,
) -> Result<Vec<String>, RenderError> {
    let domain = site.dns.consul_domain.trim_matches('.');
    super::server_names(
        format!("server.{}.{domain}", site.stack.datacenter),
        site,
        layout,
    )
}

pub fn consul_config(
    site: &SiteConfig,
    layout: &StackLayout,
    gossip_key: &str,
    node_id: &str,
) -> Result<Value, RenderError> {
    let lan = lan_address(site)?;
    let p = &layout.ports;
    let state = layout.state_dir();
    let cert = tls::leaf_files(&state, Leaf::Consul);
    let https = if exposed_on_uplink(site, "consul") {
        "0.0.0.0".to_string()
    } else {
        lan.to_string()
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
        "client_addr": layout.loopback.to_string(),
        "addresses": {
            "http": layout.loopback.to_string(),
            "https": https,
            "dns": layout.loopback.to_string(),
        },
        "ports": {
            "http": p.consul_http,
            "https": p.consul_https,
            "dns": p.consul_dns,
            "server": p.consul_server,
            "serf_lan": p.consul_serf_lan,
            "serf_wan": p.consul_serf_wan,
        },
        "encrypt": gossip_key,
        "encrypt_verify_incoming": true,
        "encrypt_verify_outgoing": true,
        // Client certificates from the appliance CA (the appliance's own)
        // and from Vault's PKI (nodes): the bundle holds both roots.
        "ca_file": tls::trust_bundle_file(&state),
        "cert_file": cert.cert,
        "key_file": cert.key,
        "verify_incoming": true,
        "verify_outgoing": true,
        "verify_server_hostname": true,
        "tls_min_version": "tls12",
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
