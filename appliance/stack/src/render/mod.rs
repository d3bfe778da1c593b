//! Rendering: `SiteConfig` → the three services' config files (JSON, which
//! Consul, Vault/OpenBao and Nomad all read) and their service-table entries.
//!
//! Owns the files under `StackLayout::config_dir`, the data directories, the
//! Consul gossip key and the TLS material (created once, on the data
//! partition). Must never talk to a running service: that is the bootstrap's job.

mod consul;
mod nomad;
mod services;
mod vault;

pub use consul::consul_config;
pub use nomad::nomad_config;
pub use services::{service_entries, Phase, Readiness, RestartPolicy, ServiceEntry, ServiceSpec};
pub use vault::{consul_storage_token_file, vault_config};

use crate::files::{self, FileError};
use crate::layout::StackLayout;
use crate::{secrets, tls};
use base64::Engine;
use kindling_site::SiteConfig;
use rand::RngCore;
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
    #[error("TLS for the Vault listener: {0}")]
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
}

/// The appliance's LAN address (the host part of `network.lan.address`).
pub fn lan_address(site: &SiteConfig) -> Result<Ipv4Addr, RenderError> {
    let text = site.network.lan.address.to_string();
    text.split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or(RenderError::LanAddress(text))
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
    if !(st.consul.enabled || st.vault.enabled || st.nomad.enabled) {
        return Ok(RenderedStack {
            files,
            services: Vec::new(),
        });
    }
    for dir in [layout.config_dir.clone(), layout.state_dir()] {
        mkdir(&dir, 0o700)?;
    }
    if st.consul.enabled {
        mkdir(&layout.consul_data(), 0o700)?;
        let key = ensure_gossip_key(&layout.state_dir())?;
        let node_id = ensure_consul_node_id(&layout.state_dir(), &layout.consul_data())?;
        let path = layout.consul_config();
        write_json(&path, &consul_config(site, layout, &key, &node_id)?)?;
        files.push(path);
    }
    if st.vault.enabled {
        mkdir(&layout.vault_data(), 0o700)?;
        let lan = lan_address(site)?;
        let names = vec![
            format!("vault.{}", site.site.domain),
            format!("{}.{}", site.site.hostname, site.site.domain),
            lan.to_string(),
            layout.loopback.to_string(),
        ];
        tls::ensure(
            &layout.state_dir(),
            &format!("kindling {} appliance CA", site.site.id),
            &names,
        )?;
        let path = layout.vault_config();
        let storage_token = std::fs::read_to_string(vault::consul_storage_token_file(layout))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        write_json(
            &path,
            &vault_config(site, layout, storage_token.as_deref())?,
        )?;
        files.push(path);
    }
    if st.nomad.enabled {
        mkdir(&layout.nomad_data(), 0o700)?;
        mkdir(&layout.nomad_config_dir(), 0o700)?;
        let path = layout.nomad_config_dir().join("00-server.json");
        write_json(&path, &nomad_config(site, layout)?)?;
        files.push(path);
    }
    Ok(RenderedStack {
        files,
        services: service_entries(site, layout),
    })
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

pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), RenderError> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    // 0600: the Consul config carries the gossip key.
    Ok(files::write(path, &body, 0o600)?)
}

/// The appliance's Consul node id, kept durably in `state_dir/consul-node-id`.
/// The first time, Consul's own `data_dir/node-id` is adopted if it holds a
/// valid id (so an existing cluster keeps its identity), else a new random
/// UUID is made.
pub fn ensure_consul_node_id(state_dir: &Path, consul_data: &Path) -> Result<String, RenderError> {
    let path = state_dir.join("consul-node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_string();
            if !is_uuid(&id) {
                return Err(RenderError::NodeId { path, found: id });
            }
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let adopted = std::fs::read_to_string(consul_data.join("node-id"))
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| is_uuid(t));
            let id = adopted.unwrap_or_else(random_uuid);
            kindling_atomic_write::write_atomic(&path, id.as_bytes(), true)
                .map_err(|source| FileError::Write { path, source })?;
            Ok(id)
        }
        Err(source) => Err(FileError::Write { path, source }.into()),
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower-case hex, as Consul expects.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| {
            g.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// A version-4 UUID from the OS's random source.
fn random_uuid() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The Consul gossip key (32 random bytes, base64), generated once and kept
/// on the data partition; the bootstrap also stores it in Vault KV.
pub fn ensure_gossip_key(state_dir: &Path) -> Result<String, RenderError> {
    let path = state_dir.join("consul-gossip.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.trim().to_string();
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&key)
                .map_err(|e| RenderError::GossipKey {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            if raw.len() != 32 && raw.len() != 16 {
                return Err(RenderError::GossipKey {
                    path,
                    reason: format!("{} bytes, want 32", raw.len()),
                });
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut raw);
            let key = base64::engine::general_purpose::STANDARD.encode(raw);
            files::write(&path, key.as_bytes(), 0o600)?;
            Ok(key)
        }
        Err(source) => Err(FileError::Write { path, source }.into()),
    }
}

#[cfg(test)]
mod node_id_tests {
    use super::*;

    #[test]
    fn made_once_kept_and_valid() {
        let dir = tempfile::tempdir().unwrap();
        let (state, data) = (dir.path().join("state"), dir.path().join("consul"));
        let first = ensure_consul_node_id(&state, &data).unwrap();
        assert!(is_uuid(&first), "{first}");
        assert_eq!(ensure_consul_node_id(&state, &data).unwrap(), first);
    }

    #[test]
    fn adopts_consuls_own_id_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let (state, data) = (dir.path().join("state"), dir.path().join("consul"));
        std::fs::create_dir_all(&data).unwrap();
        let theirs = "0b9d3c59-6a3e-4f6e-9a55-2b1f0e4f6c11";
        std::fs::write(data.join("node-id"), format!("{theirs}\n")).unwrap();
        assert_eq!(ensure_consul_node_id(&state, &data).unwrap(), theirs);
        std::fs::write(state.join("consul-node-id"), "").unwrap();
        let err = ensure_consul_node_id(&state, &data)
            .unwrap_err()
            .to_string();
        assert!(err.contains("consul-node-id"), "{err}");
    }
}
