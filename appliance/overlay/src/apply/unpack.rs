//! Stage `unpack`: a verified payload into a fresh directory beside the
//! unpacked trees (`run/overlays/.NAME.new-PID`), checked against the
//! manifest's file list. The directory is removed again if anything fails;
//! the tree in use is never touched here.

use crate::limits::Limits;
use crate::unpack::{unpack_payload, UnpackError};
use crate::verify::Verified;
use std::path::{Path, PathBuf};

/// A payload unpacked into its own directory, not yet in use.
#[derive(Debug)]
pub struct Unpacked {
    pub name: String,
    pub dir: PathBuf,
}

impl Unpacked {
    /// Removes the directory: the candidate was not taken.
    pub fn discard(self) {
        // Best effort: a leftover is removed by the next attempt for this name.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn unpack(unpack_root: &Path, v: &Verified, limits: &Limits) -> Result<Unpacked, UnpackError> {
    let name = v.manifest.name.clone();
    let dir = unpack_root.join(format!(".{name}.new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let unpacked = Unpacked { name, dir };
    let files = match unpack_payload(&v.payload, &unpacked.dir, limits) {
        Ok(files) => files,
        Err(e) => {
            unpacked.discard();
            return Err(e);
        }
    };
    if files != v.manifest.files {
        unpacked.discard();
        return Err(UnpackError::FileList(format!(
            "{} unpacked, {} listed",
            files.len(),
            v.manifest.files.len()
        )));
    }
    Ok(unpacked)
}
