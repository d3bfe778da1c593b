//! The store on disk: where an artifact's bytes and record live, finding
//! one by its sha256 (for the PXE service: a regular file, never through a
//! link), listing and deleting. Writing an upload is `receive`.

use crate::error::io;
use crate::{Sha256Hex, StoreError, ARTIFACTS_DIR, KEEP_FREE, MAX_ARTIFACT};
use serde::{Deserialize, Serialize};
use std::fs::{DirBuilder, File};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The bytes' directory under the store, as in the URL (`/by-hash/sha256/`).
const CONTENT_DIR: &str = "sha256";
/// The records' directory: hidden, so the PXE service's `/artifacts/` path
/// (which refuses hidden names) can never reach it, and 0700 for kl-api.
const META_DIR: &str = ".meta";
/// Prefix of an upload being written in the content directory.
pub(crate) const PARTIAL_PREFIX: &str = ".upload-";

/// One stored artifact: its record (`.meta/HEX.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub sha256: String,
    /// The file name the operator pushed it as.
    pub name: String,
    pub bytes: u64,
    pub uploaded_unix: u64,
    /// The operator (API token name) who pushed it first.
    pub uploaded_by: String,
}

/// How large an artifact may be and how much room it must leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: u64,
    /// Bytes that must stay free on the data partition after an upload.
    pub keep_free: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: MAX_ARTIFACT,
            keep_free: KEEP_FREE,
        }
    }
}

/// The artifact store under one data partition.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
    pub limits: Limits,
}

impl ArtifactStore {
    /// The store of the data partition mounted at `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join(ARTIFACTS_DIR),
            limits: Limits::default(),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// `artifacts/sha256`: the bytes (the PXE service reads here).
    pub fn content_dir(&self) -> PathBuf {
        self.root.join(CONTENT_DIR)
    }

    /// `artifacts/.meta`: the records (the API's alone).
    pub fn meta_dir(&self) -> PathBuf {
        self.root.join(META_DIR)
    }

    pub(crate) fn content_path(&self, digest: &Sha256Hex) -> PathBuf {
        self.content_dir().join(digest.as_str())
    }

    fn meta_path(&self, digest: &Sha256Hex) -> PathBuf {
        self.meta_dir().join(format!("{digest}.json"))
    }

    /// Makes the two directories when missing, with their modes (the config
    /// phase makes and owns them on the appliance; this is for the rest).
    pub(crate) fn prepare(&self) -> Result<(), StoreError> {
        for (dir, mode) in [(self.content_dir(), 0o2750), (self.meta_dir(), 0o700)] {
            if !dir.is_dir() {
                std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
                DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(io(&dir))?;
                // mkdir drops the setgid bit: set the mode afterwards.
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                    .map_err(io(&dir))?;
            }
        }
        Ok(())
    }

    /// The bytes of `digest`, opened for reading, and their length: only a
    /// regular file under its hash's name (a link is not followed).
    pub fn open(&self, digest: &Sha256Hex) -> Option<(File, u64)> {
        use rustix::fs::{Mode, OFlags};
        let path = self.content_path(digest);
        let fd = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .ok()?;
        let file = File::from(fd);
        let meta = file.metadata().ok()?;
        meta.is_file().then_some((file, meta.len()))
    }

    /// The artifact stored under `digest`, if any. Bytes without a record
    /// (written by an older build, or a record lost) still count.
    pub fn get(&self, digest: &Sha256Hex) -> Result<Option<Artifact>, StoreError> {
        let path = self.content_path(digest);
        let meta = match path.symlink_metadata() {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let record = std::fs::read(self.meta_path(digest))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Artifact>(&bytes).ok())
            .filter(|r| r.sha256 == digest.as_str());
        Ok(Some(record.unwrap_or_else(|| Artifact {
            sha256: digest.to_string(),
            name: String::new(),
            bytes: meta.len(),
            uploaded_unix: u64::try_from(meta.mtime()).unwrap_or(0),
            uploaded_by: String::new(),
        })))
    }

    /// Every stored artifact, oldest upload first.
    pub fn list(&self) -> Result<Vec<Artifact>, StoreError> {
        let dir = self.content_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            let Ok(digest) = entry.file_name().to_string_lossy().parse::<Sha256Hex>() else {
                continue;
            };
            if let Some(artifact) = self.get(&digest)? {
                out.push(artifact);
            }
        }
        out.sort_by(|a, b| (a.uploaded_unix, &a.sha256).cmp(&(b.uploaded_unix, &b.sha256)));
        Ok(out)
    }

    /// Removes `digest`'s bytes and record, durably; what was removed.
    pub fn delete(&self, digest: &Sha256Hex) -> Result<Artifact, StoreError> {
        let artifact = self
            .get(digest)?
            .ok_or_else(|| StoreError::NotFound(digest.to_string()))?;
        let path = self.content_path(digest);
        std::fs::remove_file(&path).map_err(io(&path))?;
        let record = self.meta_path(digest);
        match std::fs::remove_file(&record) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&record)(e)),
            _ => {}
        }
        sync_dir(&self.content_dir())?;
        sync_dir(&self.meta_dir())?;
        Ok(artifact)
    }

    /// Writes `artifact`'s record, durably, readable by the API only.
    pub(crate) fn write_record(&self, artifact: &Artifact) -> Result<(), StoreError> {
        let digest: Sha256Hex = artifact.sha256.parse()?;
        let path = self.meta_path(&digest);
        let bytes = serde_json::to_vec_pretty(artifact).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        kindling_atomic_write::write_atomic_with_mode(&path, &bytes, 0o600).map_err(io(&path))
    }

    /// Bytes free to unprivileged writers on the store's file system.
    pub(crate) fn free_bytes(&self) -> Result<u64, StoreError> {
        let dir = self.content_dir();
        let stat = rustix::fs::statvfs(&dir).map_err(|e| io(&dir)(e.into()))?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Removes uploads a crash or power cut left half written (the API
    /// calls it once at start, before it takes any upload).
    pub fn sweep_partials(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(self.content_dir()) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX))
            .filter(|e| std::fs::remove_file(e.path()).is_ok())
            .count()
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}
