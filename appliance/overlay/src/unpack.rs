//! Unpacking a verified payload into a fresh directory and swapping it into
//! place atomically. Refuses anything that could write outside the directory
//! or exhaust the disk: `..` or absolute paths, links of any kind, device
//! files, more entries or more bytes than the limits (checked on the declared
//! sizes and on the decompressed stream itself, the zip-bomb guard).
//!
//! It never follows a path out of the directory it created and never replaces
//! the previous tree until the new one is complete.

use crate::limits::Limits;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("payload entry {entry:?} escapes the overlay directory ({why})")]
    UnsafePath { entry: String, why: &'static str },
    #[error("payload entry {entry:?} is a {kind}; overlays may contain only regular files and directories")]
    UnsupportedEntry { entry: String, kind: String },
    #[error("payload decompresses to more than {limit} bytes (zip-bomb guard)")]
    TooLarge { limit: u64 },
    #[error("payload has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("payload entry {0:?} appears twice")]
    Duplicate(String),
    #[error("payload files differ from the manifest's list ({0})")]
    FileList(String),
    #[error("payload is not a valid tar+zstd stream: {0}")]
    Corrupt(String),
    #[error("writing {path}: {source}")]
    Write { path: String, source: io::Error },
}

impl kindling_api::ApiFailure for UnpackError {
    fn kind(&self) -> kindling_api::ErrorKind {
        match self {
            UnpackError::UnsafePath { .. }
            | UnpackError::UnsupportedEntry { .. }
            | UnpackError::TooLarge { .. }
            | UnpackError::TooManyEntries { .. }
            | UnpackError::Duplicate(_)
            | UnpackError::FileList(_)
            | UnpackError::Corrupt(_) => kindling_api::ErrorKind::Refused,
            UnpackError::Write { .. } => kindling_api::ErrorKind::Internal,
        }
    }
}

/// Counts bytes read and fails once more than `limit` came out: bounds the
/// work of a decompressor whatever the headers claim.
struct LimitedReader<R> {
    inner: R,
    remaining: u64,
    exceeded: bool,
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.remaining {
            self.exceeded = true;
            return Err(io::Error::other("decompressed size limit exceeded"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The entry's path as safe relative components, or why not.
fn safe_relative(raw: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("contains '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("empty path");
    }
    Ok(out)
}

/// Writing or creating `path` under the destination failed.
fn write_err(path: &Path, source: io::Error) -> UnpackError {
    UnpackError::Write {
        path: path.display().to_string(),
        source,
    }
}

/// Unpacks `payload` (tar+zstd) into `dest`, which must not exist yet.
/// Returns the files written (relative, `/`-separated, sorted).
pub fn unpack_payload(
    payload: &[u8],
    dest: &Path,
    limits: &Limits,
) -> Result<Vec<String>, UnpackError> {
    std::fs::create_dir(dest).map_err(|e| write_err(dest, e))?;
    let decoder = zstd::stream::read::Decoder::new(payload)
        .map_err(|e| UnpackError::Corrupt(e.to_string()))?;
    let mut limited = LimitedReader {
        inner: decoder,
        remaining: limits.max_unpacked_bytes,
        exceeded: false,
    };
    let result = unpack_entries(&mut limited, dest, limits);
    match result {
        // The size limit cut the stream short: whatever broke next is
        // reported as the limit it was.
        Err(UnpackError::Corrupt(_) | UnpackError::Write { .. }) if limited.exceeded => {
            Err(UnpackError::TooLarge {
                limit: limits.max_unpacked_bytes,
            })
        }
        other => other,
    }
}

fn unpack_entries<R: Read>(
    reader: &mut R,
    dest: &Path,
    limits: &Limits,
) -> Result<Vec<String>, UnpackError> {
    let corrupt = |e: io::Error| UnpackError::Corrupt(e.to_string());
    let mut archive = tar::Archive::new(reader);
    let mut files = Vec::new();
    let mut budget = limits.max_unpacked_bytes;
    for (count, entry) in archive.entries().map_err(corrupt)?.enumerate() {
        if count >= limits.max_files {
            return Err(UnpackError::TooManyEntries {
                limit: limits.max_files,
            });
        }
        let mut entry = entry.map_err(corrupt)?;
        let raw = entry.path().map_err(corrupt)?.into_owned();
        let shown = raw.display().to_string();
        let rel = safe_relative(&raw).map_err(|why| UnpackError::UnsafePath {
            entry: shown.clone(),
            why,
        })?;
        let kind = entry.header().entry_type();
        let target = dest.join(&rel);
        match kind {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(|e| write_err(&target, e))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                if size > budget {
                    return Err(UnpackError::TooLarge {
                        limit: limits.max_unpacked_bytes,
                    });
                }
                budget -= size;
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| write_err(parent, e))?;
                }
                // create_new: a second entry for the same path is refused, and
                // nothing pre-existing (there is nothing: the dir is fresh) is followed.
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(|e| {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            UnpackError::Duplicate(shown.clone())
                        } else {
                            write_err(&target, e)
                        }
                    })?;
                io::copy(&mut (&mut entry).take(size), &mut out)
                    .map_err(|e| write_err(&target, e))?;
                files.push(
                    rel.to_string_lossy()
                        .replace(std::path::MAIN_SEPARATOR, "/"),
                );
            }
            other => {
                let kind = match other {
                    tar::EntryType::Symlink => "symlink".to_string(),
                    tar::EntryType::Link => "hard link".to_string(),
                    tar::EntryType::Char | tar::EntryType::Block => "device file".to_string(),
                    tar::EntryType::Fifo => "fifo".to_string(),
                    t => format!("{t:?} entry"),
                };
                return Err(UnpackError::UnsupportedEntry { entry: shown, kind });
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Puts the complete tree `fresh` at `dest`: an atomic exchange when `dest`
/// exists (the old tree is then removed), a rename otherwise.
pub fn swap_into_place(fresh: &Path, dest: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(dest).is_ok() {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            fresh,
            rustix::fs::CWD,
            dest,
            rustix::fs::RenameFlags::EXCHANGE,
        )?;
        // `fresh` now holds the previous tree.
        std::fs::remove_dir_all(fresh)
    } else {
        std::fs::rename(fresh, dest)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn path_rules() {
        assert!(safe_relative(Path::new("profiles/dev.toml")).is_ok());
        assert!(safe_relative(Path::new("./site.toml")).is_ok());
        assert_eq!(safe_relative(Path::new("../x")), Err("contains '..'"));
        assert_eq!(safe_relative(Path::new("a/../../x")), Err("contains '..'"));
        assert_eq!(
            safe_relative(Path::new("/etc/passwd")),
            Err("absolute path")
        );
    }

    fn tar_zst(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, path, *data).unwrap();
        }
        zstd::encode_all(b.into_inner().unwrap().as_slice(), 3).unwrap()
    }

    #[test]
    fn decompressed_stream_limit_counts_headers_too() {
        // 40 files of 10 bytes: 400 bytes of data, but >20 KiB of tar stream.
        let names: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
        let files: Vec<(&str, &[u8])> = names
            .iter()
            .map(|n| (n.as_str(), b"0123456789".as_slice()))
            .collect();
        let payload = tar_zst(&files);
        let tmp = tempfile::Builder::new().prefix("ko-").tempdir().unwrap();
        let limits = Limits {
            max_unpacked_bytes: 8 * 1024,
            ..Limits::default()
        };
        let err = unpack_payload(&payload, &tmp.path().join("x"), &limits).unwrap_err();
        assert!(
            matches!(err, UnpackError::TooLarge { limit: 8192 }),
            "{err}"
        );
        // Within the limit it unpacks, sorted.
        let ok = unpack_payload(&payload, &tmp.path().join("y"), &Limits::default()).unwrap();
        assert_eq!(ok.len(), 40);
        let limits = Limits {
            max_files: 10,
            ..Limits::default()
        };
        let err = unpack_payload(&payload, &tmp.path().join("z"), &limits).unwrap_err();
        assert!(
            matches!(err, UnpackError::TooManyEntries { limit: 10 }),
            "{err}"
        );
    }

    #[test]
    fn swap_replaces_old_tree() {
        let tmp = tempfile::Builder::new().prefix("ko-").tempdir().unwrap();
        let dest = tmp.path().join("lab");
        let a = tmp.path().join("a");
        std::fs::create_dir(&a).unwrap();
        std::fs::write(a.join("v"), "1").unwrap();
        swap_into_place(&a, &dest).unwrap();
        let b = tmp.path().join("b");
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join("v"), "2").unwrap();
        swap_into_place(&b, &dest).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("v")).unwrap(), "2");
        assert!(!b.exists() && !a.exists());
    }
}
