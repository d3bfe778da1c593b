//! Identities the renderer makes once and keeps on the data partition: the
//! appliance's Consul node id and the gossip encryption keys of Consul and
//! Nomad (32 random bytes, base64; 0600, never logged).
//!
//! Owns `<state>/consul-node-id`, `<state>/consul-gossip.key` and
//! `<state>/nomad-gossip.key`. Must never replace a key that exists: every
//! agent that joined holds it.

use super::RenderError;
use crate::files::{self, FileError};
use base64::Engine;
use rand::RngCore;
use std::path::{Path, PathBuf};

/// Which gossip pool a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipPool {
    Consul,
    Nomad,
}

/// Where a pool's key lives.
pub fn gossip_key_file(state_dir: &Path, pool: GossipPool) -> PathBuf {
    state_dir.join(match pool {
        GossipPool::Consul => "consul-gossip.key",
        GossipPool::Nomad => "nomad-gossip.key",
    })
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
        Err(source) => Err(FileError::Read { path, source }.into()),
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
    ensure_pool_key(state_dir, GossipPool::Consul)
}

/// A gossip pool's key, generated once (mode 0600).
pub fn ensure_pool_key(state_dir: &Path, pool: GossipPool) -> Result<String, RenderError> {
    let path = gossip_key_file(state_dir, pool);
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
        Err(source) => Err(FileError::Read { path, source }.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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

    #[test]
    fn gossip_keys_are_made_once_per_pool_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let consul = ensure_pool_key(dir.path(), GossipPool::Consul).unwrap();
        let nomad = ensure_pool_key(dir.path(), GossipPool::Nomad).unwrap();
        assert_ne!(consul, nomad);
        assert_eq!(ensure_gossip_key(dir.path()).unwrap(), consul);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&nomad)
            .unwrap();
        assert_eq!(raw.len(), 32);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(gossip_key_file(dir.path(), GossipPool::Nomad))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
        std::fs::write(gossip_key_file(dir.path(), GossipPool::Nomad), "short").unwrap();
        let err = ensure_pool_key(dir.path(), GossipPool::Nomad).unwrap_err();
        assert!(err.to_string().contains("nomad-gossip.key"), "{err}");
    }
}
