//! Backups asked for through the API: `backups/requests/ID.json`, written
//! by `kindlingd api` (kl-api, a member of the directory's group) and taken
//! by the backup service (kl-stack, its owner), which makes the backup
//! under that id. A file, not a socket: the API never talks to the process
//! that holds the tokens, and a request survives a restart of either.
//!
//! Owns the request files. Must never take a file whose name is not a
//! backup id.

use crate::id::BackupId;
use std::path::{Path, PathBuf};

pub const REQUESTS_DIR: &str = "requests";
/// At most this many requests wait at once (a loop in a script must not
/// fill the data partition with backups).
pub const MAX_PENDING: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{MAX_PENDING} backups are already waiting to be made; try again when they are done")]
    Busy,
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct RequestQueue {
    dir: PathBuf,
}

impl RequestQueue {
    /// The queue of the backups directory `backups_dir`.
    pub fn new(backups_dir: &Path) -> Self {
        Self {
            dir: backups_dir.join(REQUESTS_DIR),
        }
    }

    /// Queues a backup; its id is the answer to the operator.
    pub fn submit(&self, now_unix: u64, operator: &str) -> Result<BackupId, RequestError> {
        if self.pending().len() >= MAX_PENDING {
            return Err(RequestError::Busy);
        }
        let id = BackupId::new(now_unix);
        let path = self.dir.join(format!("{id}.json"));
        let body = serde_json::json!({"id": id.as_str(), "requested_unix": now_unix, "operator": operator});
        kindling_atomic_write::write_atomic_with_mode(&path, body.to_string().as_bytes(), 0o640)
            .map_err(|source| RequestError::Io {
                action: "writing",
                path,
                source,
            })?;
        Ok(id)
    }

    /// Waiting requests, oldest first.
    pub fn pending(&self) -> Vec<BackupId> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ids: Vec<BackupId> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| n.parse().ok())
            })
            .collect();
        ids.sort();
        ids
    }

    /// Removes request `id` (done, or failed and reported).
    pub fn take(&self, id: &BackupId) -> Result<(), RequestError> {
        let path = self.dir.join(format!("{id}.json"));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RequestError::Io {
                action: "removing",
                path,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn submit_pending_take_and_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let q = RequestQueue::new(dir.path());
        let ids: Vec<BackupId> = (0..MAX_PENDING as u64)
            .map(|i| q.submit(1000 + i, "ops").unwrap())
            .collect();
        assert_eq!(q.pending(), ids);
        assert!(matches!(q.submit(2000, "ops"), Err(RequestError::Busy)));
        q.take(&ids[0]).unwrap();
        assert_eq!(q.pending(), ids[1..].to_vec());
    }
}
