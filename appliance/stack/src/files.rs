//! Reading and atomically writing the stack's small state and config files
//! (tokens, markers, keys, rendered configs), with the path in every error.
//!
//! Owns no file and chooses no mode: callers name both. Must never log or
//! put a file's contents in an error.

use kindling_atomic_write::write_atomic_with_mode;
use std::path::{Path, PathBuf};

/// A file of the stack could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Replaces `path` atomically with `bytes`, created with `mode`.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    write_atomic_with_mode(path, bytes, mode).map_err(|source| FileError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Gives `path` to the group `gid` (the reader's), e.g. Vault's config
/// after the bootstrap rewrote it: a replaced file is the writer's. Outside
/// the appliance (tests, a developer's machine) the process is not in that
/// group and the file stays with the writer's group.
pub fn give_group(path: &Path, gid: u32) -> Result<(), FileError> {
    let outside_the_appliance =
        || kindling_init_protocol::accounts::by_uid(rustix::process::geteuid().as_raw()).is_none();
    match rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid))) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::PERM) if outside_the_appliance() => Ok(()),
        Err(e) => Err(FileError::Write {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// The file's text.
pub fn read_to_string(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The file's bytes, or `None` when it does not exist.
pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}
