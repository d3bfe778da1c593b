//! Publishing a finished build: moving the staged artifacts into `--out`,
//! removing artifacts of formats not built this time, manifest last.
//!
//! Owns the final renames. Must never publish a manifest before its
//! artifacts are in place, nor leave one that lists a missing artifact.

use super::error::BuildError;
use std::fs;
use std::path::Path;

/// The artifact names a build may publish (stale ones from an earlier build
/// with other formats are removed so the directory matches the manifest).
const ARTIFACT_NAMES: &[&str] = &[
    "vmlinuz",
    "initramfs.cpio.zst",
    "kindling.iso",
    "kindling.img",
    "kindling.efi",
    "pxe",
];

/// Moves the staged build into `out_dir`: artifacts first, manifest last;
/// artifacts of formats not built this time are removed so the directory
/// holds exactly what the manifest lists.
pub(super) fn publish(stage: &Path, out_dir: &Path) -> Result<(), BuildError> {
    let manifest = out_dir.join("manifest.json");
    // Without a manifest the directory reads as "no complete build" while
    // the artifacts are being swapped.
    remove_any(&manifest)?;
    for name in ARTIFACT_NAMES {
        let from = stage.join(name);
        let to = out_dir.join(name);
        remove_any(&to)?;
        if from.exists() {
            fs::rename(&from, &to).map_err(BuildError::io("move into place", &to))?;
        }
    }
    fs::rename(stage.join("manifest.json"), &manifest)
        .map_err(BuildError::io("move into place", &manifest))
}

fn remove_any(path: &Path) -> Result<(), BuildError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(path).map_err(BuildError::io("replace", path))
        }
        Ok(_) => fs::remove_file(path).map_err(BuildError::io("replace", path)),
        Err(_) => Ok(()),
    }
}
