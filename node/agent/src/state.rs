//! The agent's memory between runs (`/var/lib/kindling-node/state.json`,
//! 0600): which grant it redeemed (by hash: the grant itself is never kept),
//! who Vault said the node is, and each step's last outcome.
//!
//! Owns the state file. The grant record is written the moment the unwrap
//! succeeds, before anything else: a run cut off after it never unwraps
//! that grant again.

use crate::error::StepError;
use crate::files::{paths, Root};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    #[serde(default)]
    pub grant: Option<GrantRecord>,
    #[serde(default)]
    pub node: Option<NodeIdentity>,
    #[serde(default)]
    pub steps: BTreeMap<String, StepRecord>,
}

/// A redeemed grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRecord {
    /// sha256 of the wrapping token, hex: recognises the same grant again
    /// without keeping it.
    pub sha256: String,
    /// Unix seconds.
    pub unwrapped_at: u64,
}

/// Who the node is, as its Vault login said (the secret-id's metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeIdentity {
    pub hostname: String,
    pub mac: String,
    pub profile: String,
    /// The profile's tags as Vault holds them (`kindling/profiles/<p>/meta`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    pub ok: bool,
    pub detail: String,
    pub at: u64,
}

pub fn grant_hash(wrapping_token: &str) -> String {
    hex(&Sha256::digest(wrapping_token.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl State {
    pub fn load(root: &Root) -> Result<Self, StepError> {
        match root.read(paths::STATE)? {
            None => Ok(Self::default()),
            Some(b) => serde_json::from_slice(&b).map_err(|e| StepError::Parse {
                path: root.join(paths::STATE),
                reason: e.to_string(),
            }),
        }
    }

    pub fn save(&self, root: &Root) -> Result<(), StepError> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| StepError::Parse {
            path: root.join(paths::STATE),
            reason: e.to_string(),
        })?;
        root.write(paths::STATE, &text, 0o600).map(|_| ())
    }
}
