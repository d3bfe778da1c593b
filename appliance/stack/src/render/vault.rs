//! Vault (or OpenBao) server config: integrated raft storage by default,
//! Consul storage as an option; two listeners: plain HTTP on loopback (its
//! own port) for the appliance's own calls (never leaves the machine), TLS
//! on the LAN address (every address when the site exposes Vault on the
//! uplink) with a certificate from the appliance CA for nodes; a file audit
//! device in Vault's own directory, kept within a size bound by init.

use super::{exposed_on_uplink, lan_address, RenderError};
use crate::layout::StackLayout;
use crate::tls;
use kindling_site::{SiteConfig, VaultStorage};
use serde_json::{json, Value};

/// Where the bootstrap keeps Vault's Consul storage token (storage = consul).
pub fn consul_storage_token_file(layout: &StackLayout) -> std::path::PathBuf {
    layout.state_dir().join("vault-consul-storage.token")
}

/// `consul_storage_token`: the token Vault's Consul storage uses; the
/// bootstrap creates it after Consul's ACL bootstrap, so the first render
/// has none (Vault then answers errors until it is restarted with it).
pub fn vault_config(
    site: &SiteConfig,
    layout: &StackLayout,
    consul_storage_token: Option<&str>,
) -> Result<Value, RenderError> {
    let lan = lan_address(site)?;
    let p = &layout.ports;
    let files = tls::tls_files(&layout.state_dir());
    let storage = match site.stack.vault.storage {
        VaultStorage::Raft => json!({
            "raft": {
                "path": layout.vault_data(),
                "node_id": site.site.hostname,
                // One node: elect at once (init takes ~2 s instead of ~7 s).
                "performance_multiplier": 1,
            }
        }),
        VaultStorage::Consul => {
            let mut consul = json!({
                "address": format!("{}:{}", layout.loopback, p.consul_http),
                "path": "vault/",
            });
            if let Some(token) = consul_storage_token {
                consul["token"] = json!(token);
            }
            json!({ "consul": consul })
        }
    };
    let tls_address = if exposed_on_uplink(site, "vault") {
        format!("0.0.0.0:{}", p.vault_api)
    } else {
        format!("{lan}:{}", p.vault_api)
    };
    let listeners = vec![
        json!({
            "tcp": {
                "address": format!("{}:{}", layout.loopback, p.vault_local),
                "tls_disable": true,
                // The lab's local-unseal mode regenerates a lost bootstrap
                // token's root from the local shares here (OpenBao ≥ 2.5.3
                // turned the share-only `sys/generate-root/*` routes off).
                "disable_unauthed_generate_root_endpoints": false,
            }
        }),
        json!({
            "tcp": {
                "address": tls_address,
                "cluster_address": format!("{lan}:{}", p.vault_cluster),
                "tls_cert_file": files.server_cert,
                "tls_key_file": files.server_key,
                "tls_min_version": "tls12",
                // The operators' recovery: a root token from their key
                // shares alone (docs/security/stack.md). The price: a LAN
                // host can cancel a generation in progress (audited).
                "disable_unauthed_generate_root_endpoints": false,
            }
        }),
    ];
    Ok(json!({
        "storage": storage,
        "listener": listeners,
        "api_addr": format!("https://{lan}:{}", p.vault_api),
        "cluster_addr": format!("https://{lan}:{}", p.vault_cluster),
        "cluster_name": format!("kindling-{}", site.site.id),
        // OpenBao creates audit devices only from its config (declarative);
        // the bootstrap checks it exists (and enables it by API on Vault).
        // Keep "description": HCL's JSON reader flattens an object with a
        // single key, and `{"file":{"file":{"options":…}}}` alone fails to
        // parse ("audit type must be specified").
        "audit": [{
            "file": {
                "file": {
                    "description": "kindling: every request, secrets HMAC'd",
                    "options": { "file_path": layout.vault_audit_log(), "mode": "0600" },
                }
            }
        }],
        "ui": true,
        "log_level": "info",
    }))
}
