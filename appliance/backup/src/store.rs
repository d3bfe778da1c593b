//! The backups directory on the data partition (`/var/lib/kindling/backups`):
//! each backup is `ID.kbak`, written under a temporary name, fsynced and
//! renamed, so a listed backup is always whole; pruning keeps the newest
//! ones within the site's bound.
//!
//! Owns the directory's files. Must never remove the newest backup, and
//! never a file that is not a well-named backup.

use crate::id::BackupId;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The backups directory's name under the data partition.
pub const BACKUPS_DIR: &str = "backups";
const SUFFIX: &str = ".kbak";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no backup {0}")]
    NotFound(BackupId),
}

/// How many backups and bytes to keep (the site's `[backup]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// At most this many backups (at least 1).
    pub keep: usize,
    /// At most this many bytes in all, except that the newest is always kept.
    pub max_bytes: u64,
}

/// One backup in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBackup {
    pub id: BackupId,
    pub bytes: u64,
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct BackupStore {
    dir: PathBuf,
}

impl BackupStore {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The store under the data partition `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::new(&data_dir.join(BACKUPS_DIR))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, id: &BackupId) -> PathBuf {
        self.dir.join(format!("{id}{SUFFIX}"))
    }

    fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
        move |source| StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Writes backup `id` through `fill` (which gets the temporary file and
    /// must write the whole, already encrypted, backup, handing back the
    /// file and what it wants returned), then fsyncs and renames it into
    /// place. On any failure the temporary file is removed.
    /// 0640: the API (the directory's group) hands backups out.
    pub fn write<T, E>(
        &self,
        id: &BackupId,
        fill: impl FnOnce(File) -> Result<(File, T), E>,
    ) -> Result<(StoredBackup, T), E>
    where
        E: From<StoreError>,
    {
        std::fs::create_dir_all(&self.dir).map_err(Self::io("creating", &self.dir))?;
        let tmp = self.dir.join(format!(".{id}{SUFFIX}.partial"));
        let fin = self.path_of(id);
        let result = (|| {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .open(&tmp)
                .map_err(Self::io("creating", &tmp))?;
            let (mut file, made) = fill(file)?;
            file.flush().map_err(Self::io("writing", &tmp))?;
            file.sync_all().map_err(Self::io("syncing", &tmp))?;
            let bytes = file.metadata().map_err(Self::io("reading", &tmp))?.len();
            std::fs::rename(&tmp, &fin).map_err(Self::io("renaming", &tmp))?;
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(Self::io("syncing", &self.dir))?;
            Ok((
                StoredBackup {
                    id: id.clone(),
                    bytes,
                    path: fin.clone(),
                },
                made,
            ))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Every whole backup, oldest first. A missing directory is an empty list.
    pub fn list(&self) -> Result<Vec<StoredBackup>, StoreError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io("listing", &self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(Self::io("listing", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_suffix(SUFFIX)
                .and_then(|s| s.parse::<BackupId>().ok())
            else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() {
                out.push(StoredBackup {
                    id,
                    bytes: meta.len(),
                    path: entry.path(),
                });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Backup `id` opened for reading.
    pub fn open(&self, id: &BackupId) -> Result<(File, u64), StoreError> {
        let path = self.path_of(id);
        match File::open(&path) {
            Ok(f) => {
                let len = f.metadata().map_err(Self::io("reading", &path))?.len();
                Ok((f, len))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(id.clone()))
            }
            Err(e) => Err(Self::io("opening", &path)(e)),
        }
    }

    /// Removes the oldest backups until at most `keep` remain and their
    /// bytes fit `max_bytes`; the newest always stays. Returns what it removed.
    pub fn prune(&self, retention: Retention) -> Result<Vec<BackupId>, StoreError> {
        let list = self.list()?;
        let keep = retention.keep.max(1);
        let mut removed = Vec::new();
        let mut total: u64 = 0;
        // Newest first: keep while within both bounds.
        for (i, b) in list.iter().rev().enumerate() {
            total = total.saturating_add(b.bytes);
            let within = i < keep && (i == 0 || total <= retention.max_bytes);
            if !within {
                std::fs::remove_file(&b.path).map_err(Self::io("removing", &b.path))?;
                removed.push(b.id.clone());
            }
        }
        removed.reverse();
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn put(store: &BackupStore, unix: u64, size: usize) -> BackupId {
        let id = BackupId::new(unix);
        store
            .write::<(), StoreError>(&id, |mut f| {
                f.write_all(&vec![7u8; size]).unwrap();
                Ok((f, ()))
            })
            .unwrap();
        id
    }

    #[test]
    fn writes_list_and_prunes_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::new(&dir.path().join("backups"));
        let ids: Vec<BackupId> = (0..5).map(|i| put(&store, 1000 + i * 60, 10)).collect();
        std::fs::write(store.dir().join("notes.txt"), "not a backup").unwrap();
        assert_eq!(store.list().unwrap().len(), 5);
        let removed = store
            .prune(Retention {
                keep: 3,
                max_bytes: u64::MAX,
            })
            .unwrap();
        assert_eq!(removed, ids[..2].to_vec());
        let left: Vec<BackupId> = store.list().unwrap().into_iter().map(|b| b.id).collect();
        assert_eq!(left, ids[2..].to_vec());
        assert!(
            store.dir().join("notes.txt").exists(),
            "only backups are pruned"
        );
        // A byte bound: 25 bytes keep two of 10; the newest stays even alone over it.
        store
            .prune(Retention {
                keep: 10,
                max_bytes: 25,
            })
            .unwrap();
        assert_eq!(store.list().unwrap().len(), 2);
        store
            .prune(Retention {
                keep: 10,
                max_bytes: 1,
            })
            .unwrap();
        let left: Vec<BackupId> = store.list().unwrap().into_iter().map(|b| b.id).collect();
        assert_eq!(left, vec![ids[4].clone()]);
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::new(dir.path());
        let id = BackupId::new(1);
        let err =
            store.write::<(), StoreError>(&id, |_| Err(StoreError::NotFound(BackupId::new(2))));
        assert!(err.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(matches!(store.open(&id), Err(StoreError::NotFound(_))));
    }
}
