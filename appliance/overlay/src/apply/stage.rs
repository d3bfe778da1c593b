//! Stage `stage`: a validated tree swapped into place as
//! `run/overlays/NAME` (the previous tree is replaced only once the new one
//! is complete). The only step of a candidate that changes what services
//! read; on failure the fresh directory is discarded.

use super::validate::Validated;
use crate::unpack::swap_into_place;
use kindling_api::{ApiFailure, ErrorKind};
use kindling_site::{Effective, Layer};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("cannot put the unpacked tree in place at {}: {source}", path.display())]
    SwapIntoPlace {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ApiFailure for StageError {
    fn kind(&self) -> ErrorKind {
        match self {
            StageError::SwapIntoPlace { .. } => ErrorKind::Internal,
        }
    }
}

/// What `stage` hands on: the layer in use and the config it merges into.
#[derive(Debug)]
pub struct Staged {
    pub layer: Layer,
    pub effective: Effective,
}

pub fn stage(validated: Validated, unpack_root: &Path) -> Result<Staged, StageError> {
    let path = unpack_root.join(&validated.unpacked.name);
    match swap_into_place(&validated.unpacked.dir, &path) {
        Ok(()) => Ok(Staged {
            layer: validated.layer,
            effective: validated.effective,
        }),
        Err(source) => {
            validated.unpacked.discard();
            Err(StageError::SwapIntoPlace { path, source })
        }
    }
}
