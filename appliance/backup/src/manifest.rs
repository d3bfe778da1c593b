//! The manifest at the head of every backup archive (`manifest.json`): what
//! the backup is, where it came from, and each part with its size and
//! sha256, so that opening one checks every byte before anything is
//! restored.
//!
//! Owns the format and the rules for entry names. Must never accept an
//! entry name that could land outside the data directory on restore.

use serde::{Deserialize, Serialize};

/// The archive format this code writes; it reads this and every older one
/// (2 added the `stack_state` entries).
pub const FORMAT: u32 = 2;
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
    /// The appliance's identity in its cluster: `stack/appliance-token`
    /// (the bootstrap's Vault token, valid in the Vault this backup holds,
    /// so a restored appliance needs no new root token),
    /// `stack/root-token.accessor`, `stack/consul-node-id`, the gossip keys
    /// (`stack/*-gossip.key`) and the CAs (`tls/`, `stack/tls/`) nodes and
    /// CLIs pin. No more than `vault-init.age` already gives whoever can
    /// decrypt the backup.
    StackState,
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

/// The mode a restored `data/…` file gets (the config phase's ownership
/// pass then gives it its owner): keys and tokens 0600, the appliance's
/// other identity files (certificates, node id) 0644, the rest 0640.
pub fn restore_mode(rel: &str) -> u32 {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    if file.ends_with("-key.pem") || file.ends_with(".key") || file == "appliance-token" {
        0o600
    } else if rel.starts_with("stack/") || rel.starts_with("tls/") {
        0o644
    } else {
        0o640
    }
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
        assert_eq!(restore_mode("stack/tls/ca-key.pem"), 0o600);
        assert_eq!(restore_mode("stack/consul-gossip.key"), 0o600);
        assert_eq!(restore_mode("stack/appliance-token"), 0o600);
        assert_eq!(restore_mode("tls/ca.pem"), 0o644);
        assert_eq!(restore_mode("inventory/nodes.json"), 0o640);
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
