//! Writing one upload into the store: hashed while it streams into a hidden
//! file beside its final name, checked against the size limit, the free
//! space to keep and the sha256 the client stated, then synced, made
//! readable to the PXE service's group and renamed to its hash. Dropped
//! before `finish` succeeds, it leaves nothing.

use crate::error::io;
use crate::store::{sync_dir, PARTIAL_PREFIX};
use crate::{Artifact, ArtifactStore, Sha256Hex, StoreError};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// How often (in bytes written) the upload is synced and the free space
/// checked again.
const SPACE_CHECK_EVERY: u64 = 64 * 1024 * 1024;
/// Longest artifact name kept (a file name on ext4).
const MAX_NAME: usize = 255;

/// What the client says about an upload before its bytes.
#[derive(Debug, Clone, Copy)]
pub struct UploadRequest<'a> {
    /// The file name it was pushed as (a name, not a path).
    pub name: &'a str,
    /// The sha256 the bytes must have, when the client states one.
    pub expected: Option<&'a Sha256Hex>,
    /// Who pushes it (the operator's name).
    pub uploaded_by: &'a str,
    /// The length the client declared (`Content-Length`), when it did.
    pub declared: Option<u64>,
}

/// A finished upload: its record, and whether it is new (same bytes pushed
/// again keep the first record: `created` is false).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub artifact: Artifact,
    pub created: bool,
}

/// One upload being written; dropped unfinished, it leaves nothing.
pub struct Receiver {
    store: ArtifactStore,
    partial: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    bytes: u64,
    since_space_check: u64,
    name: String,
    expected: Option<Sha256Hex>,
    uploaded_by: String,
}

/// A file name: no path, no control character, not empty.
fn check_name(name: &str) -> Result<(), StoreError> {
    let bad = |reason| StoreError::BadName {
        name: name.chars().take(80).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > MAX_NAME {
        return Err(bad("longer than 255 bytes"));
    }
    if name == "." || name == ".." || name.contains('/') {
        return Err(bad("a file name, not a path"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("holds a control character"));
    }
    Ok(())
}

impl Receiver {
    /// Starts an upload: refused at once for a bad name, a declared length
    /// over the limit, or one that would not leave the free space to keep.
    pub fn begin(store: &ArtifactStore, request: UploadRequest<'_>) -> Result<Self, StoreError> {
        check_name(request.name)?;
        let limits = store.limits;
        if request.declared.is_some_and(|n| n > limits.max_bytes) {
            return Err(StoreError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        store.prepare()?;
        check_space(store, request.declared.unwrap_or(0))?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let partial = store.content_dir().join(format!(
            "{PARTIAL_PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io(&partial))?;
        Ok(Self {
            store: store.clone(),
            partial,
            file: Some(file),
            hasher: Sha256::new(),
            bytes: 0,
            since_space_check: 0,
            name: request.name.to_string(),
            expected: request.expected.cloned(),
            uploaded_by: request.uploaded_by.to_string(),
        })
    }

    /// Appends one chunk.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let limit = self.store.limits.max_bytes;
        if self.bytes + chunk.len() as u64 > limit {
            return Err(StoreError::TooLarge { limit });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(StoreError::Empty);
        };
        file.write_all(chunk).map_err(io(&self.partial))?;
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        self.since_space_check += chunk.len() as u64;
        if self.since_space_check >= SPACE_CHECK_EVERY {
            self.since_space_check = 0;
            // Written back as it goes, so the sync in `finish` stays short
            // (the client waits for the answer) and a failing disk shows early.
            file.sync_data().map_err(io(&self.partial))?;
            check_space(&self.store, 0)?;
        }
        Ok(())
    }

    /// Checks the hash, syncs the bytes and gives them their name.
    pub fn finish(mut self) -> Result<Stored, StoreError> {
        if self.bytes == 0 {
            return Err(StoreError::Empty);
        }
        let digest = Sha256Hex::of_bytes(&std::mem::take(&mut self.hasher).finalize());
        if let Some(expected) = &self.expected {
            if *expected != digest {
                return Err(StoreError::HashMismatch {
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let file = self.file.take().ok_or(StoreError::Empty)?;
        file.sync_all().map_err(io(&self.partial))?;
        // Readable by the directory's group (kl-pxe), writable by nobody.
        file.set_permissions(std::fs::Permissions::from_mode(0o440))
            .map_err(io(&self.partial))?;
        drop(file);
        if let Some(existing) = self.store.get(&digest)? {
            // The same bytes again: the first push's record stands.
            if existing.name.is_empty() {
                self.store.write_record(&self.record(&digest))?;
                return Ok(Stored {
                    artifact: self.record(&digest),
                    created: false,
                });
            }
            return Ok(Stored {
                artifact: existing,
                created: false,
            });
        }
        let path = self.store.content_path(&digest);
        std::fs::rename(&self.partial, &path).map_err(io(&path))?;
        let artifact = self.record(&digest);
        let recorded =
            sync_dir(&self.store.content_dir()).and_then(|()| self.store.write_record(&artifact));
        if let Err(e) = recorded {
            // Bytes nobody can account for are not kept either.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(Stored {
            artifact,
            created: true,
        })
    }

    fn record(&self, digest: &Sha256Hex) -> Artifact {
        Artifact {
            sha256: digest.to_string(),
            name: self.name.clone(),
            bytes: self.bytes,
            uploaded_unix: kindling_clock::unix_now(),
            uploaded_by: self.uploaded_by.clone(),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Finished, the partial name is gone already: NotFound is fine.
        let _ = std::fs::remove_file(&self.partial);
    }
}

/// Whether `more` bytes still leave the store's free space to keep.
fn check_space(store: &ArtifactStore, more: u64) -> Result<(), StoreError> {
    let free = store.free_bytes()?;
    let keep_free = store.limits.keep_free;
    if free < more.saturating_add(keep_free) {
        return Err(StoreError::NoSpace {
            path: store.content_dir(),
            free,
            keep_free,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::Limits;
    use std::os::unix::fs::MetadataExt;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn store(dir: &std::path::Path) -> ArtifactStore {
        ArtifactStore::new(dir).with_limits(Limits {
            max_bytes: 1024,
            keep_free: 0,
        })
    }

    fn request<'a>(name: &'a str, expected: Option<&'a Sha256Hex>) -> UploadRequest<'a> {
        UploadRequest {
            name,
            expected,
            uploaded_by: "alice",
            declared: None,
        }
    }

    fn push(
        store: &ArtifactStore,
        r: UploadRequest<'_>,
        chunks: &[&[u8]],
    ) -> Result<Stored, StoreError> {
        let mut receiver = Receiver::begin(store, r)?;
        for chunk in chunks {
            receiver.write(chunk)?;
        }
        receiver.finish()
    }

    /// Every name in the content directory (partials included).
    fn names(store: &ArtifactStore) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(store.content_dir())
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn an_upload_is_stored_under_its_hash_with_its_record_and_again_is_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let stored = push(&store, request("abc.iso", None), &[b"a", b"bc"]).unwrap();
        assert!(stored.created);
        assert_eq!(stored.artifact.sha256, ABC);
        assert_eq!(stored.artifact.name, "abc.iso");
        assert_eq!(stored.artifact.bytes, 3);
        assert_eq!(stored.artifact.uploaded_by, "alice");
        assert_eq!(names(&store), [ABC]);
        let meta = std::fs::metadata(store.content_dir().join(ABC)).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o440);
        assert_eq!(
            std::fs::metadata(store.content_dir()).unwrap().mode() & 0o7777,
            0o2750
        );
        assert_eq!(
            std::fs::metadata(store.meta_dir()).unwrap().mode() & 0o777,
            0o700
        );

        // The same bytes under another name, stating the right hash: the
        // first record stands, nothing new is written.
        let digest: Sha256Hex = ABC.parse().unwrap();
        let r = UploadRequest {
            uploaded_by: "bob",
            ..request("other-name", Some(&digest))
        };
        let again = push(&store, r, &[b"abc"]).unwrap();
        assert!(!again.created);
        assert_eq!(again.artifact, stored.artifact);
        assert_eq!(names(&store), [ABC]);
        assert_eq!(
            store.list().unwrap(),
            std::slice::from_ref(&stored.artifact)
        );

        let (mut file, len) = store.open(&digest).unwrap();
        assert_eq!(len, 3);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).unwrap();
        assert_eq!(text, "abc");
    }

    /// Past the sync-and-check interval the stream goes on as before.
    #[test]
    fn a_large_upload_is_synced_on_the_way_and_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(dir.path()).with_limits(Limits {
            max_bytes: 128 << 20,
            keep_free: 0,
        });
        let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut receiver = Receiver::begin(&store, request("big.img", None)).unwrap();
        for _ in 0..65 {
            receiver.write(&chunk).unwrap();
        }
        let stored = receiver.finish().unwrap();
        assert_eq!(stored.artifact.bytes, 65 << 20);
        let digest: Sha256Hex = stored.artifact.sha256.parse().unwrap();
        assert_eq!(store.open(&digest).unwrap().1, 65 << 20);
        assert_eq!(names(&store), [stored.artifact.sha256]);
    }

    #[test]
    fn bytes_that_do_not_match_the_stated_hash_are_refused_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let wrong: Sha256Hex = "0".repeat(64).parse().unwrap();
        let err = push(&store, request("abc.iso", Some(&wrong)), &[b"abc"]).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::HashMismatch { .. }), "{text}");
        assert!(
            text.contains(ABC) && text.contains(&"0".repeat(64)),
            "{text}"
        );
        assert!(names(&store).is_empty(), "{:?}", names(&store));
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn a_failed_or_abandoned_upload_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        // Over the limit in the middle of the stream.
        let err = push(&store, request("big", None), &[&[0u8; 1000], &[0u8; 100]]).unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { limit: 1024 }), "{err}");
        assert!(names(&store).is_empty(), "{:?}", names(&store));
        // Declared over the limit: refused before a file exists.
        let r = UploadRequest {
            declared: Some(4096),
            ..request("big", None)
        };
        assert!(matches!(
            Receiver::begin(&store, r),
            Err(StoreError::TooLarge { .. })
        ));
        // Dropped halfway (the client went away).
        let mut receiver = Receiver::begin(&store, request("cut", None)).unwrap();
        receiver.write(b"half").unwrap();
        assert_eq!(
            names(&store).len(),
            1,
            "the partial exists while it streams"
        );
        assert!(names(&store)[0].starts_with(PARTIAL_PREFIX));
        drop(receiver);
        assert!(names(&store).is_empty(), "{:?}", names(&store));
        // Empty.
        assert!(matches!(
            push(&store, request("empty", None), &[]),
            Err(StoreError::Empty)
        ));
        assert!(names(&store).is_empty());
        // A leftover of a crash is swept.
        std::fs::write(store.content_dir().join(".upload-1-0"), b"x").unwrap();
        assert_eq!(store.sweep_partials(), 1);
        assert!(names(&store).is_empty());
    }

    #[test]
    fn an_upload_that_would_eat_the_space_to_keep_is_refused_with_nothing_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(dir.path()).with_limits(Limits {
            max_bytes: u64::MAX,
            keep_free: u64::MAX / 2,
        });
        let err = push(&store, request("x.iso", None), &[b"abc"]).unwrap_err();
        assert!(matches!(err, StoreError::NoSpace { .. }), "{err}");
        assert!(err.to_string().contains("must leave"), "{err}");
        assert!(names(&store).is_empty(), "{:?}", names(&store));
    }

    #[test]
    fn names_are_file_names_and_unknown_hashes_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        for bad in ["", "a/b", "..", ".", "a\nb", &"x".repeat(256)] {
            assert!(
                matches!(
                    Receiver::begin(&store, request(bad, None)),
                    Err(StoreError::BadName { .. })
                ),
                "{bad:?}"
            );
        }
        let unknown: Sha256Hex = "1".repeat(64).parse().unwrap();
        assert!(matches!(
            store.delete(&unknown),
            Err(StoreError::NotFound(_))
        ));
        assert!(store.open(&unknown).is_none());
        assert_eq!(store.get(&unknown).unwrap(), None);
    }

    #[test]
    fn delete_removes_bytes_and_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let stored = push(&store, request("abc.iso", None), &[b"abc"]).unwrap();
        let digest: Sha256Hex = ABC.parse().unwrap();
        assert_eq!(store.delete(&digest).unwrap(), stored.artifact);
        assert!(names(&store).is_empty());
        assert_eq!(std::fs::read_dir(store.meta_dir()).unwrap().count(), 0);
        assert!(store.open(&digest).is_none());
        assert!(matches!(
            store.delete(&digest),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn a_link_in_the_store_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        store.prepare().unwrap();
        let outside = dir.path().join("secret");
        std::fs::write(&outside, b"abc").unwrap();
        std::os::unix::fs::symlink(&outside, store.content_dir().join(ABC)).unwrap();
        let digest: Sha256Hex = ABC.parse().unwrap();
        assert!(store.open(&digest).is_none());
        assert_eq!(store.get(&digest).unwrap(), None);
        assert!(store.list().unwrap().is_empty());
    }
}
