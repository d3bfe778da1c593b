//! The manifest at the head of every backup archive (`manifest.json`): what
//! the backup is, where it came from, and each part with its size and
//! sha256, so that opening one checks every byte before anything is
//! restored.
//!
//! Owns the format and the rules for entry names. Must never accept an
//! entry name that could land outside the data directory on restore.

use serde::{Deserialize, Serialize};

/// The archive format this code writes and reads.
pub const FORMAT: u32 = 1;
/// The first member of every archive.
pub const MANIFEST_NAME: &str = "manifest.json";
/// Consul's snapshot (`GET /v1/snapshot`), as Consul sent it.
pub const CONSUL_SNAPSHOT: &str = "consul.snap";
/// Vault's raft snapshot (`GET /v1/sys/storage/raft/snapshot`).
pub const VAULT_SNAPSHOT: &str = "vault.snap";
/// Files of the data partition live under this prefix, by their path
/// relative to the data directory (`data/leases/leases.json`).
pub const DATA_PREFIX: &str = "data/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`] when written; a newer one is refused, not guessed at.
    pub format: u32,
    pub id: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub created_unix: u64,
    pub appliance: Appliance,
    /// Where Vault kept its data: `raft` (its snapshot is `vault.snap`),
    /// `consul` (Consul's snapshot holds Vault's data too: no `vault.snap`)
    /// or `none` (Vault not enabled).
    pub vault_storage: String,
    /// What the backup left out and why (a part that could not be taken).
    #[serde(default)]
    pub notes: Vec<String>,
    pub entries: Vec<Entry>,
}

/// Which appliance made the backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Appliance {
    pub site_id: String,
    pub hostname: String,
    /// The image version that wrote the backup (`/etc/kindling/version`).
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    ConsulSnapshot,
    VaultSnapshot,
    /// `leases/leases.json`
    Leases,
    /// `inventory/*.json`
    Inventory,
    /// `overlays/*` (accepted copies) and `state.json` (their version floors)
    Overlays,
    /// `stack/vault-init.age`: the unseal shares, already encrypted to the
    /// operators; restored with the Vault they open.
    VaultInit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    pub bytes: u64,
    pub sha256: String,
}

/// Why an entry name is refused.
#[derive(Debug, thiserror::Error)]
#[error("entry {name:?}: {reason}")]
pub struct BadName {
    pub name: String,
    pub reason: &'static str,
}

/// The path below the data directory a `data/…` entry restores to; `None`
/// for the snapshots. Only plain relative names: no `..`, no absolute
/// path, no empty or hidden component.
pub fn data_path(name: &str) -> Result<Option<&str>, BadName> {
    if name == CONSUL_SNAPSHOT || name == VAULT_SNAPSHOT {
        return Ok(None);
    }
    let bad = |reason| BadName {
        name: name.chars().take(200).collect(),
        reason,
    };
    let rel = name
        .strip_prefix(DATA_PREFIX)
        .ok_or_else(|| bad("neither a snapshot nor under data/"))?;
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c.starts_with('.') || c.contains('\\'))
    {
        return Err(bad("not a plain relative path"));
    }
    Ok(Some(rel))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_plain_names_under_data_restore_to_a_path() {
        assert_eq!(data_path("consul.snap").unwrap(), None);
        assert_eq!(
            data_path("data/leases/leases.json").unwrap(),
            Some("leases/leases.json")
        );
        for bad in [
            "data/../etc/passwd",
            "data//x",
            "data/",
            "/etc/passwd",
            "leases.json",
            "data/.hidden",
        ] {
            assert!(data_path(bad).is_err(), "{bad}");
        }
    }
}
