//! What can go wrong with the store, each naming what and where.

use kindling_api::{ApiFailure, ErrorKind};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0:?} is not a sha256 (64 hex digits)")]
    BadDigest(String),
    #[error("bad artifact name {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error(
        "the upload's sha256 is {actual}, not the {expected} the client stated; nothing was kept"
    )]
    HashMismatch { expected: String, actual: String },
    #[error("the upload is over {limit} bytes, the most an artifact may be; nothing was kept")]
    TooLarge { limit: u64 },
    #[error("the upload is empty; nothing was kept")]
    Empty,
    #[error("the data partition ({path}) has {free} bytes free, and an artifact must leave {keep_free} (Consul and Vault keep their data there); delete artifacts (`kindling artifact delete`) and push again; nothing was kept")]
    NoSpace {
        path: PathBuf,
        free: u64,
        keep_free: u64,
    },
    #[error("no artifact with sha256 {0}")]
    NotFound(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ApiFailure for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::BadDigest(_) | Self::BadName { .. } | Self::Empty => ErrorKind::BadRequest,
            Self::HashMismatch { .. } => ErrorKind::Refused,
            Self::TooLarge { .. } => ErrorKind::TooLarge,
            Self::NoSpace { .. } => ErrorKind::InsufficientStorage,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Io { .. } => ErrorKind::Internal,
        }
    }
}

/// The error for an I/O failure at `path`; a full disk is [`StoreError::NoSpace`].
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| {
        if is_disk_full(&source) {
            StoreError::NoSpace {
                path,
                free: 0,
                keep_free: 0,
            }
        } else {
            StoreError::Io { path, source }
        }
    }
}

fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.raw_os_error() == Some(rustix::io::Errno::DQUOT.raw_os_error())
}
