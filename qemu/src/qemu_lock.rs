//! The machine-wide QEMU lock: at most 2 VMs run at once on these 2-core
//! machines, so every process that starts QEMU holds an exclusive
//! `flock(/tmp/kindling-qemu.lock)` for as long as its VMs run. Holding a
//! `QemuLock` value is the proof; dropping it releases the lock.

use crate::error::{LabError, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::{Path, PathBuf};

pub const QEMU_LOCK_PATH: &str = "/tmp/kindling-qemu.lock";

#[derive(Debug)]
pub struct QemuLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl QemuLock {
    /// Takes the lock at the standard path, waiting for other holders.
    pub fn acquire() -> Result<Self> {
        Self::acquire_at(Path::new(QEMU_LOCK_PATH))
    }

    pub fn acquire_at(path: &Path) -> Result<Self> {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(|e| LabError::io("opening the QEMU lock", path, e))
        };
        let lock = match Flock::lock(open()?, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                eprintln!(
                    "kindling-lab: waiting for {} (another lab or test runs VMs)",
                    path.display()
                );
                Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, source)| {
                    LabError::QemuLock {
                        path: path.to_path_buf(),
                        source,
                    }
                })?
            }
            Err((_, source)) => {
                return Err(LabError::QemuLock {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Ok(Self {
            _lock: lock,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_second_holder_waits_until_the_first_releases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qemu.lock");
        let first = QemuLock::acquire_at(&path).unwrap();
        let probe = File::open(&path).unwrap();
        let busy = Flock::lock(probe, FlockArg::LockExclusiveNonblock);
        assert!(busy.is_err(), "the lock must be exclusive");
        drop(busy);
        drop(first);
        let _second = QemuLock::acquire_at(&path).unwrap();
    }
}
