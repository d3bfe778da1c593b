//! The lease file `leases/leases.json` on the data partition: loading it at
//! start and the snapshot that is written (atomic rename, fsync).
//!
//! Owns the file format and nothing else; when a snapshot is written is the
//! caller's choice (`dhcp::commit` writes before the ACKs it covers leave).

use super::{Lease, LeaseState, LeaseStore};
use kindling_atomic_write::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("read lease file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parse lease file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("write lease file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize, Default)]
struct LeaseFile {
    leases: Vec<Lease>,
}

impl LeaseStore {
    /// Loads leases persisted at `path` (a missing file is an empty store) and
    /// remembers the path for snapshots. Leases whose address now conflicts
    /// with a reservation or lies outside every pool are dropped.
    pub fn load(mut self, path: PathBuf, now: u64) -> Result<Self, LeaseError> {
        match std::fs::read(&path) {
            Ok(bytes) => {
                let file: LeaseFile =
                    serde_json::from_slice(&bytes).map_err(|source| LeaseError::Parse {
                        path: path.clone(),
                        source,
                    })?;
                for lease in file.leases {
                    let reserved_for_other = self
                        .reserved
                        .get(&lease.ip)
                        .is_some_and(|m| *m != lease.mac);
                    let usable =
                        self.in_pool(lease.ip) || self.reserved.get(&lease.ip) == Some(&lease.mac);
                    if lease.state == LeaseState::Bound
                        && lease.expires > now
                        && usable
                        && !reserved_for_other
                    {
                        self.insert(lease);
                    }
                }
                self.dirty = false;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(LeaseError::Read { path, source }),
        }
        self.path = Some(path);
        Ok(self)
    }

    /// The bound leases to persist, if anything changed since the last
    /// snapshot. Cheap (a copy of the leases): callers take it under their
    /// lock and write it outside, so an fsync never stalls DHCP. Offers are
    /// not persisted: they are worthless after a restart.
    pub fn snapshot_if_dirty(&mut self, now: u64) -> Option<LeaseSnapshot> {
        let path = self.path.clone().filter(|_| self.dirty)?;
        self.dirty = false;
        Some(LeaseSnapshot {
            path,
            leases: self.active(now).cloned().collect(),
        })
    }

    /// Marks the store changed (e.g. after a snapshot failed to write).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Snapshot and write in one step (tests, shutdown).
    pub fn flush_if_dirty(&mut self, now: u64) -> Result<bool, LeaseError> {
        match self.snapshot_if_dirty(now) {
            Some(snapshot) => snapshot
                .write()
                .map(|()| true)
                .inspect_err(|_| self.dirty = true),
            None => Ok(false),
        }
    }
}

/// Leases to be written to the lease file.
pub struct LeaseSnapshot {
    path: PathBuf,
    leases: Vec<Lease>,
}

impl LeaseSnapshot {
    /// Writes atomically and durably (fsync), sorted by address.
    pub fn write(mut self) -> Result<(), LeaseError> {
        self.leases.sort_by_key(|l| u32::from(l.ip));
        let path = self.path;
        let bytes = serde_json::to_vec(&LeaseFile {
            leases: self.leases,
        })
        .map_err(|source| LeaseError::Parse {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes, true).map_err(|source| LeaseError::Write { path, source })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::tests::{ip, mac};
    use super::super::ClientId;
    use super::*;

    #[test]
    fn persists_and_reloads_bound_leases_with_their_client_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases").join("leases.json");
        let mut store = LeaseStore::new(ip(10), ip(20), [])
            .load(path.clone(), 0)
            .unwrap();
        let cid = ClientId::new(&[1, 0x52, 0x54, 0, 0, 0, 1]);
        store.bind(
            mac(1),
            Some(cid.clone()),
            ip(15),
            3600,
            Some("n1".into()),
            0,
        );
        store.offer(mac(2), None, ip(16), 0);
        assert!(store.flush_if_dirty(0).unwrap());
        assert!(
            !store.flush_if_dirty(0).unwrap(),
            "clean store is not rewritten"
        );
        store.offer(mac(3), None, ip(17), 0);
        assert!(
            !store.flush_if_dirty(0).unwrap(),
            "an offer does not make the store dirty"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"client_id\":\"01525400000001\""), "{text}");
        let again = LeaseStore::new(ip(10), ip(20), []).load(path, 10).unwrap();
        let lease = again.lease_of(&mac(1)).unwrap();
        assert_eq!((lease.ip, lease.client_id.as_ref()), (ip(15), Some(&cid)));
        assert!(again.lease_of(&mac(2)).is_none());
    }

    #[test]
    fn corrupt_lease_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = LeaseStore::new(ip(10), ip(20), [])
            .load(path, 0)
            .unwrap_err();
        assert!(err.to_string().contains("leases.json"), "{err}");
    }
}
