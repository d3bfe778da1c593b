//! Replacing a file that others read: write a temporary file in the same
//! directory, optionally fsync it, rename it over the target.
//!
//! Readers never see a half-written file. It never deletes anything but its
//! own temporary file, which it removes again when a step fails.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces `path` with `bytes` (mode 0644). With `durable`, the data and the
/// directory entry are fsynced so the new content survives power loss; files
/// on tmpfs (`/run`) need no fsync.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    replace(path, bytes, 0o644, durable)
}

/// Replaces `path` with `bytes`, durably, with `mode` applied before the
/// rename: a secret is never readable by others, not even briefly.
pub fn write_atomic_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    replace(path, bytes, mode, true)
}

fn replace(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The pid keeps two writers of the same file (a service and its CLI) apart.
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if durable {
            // The file again under its new name: Linux's FAT driver (the
            // ESP) writes the renamed entry's clusters and size only with
            // the file's inode, which a directory sync does not write.
            File::open(path)?.sync_all()?;
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        write_atomic(&path, b"one", true).unwrap();
        write_atomic(&path, b"two", false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn secret_mode_is_set_before_the_file_appears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write_atomic_with_mode(&path, b"s3cret", 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"old", false).unwrap();
        // A directory where the temp file's parent should be: the write fails.
        let bad = dir.path().join("f/child");
        assert!(write_atomic(&bad, b"new", false).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
}
