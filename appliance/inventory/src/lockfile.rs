//! Read-modify-write of a file shared between processes: under an exclusive
//! `flock` on a sibling `.lock` file, so concurrent writers never lose each
//! other's change. Readers need no lock (writers replace files atomically).
//!
//! Owns the lock only; what is read and written is the caller's.

use crate::error::InventoryError;
use std::fs::File;
use std::path::Path;

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
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
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
