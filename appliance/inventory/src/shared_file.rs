//! JSON files shared between processes (the API writes, the PXE service
//! reads): reading one, where a missing file is the default,
//! read-modify-write under an exclusive `flock` on a sibling `.lock` file,
//! so concurrent writers never lose each other's change, and a reader's
//! cached view that re-reads a file only when it changed ([`FileWatch`]).
//! Readers need no lock (writers replace files atomically).
//!
//! Owns reading, watching and the lock only; what the files hold is the
//! caller's.

use crate::error::InventoryError;
use kindling_atomic_write::write_atomic;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The JSON file at `path`; a missing file is `T::default()`.
pub(crate) fn read_json<T: DeserializeOwned + Default>(path: &Path) -> Result<T, InventoryError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| InventoryError::Parse {
            path: path.into(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(InventoryError::Read {
            path: path.into(),
            source,
        }),
    }
}

/// Replaces the JSON file at `path` with `value`, atomically and durably.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), InventoryError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| InventoryError::Parse {
        path: path.into(),
        source,
    })?;
    write_atomic(path, &bytes, true).map_err(|source| InventoryError::Write {
        path: path.into(),
        source,
    })
}

/// Runs `f` while holding the exclusive lock that guards `path`
/// (`path` with extension `lock`), creating its directory if needed.
pub(crate) fn with_lock<R>(
    path: &Path,
    f: impl FnOnce() -> Result<R, InventoryError>,
) -> Result<R, InventoryError> {
    let lock_path = path.with_extension("lock");
    if let Some(dir) = lock_path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| InventoryError::Write {
            path: dir.into(),
            source,
        })?;
    }
    // An existing lock is opened read-only: flock needs no write access,
    // and the boot's ownership pass gives the inventory (this file too) to
    // kl-pxe, mode untouched, so a lock the API created (0644) was no
    // longer writable by it after any reboot: every assignment failed
    // (found by the lab's power-loss scenario).
    let file = match File::open(&lock_path) {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path),
        Err(e) => Err(e),
    }
    .map_err(|source| InventoryError::Write {
        path: lock_path.clone(),
        source,
    })?;
    let _guard = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(
        |(_, source)| InventoryError::Lock {
            path: lock_path.clone(),
            source,
        },
    )?;
    f()
}

/// A file one process writes and another watches, at a fixed place under
/// the data partition.
pub trait SharedFile: DeserializeOwned + Default {
    fn path(state_dir: &Path) -> PathBuf;
}

/// What a watcher knows of a [`SharedFile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched<T> {
    /// No listing yet (the file does not exist).
    NotListed,
    /// The file could not be read.
    Unreadable(String),
    Listed(T),
}

/// A listing one process hands another: it says when it is not current.
pub trait ListingFile {
    /// Why the listing cannot be taken for the present (its source could
    /// not be read; what it holds is the last good reading).
    fn problem(&self) -> Option<&str>;
}

impl<T: ListingFile> Watched<T> {
    /// Why nothing may be judged from this listing (`never`: there is no
    /// file yet); `None` when it may.
    pub fn unusable<'a>(&'a self, never: &'a str) -> Option<&'a str> {
        match self {
            Watched::NotListed => Some(never),
            Watched::Unreadable(why) => Some(why),
            Watched::Listed(file) => file.problem(),
        }
    }
}

/// A reader's view of a [`SharedFile`], re-read when its mtime changed.
#[derive(Debug)]
pub struct FileWatch<T> {
    path: PathBuf,
    mtime: Option<SystemTime>,
    seen_once: bool,
    _file: PhantomData<fn() -> T>,
}

impl<T: SharedFile> FileWatch<T> {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: T::path(state_dir),
            mtime: None,
            seen_once: false,
            _file: PhantomData,
        }
    }

    /// The file, when it changed since the last call (the first call
    /// always answers).
    pub fn changed(&mut self) -> Option<Watched<T>> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if self.seen_once && mtime == self.mtime {
            return None;
        }
        self.seen_once = true;
        self.mtime = mtime;
        Some(match read_existing::<T>(&self.path) {
            Ok(None) => Watched::NotListed,
            Ok(Some(file)) => Watched::Listed(file),
            Err(e) => Watched::Unreadable(e.to_string()),
        })
    }
}

/// Reads the file; `Ok(None)` when it does not exist.
pub(crate) fn read_existing<T: DeserializeOwned + Default>(
    path: &Path,
) -> Result<Option<T>, InventoryError> {
    if !path.exists() {
        return Ok(None);
    }
    read_json::<T>(path).map(Some)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// After a reboot the lock belongs to another account, mode 0644: the
    /// writer may only read it, and must still be able to lock with it.
    /// (As root, which ignores modes, this passes either way; as any other
    /// user it is the case the ownership pass makes.)
    #[test]
    fn a_lock_file_this_process_may_only_read_still_locks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("assignments.json");
        let lock = path.with_extension("lock");
        std::fs::write(&lock, b"").unwrap();
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o444)).unwrap();
        let got = with_lock(&path, || Ok(7)).unwrap();
        assert_eq!(got, 7);
        // And a missing lock is created.
        let other = dir.path().join("forget.json");
        with_lock(&other, || Ok(())).unwrap();
        assert!(other.with_extension("lock").is_file());
    }
}
