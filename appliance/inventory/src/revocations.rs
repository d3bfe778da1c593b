//! What re-arms revoked: `inventory/node-tokens.json`, MAC → the last
//! [`TokenRevocation`] (the Consul token the node's old install held, and
//! the one made for its next). Written by the stack's node-token keeper
//! (kl-stack, the account that holds the management token a revocation
//! needs), read by the API for `GET /v1/nodes`. Which re-arm requests are
//! still to be handled is [`pending`], pure. It never holds a token.

use crate::error::InventoryError;
use crate::reprovision::Rearm;
use kindling_api::nodes::TokenRevocation;
use kindling_site::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Serialize, Deserialize)]
struct RevocationFile {
    #[serde(default)]
    revocations: BTreeMap<MacAddr, TokenRevocation>,
}

/// `inventory/node-tokens.json`.
#[derive(Debug, Clone)]
pub struct RevocationStore {
    path: PathBuf,
}

impl RevocationStore {
    /// Under the data partition `state_dir`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("inventory").join("node-tokens.json"),
        }
    }

    pub fn load(&self) -> Result<BTreeMap<MacAddr, TokenRevocation>, InventoryError> {
        crate::shared_file::read_json::<RevocationFile>(&self.path).map(|f| f.revocations)
    }

    /// Records `revocation` as `mac`'s latest.
    pub fn record(&self, mac: MacAddr, revocation: TokenRevocation) -> Result<(), InventoryError> {
        crate::shared_file::with_lock(&self.path, || {
            let mut file = RevocationFile {
                revocations: self.load()?,
            };
            file.revocations.insert(mac, revocation);
            crate::shared_file::write_json(&self.path, &file)
        })
    }
}

/// The re-arm requests not handled yet (or last tried with an error):
/// MAC → the generation to handle.
pub fn pending(
    requests: &BTreeMap<MacAddr, Rearm>,
    done: &BTreeMap<MacAddr, TokenRevocation>,
) -> Vec<(MacAddr, u64)> {
    requests
        .iter()
        .filter(|(mac, rearm)| {
            done.get(mac).is_none_or(|d| {
                d.generation < rearm.generation
                    || (d.generation == rearm.generation && d.error.is_some())
            })
        })
        .map(|(mac, rearm)| (*mac, rearm.generation))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const A: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);
    const B: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x20]);

    fn done(generation: u64, error: Option<&str>) -> TokenRevocation {
        TokenRevocation {
            generation,
            at: 1,
            accessor: Some("acc".into()),
            was_live: true,
            certificates: Vec::new(),
            made: Some("new".into()),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn a_request_is_pending_until_its_generation_was_handled_without_error() {
        let rearm = |generation| Rearm {
            generation,
            requested_ms: 0,
        };
        let requests = BTreeMap::from([(A, rearm(2)), (B, rearm(1))]);
        assert_eq!(pending(&requests, &BTreeMap::new()), vec![(A, 2), (B, 1)]);
        let handled = BTreeMap::from([(A, done(1, None)), (B, done(1, None))]);
        assert_eq!(pending(&requests, &handled), vec![(A, 2)]);
        let failed = BTreeMap::from([(A, done(2, None)), (B, done(1, Some("sealed")))]);
        assert_eq!(pending(&requests, &failed), vec![(B, 1)], "retried");

        let dir = tempfile::tempdir().unwrap();
        let store = RevocationStore::in_state_dir(dir.path());
        assert!(store.load().unwrap().is_empty());
        store.record(A, done(2, None)).unwrap();
        assert_eq!(store.load().unwrap()[&A].generation, 2);
    }
}
