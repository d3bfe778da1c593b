//! Rendering: `SiteConfig` → the three services' config files (JSON, which
//! Consul, Vault/OpenBao and Nomad all read) and their service-table entries.
//!
//! Owns the files under `StackLayout::config_dir`, the data directories, the
//! Consul gossip key and the TLS material (created once, on the data
//! partition). Must never talk to a running service: that is the bootstrap's job.

mod consul;
mod keys;
mod nomad;
pub mod ownership;
mod services;
mod vault;

pub use consul::consul_config;
pub use keys::{
    ensure_consul_node_id, ensure_gossip_key, ensure_pool_key, gossip_key_file, GossipPool,
};
pub use nomad::nomad_config;
pub use ownership::Owned;
pub use services::{service_entries, Phase, Readiness, RestartPolicy, ServiceEntry, ServiceSpec};
pub use vault::{consul_storage_token_file, vault_config};

use crate::files::{self, FileError};
use crate::layout::StackLayout;
use crate::secrets;
use crate::tls::{self, Issue, Leaf};
use kindling_site::SiteConfig;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("network.lan.address {0:?} is not an IPv4 address in CIDR form")]
    LanAddress(String),
    #[error("stack.consul/stack.nomad need stack.vault.enabled = true: kindling keeps their ACL tokens in Vault")]
    NeedsVault,
    #[error("stack.vault.storage = \"consul\" needs stack.consul.enabled = true")]
    VaultStorageNeedsConsul,
    #[error("stack.vault.key_threshold ({threshold}) must be between 1 and stack.vault.key_shares ({shares})")]
    KeyThreshold { shares: u8, threshold: u8 },
    #[error("stack.vault: {0}")]
    Recipients(#[from] secrets::SecretsError),
    #[error("creating {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path} holds no usable Consul node id (want a UUID): {found:?}")]
    NodeId { path: PathBuf, found: String },
    #[error("{path} holds no usable Consul gossip key: {reason}")]
    GossipKey { path: PathBuf, reason: String },
    #[error("TLS for the stack's listeners: {0}")]
    Tls(#[from] tls::TlsError),
}

/// What [`render`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedStack {
    /// The config files written, for logs and tests.
    pub files: Vec<PathBuf>,
    /// Service-table entries (docs/contracts.md "Service table"), in start
    /// order: consul, vault, nomad, stack (the bootstrap one-shot) — only those enabled.
    pub services: Vec<ServiceEntry>,
    /// Which account owns each file made here; the config phase (root)
    /// applies it.
    pub ownership: Vec<Owned>,
}

/// The appliance's LAN address (the host part of `network.lan.address`).
pub fn lan_address(site: &SiteConfig) -> Result<Ipv4Addr, RenderError> {
    let text = site.network.lan.address.to_string();
    text.split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or(RenderError::LanAddress(text))
}

/// Whether the site exposes `service` on the uplink (`network.uplink.expose`):
/// its TLS listener then binds every address and the firewall opens its
/// port on the uplink.
pub fn exposed_on_uplink(site: &SiteConfig, service: &str) -> bool {
    site.network.uplink.expose.iter().any(|s| s == service)
}

/// Names the listeners' certificates carry for the uplink side: the static
/// uplink address when there is one (a DHCP address is not known when the
/// certificates are issued: clients on the uplink dial the host name).
pub fn uplink_names(site: &SiteConfig) -> Vec<String> {
    let mut names = vec![format!("{}.{}", site.site.hostname, site.site.domain)];
    if let Some(cidr) = site.network.uplink.address {
        names.push(cidr.addr().to_string());
    }
    names
}

/// The names a cluster server's certificate carries: `server_name` (what
/// `verify_server_hostname` checks), then what HTTPS clients dial.
pub(crate) fn server_names(
    server_name: String,
    site: &SiteConfig,
    layout: &StackLayout,
) -> Result<Vec<String>, RenderError> {
    let lan = lan_address(site)?;
    let mut names = vec![
        server_name,
        "localhost".to_string(),
        lan.to_string(),
        layout.loopback.to_string(),
    ];
    names.extend(uplink_names(site));
    Ok(names)
}

/// Checks the site's stack settings that rendering depends on.
pub fn check_site(site: &SiteConfig) -> Result<(), RenderError> {
    let st = &site.stack;
    if (st.consul.enabled || st.nomad.enabled) && !st.vault.enabled {
        return Err(RenderError::NeedsVault);
    }
    if st.vault.enabled {
        if st.vault.storage == kindling_site::VaultStorage::Consul && !st.consul.enabled {
            return Err(RenderError::VaultStorageNeedsConsul);
        }
        if st.vault.key_threshold == 0 || st.vault.key_threshold > st.vault.key_shares {
            return Err(RenderError::KeyThreshold {
                shares: st.vault.key_shares,
                threshold: st.vault.key_threshold,
            });
        }
        secrets::parse_recipients(&st.vault.recipients)?;
    }
    lan_address(site)?;
    Ok(())
}

/// Renders the stack for this boot: writes `consul.json`, `vault.json` and
/// `nomad.d/00-server.json` under `layout.config_dir` (only for enabled
/// services), creates the data directories, the gossip key and TLS files on
/// first use, and returns the service-table entries for kindling-init.
///
/// The lead's `kindlingd` service-table code calls this with
/// [`StackLayout::appliance()`]. A missing binary is not an error: its entry is
/// still returned and init marks it `not_installed`.
pub fn render(site: &SiteConfig, layout: &StackLayout) -> Result<RenderedStack, RenderError> {
    check_site(site)?;
    let st = &site.stack;
    let mut files = Vec::new();
    if !st.any_enabled() {
        return Ok(RenderedStack {
            files,
            services: Vec::new(),
            ownership: Vec::new(),
        });
    }
    let state = layout.state_dir();
    mkdir(&layout.config_dir, 0o755)?;
    mkdir(&state, 0o711)?;
    let store = secrets::SecretStore::new(&state);
    mkdir(&store.for_api_dir(), 0o2750)?;
    mkdir(&store.for_pxe_dir(), 0o2750)?;
    issue_certificates(site, layout)?;
    tls::write_trust_bundle(&state)?;
    if st.consul.enabled {
        mkdir(&layout.consul_data(), 0o2770)?;
        let key = ensure_gossip_key(&state)?;
        let node_id = ensure_consul_node_id(&state, &layout.consul_data())?;
        let path = layout.consul_config();
        write_json(&path, &consul_config(site, layout, &key, &node_id)?, 0o640)?;
        files.push(path);
    }
    if st.vault.enabled {
        mkdir(&layout.vault_data(), 0o700)?;
        mkdir(&layout.vault_audit_dir(), 0o700)?;
        let path = layout.vault_config();
        let storage_token = std::fs::read_to_string(vault::consul_storage_token_file(layout))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        write_json(
            &path,
            &vault_config(site, layout, storage_token.as_deref())?,
            0o640,
        )?;
        files.push(path);
    }
    if st.nomad.enabled {
        mkdir(&layout.nomad_data(), 0o2770)?;
        // Made now so it is ours (setgid): Nomad would make it 0700, and the
        // bootstrap writes Nomad's ACL reset file into it.
        mkdir(&layout.nomad_data().join("server"), 0o2770)?;
        mkdir(&layout.nomad_config_dir(), 0o2750)?;
        let key = ensure_pool_key(&state, GossipPool::Nomad)?;
        let path = layout.nomad_config_dir().join("00-server.json");
        write_json(&path, &nomad_config(site, layout, &key)?, 0o640)?;
        files.push(path);
    }
    Ok(RenderedStack {
        files,
        services: service_entries(site, layout),
        ownership: ownership::plan(site, layout),
    })
}

/// The appliance CA (created once) and this boot's leaf certificates for
/// the enabled services.
fn issue_certificates(site: &SiteConfig, layout: &StackLayout) -> Result<(), RenderError> {
    let st = &site.stack;
    let lan = lan_address(site)?;
    let mut wanted: Vec<(Leaf, Vec<String>)> = Vec::new();
    if st.vault.enabled {
        let mut names = vec![
            format!("vault.{}", site.site.domain),
            lan.to_string(),
            layout.loopback.to_string(),
        ];
        names.extend(uplink_names(site));
        wanted.push((Leaf::Vault, names));
    }
    if st.consul.enabled {
        wanted.push((Leaf::Consul, consul::certificate_names(site, layout)?));
    }
    if st.nomad.enabled {
        wanted.push((Leaf::Nomad, nomad::certificate_names(site, layout)?));
        wanted.push((
            Leaf::StackClient,
            vec!["kindling-stack-bootstrap".to_string()],
        ));
    }
    let issues: Vec<Issue<'_>> = wanted
        .iter()
        .map(|(leaf, names)| Issue { leaf: *leaf, names })
        .collect();
    tls::ensure(
        &layout.state_dir(),
        &format!("kindling {} appliance CA", site.site.id),
        &issues,
    )?;
    Ok(())
}

fn mkdir(path: &Path, mode: u32) -> Result<(), RenderError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|source| RenderError::CreateDir {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes a config file; `mode` 0640 at most (the Consul and Nomad configs
/// carry a gossip key, Vault's may carry a Consul token): the service reads
/// it through its group.
pub(crate) fn write_json(
    path: &Path,
    value: &serde_json::Value,
    mode: u32,
) -> Result<(), RenderError> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    Ok(files::write(path, &body, mode)?)
}
