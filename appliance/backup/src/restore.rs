//! Putting an opened backup back: Consul's snapshot (`PUT /v1/snapshot`),
//! Vault's raft snapshot (`POST /v1/sys/storage/raft/snapshot-force`: the
//! restored Vault is the old one, sealed by the old barrier key, so the
//! operator unseals it with the ORIGINAL shares), and the data partition's
//! files.
//!
//! Owns the restore calls and the order of a restore. Must never be handed
//! a backup that [`crate::open`] did not check, and never write a file
//! outside the data directory (entry names are checked again here).

use crate::archive::Opened;
use crate::http::{exchange, Endpoint, HttpError};
use crate::manifest::{self, CONSUL_SNAPSHOT, VAULT_SNAPSHOT};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("restoring Consul's snapshot: {0}")]
    Consul(HttpError),
    #[error("restoring Vault's raft snapshot: {0}")]
    Vault(HttpError),
    #[error("the backup has no {0}")]
    NoPart(&'static str),
    #[error(transparent)]
    BadName(#[from] manifest::BadName),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `PUT /v1/snapshot` with the backup's `consul.snap`; `consul.token` must
/// be allowed the snapshot API (a management token of the target). After
/// it, the target has the backup's ACLs, KV and catalog.
pub async fn consul(opened: &Opened, consul: &Endpoint) -> Result<(), RestoreError> {
    let part = opened
        .part(CONSUL_SNAPSHOT)
        .ok_or(RestoreError::NoPart(CONSUL_SNAPSHOT))?;
    exchange(
        consul,
        reqwest::Method::PUT,
        "/v1/snapshot",
        "X-Consul-Token",
        Some(part.bytes.clone()),
        "PUT /v1/snapshot",
    )
    .await
    .map(|_| ())
    .map_err(RestoreError::Consul)
}

/// `POST /v1/sys/storage/raft/snapshot-force` with the backup's
/// `vault.snap`; `vault.token` needs `sudo` on that path on the target
/// (its root token). "force" because the target's keys differ from the
/// snapshot's: afterwards the target holds the old Vault, which the
/// original unseal shares open.
pub async fn vault(opened: &Opened, vault: &Endpoint) -> Result<(), RestoreError> {
    let part = opened
        .part(VAULT_SNAPSHOT)
        .ok_or(RestoreError::NoPart(VAULT_SNAPSHOT))?;
    exchange(
        vault,
        reqwest::Method::POST,
        "/v1/sys/storage/raft/snapshot-force",
        "X-Vault-Token",
        Some(part.bytes.clone()),
        "POST /v1/sys/storage/raft/snapshot-force",
    )
    .await
    .map(|_| ())
    .map_err(RestoreError::Vault)
}

/// Writes every `data/…` part below `data_dir` (each replaced atomically,
/// with [`manifest::restore_mode`]), names checked first so a bad name changes nothing. Returns the
/// paths written.
pub fn files(opened: &Opened, data_dir: &Path) -> Result<Vec<PathBuf>, RestoreError> {
    let unpaired = crate::ca_keys::unpaired(opened);
    let mut plan = Vec::new();
    for part in &opened.parts {
        if let Some(rel) = manifest::data_path(&part.name)? {
            // A CA certificate without its key would pair with the target's
            // own key: that CA stays the target's.
            if unpaired.iter().any(|dir| {
                rel.strip_prefix(dir.as_str())
                    .is_some_and(|f| f.starts_with("/ca."))
            }) {
                continue;
            }
            plan.push((data_dir.join(rel), &part.bytes, manifest::restore_mode(rel)));
        }
    }
    let mut written = Vec::new();
    for (path, bytes, mode) in plan {
        kindling_stack::files::write(&path, bytes, mode).map_err(|e| RestoreError::Write {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        written.push(path);
    }
    Ok(written)
}
