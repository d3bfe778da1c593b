//! The update spool (`/var/lib/kindling/update-spool`): the hand-off of a
//! pushed bundle from the API (kl-api), which may not touch the EFI system
//! partition, to the update agent (kl-update), which alone may.
//!
//! The API streams the upload into a hidden partial file, checks that it
//! starts like a bundle, syncs it and renames it to `<id>.kupd` (`id`: the
//! first 16 hex digits of its sha256), so the agent only ever sees whole
//! uploads. One upload waits at a time. The agent owns the directory: it
//! reads the upload, removes it and reports on it in its status file.
//!
//! Owns the names in that directory and the writing of an upload. Never
//! verifies a signature and never touches a slot: that is the agent's
//! (`push`), which trusts nothing the spool says.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The spool's directory name on the data partition.
pub const SPOOL_DIR: &str = "update-spool";
/// Largest upload taken (a UKI with its initramfs, with room to grow).
pub const MAX_UPLOAD: u64 = 256 * 1024 * 1024;
const EXTENSION: &str = "kupd";
/// A tar header block: enough to tell a bundle from anything else.
const HEAD: usize = 512;

/// A whole upload waiting for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The first 16 hex digits of its sha256.
    pub id: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("update {0} is still waiting for the update agent; push again once it is done")]
    Busy(String),
    #[error("the upload is over {MAX_UPLOAD} bytes, more than an update bundle may be")]
    TooLarge,
    #[error("not an update bundle: {0}")]
    NotABundle(String),
    #[error("the upload is empty")]
    Empty,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError {
    let path = path.to_path_buf();
    move |source| SpoolError::Io { path, source }
}

/// The upload waiting in `spool`, if any (the oldest name first when a
/// race left two). Only regular files count: a link is not an upload.
pub fn pending(spool: &Path) -> Option<Upload> {
    let mut found: Vec<(String, PathBuf, u64)> = std::fs::read_dir(spool)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".kupd")?.to_string();
            let meta = e.path().symlink_metadata().ok()?;
            meta.is_file().then(|| (id, e.path(), meta.len()))
        })
        .collect();
    found.sort();
    let (id, path, bytes) = found.into_iter().next()?;
    Some(Upload {
        sha256: String::new(),
        id,
        path,
        bytes,
    })
}

/// One upload being written; dropped unfinished, it leaves nothing.
pub struct Receiver {
    spool: PathBuf,
    partial: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    bytes: u64,
    head: Vec<u8>,
}

impl Receiver {
    /// Starts an upload into `spool`, unless one is already waiting.
    pub fn begin(spool: &Path) -> Result<Self, SpoolError> {
        if let Some(waiting) = pending(spool) {
            return Err(SpoolError::Busy(waiting.id));
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let partial = spool.join(format!(
            ".upload-{}-{}.partial",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&partial)
            .map_err(io(&partial))?;
        Ok(Self {
            spool: spool.to_path_buf(),
            partial,
            file: Some(file),
            hasher: Sha256::new(),
            bytes: 0,
            head: Vec::with_capacity(HEAD),
        })
    }

    /// Appends one chunk; refuses past [`MAX_UPLOAD`] and, once the first
    /// block is in, anything that does not start like a bundle.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), SpoolError> {
        if self.bytes + chunk.len() as u64 > MAX_UPLOAD {
            return Err(SpoolError::TooLarge);
        }
        let had_head = self.head.len() == HEAD;
        let take = (HEAD - self.head.len()).min(chunk.len());
        self.head.extend_from_slice(&chunk[..take]);
        if !had_head && self.head.len() == HEAD {
            check_head(&self.head)?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(SpoolError::Empty);
        };
        file.write_all(chunk).map_err(io(&self.partial))?;
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        Ok(())
    }

    /// Syncs the upload and gives it its name: from here the agent sees it.
    pub fn finish(mut self) -> Result<Upload, SpoolError> {
        if self.bytes == 0 {
            return Err(SpoolError::Empty);
        }
        if self.head.len() < HEAD {
            return Err(SpoolError::NotABundle(format!(
                "{} bytes, shorter than one tar block",
                self.bytes
            )));
        }
        let file = self.file.take().ok_or(SpoolError::Empty)?;
        file.sync_all().map_err(io(&self.partial))?;
        drop(file);
        let sha256: String = std::mem::take(&mut self.hasher)
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let id = sha256[..16].to_string();
        if let Some(waiting) = pending(&self.spool) {
            return Err(SpoolError::Busy(waiting.id));
        }
        let path = self.spool.join(format!("{id}.{EXTENSION}"));
        std::fs::rename(&self.partial, &path).map_err(io(&path))?;
        File::open(&self.spool)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.spool))?;
        Ok(Upload {
            id,
            path,
            bytes: self.bytes,
            sha256,
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Finished, the partial name is gone already: NotFound is fine.
        let _ = std::fs::remove_file(&self.partial);
    }
}

/// Removes a taken upload and syncs the spool directory, before the agent
/// asks for the reboot: a bundle left behind would block new pushes until
/// the updated image's agent removes it at its start (a power cut before
/// this removal: `push::drop_armed_leftover`). Already gone is fine.
pub fn discard(upload: &Upload) -> Result<(), SpoolError> {
    match std::fs::remove_file(&upload.path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&upload.path)(e)),
        _ => {}
    }
    let dir = upload.path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// What an operator asked of the agent's channel poll (`POST
/// /v1/update/check`): the API, which may write only into the spool,
/// leaves it there as [`POLL_REQUEST`]; the agent takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollRequest {
    /// Check the channel now, apply only inside the maintenance window.
    Check,
    /// Check now and apply what is offered at once, window or not.
    ApplyNow,
}

/// The request's file name in the spool: not `*.kupd`, so never an upload.
pub const POLL_REQUEST: &str = "poll-request";

impl PollRequest {
    fn word(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::ApplyNow => "apply-now",
        }
    }
}

/// Leaves `request` for the agent (a later one replaces an earlier one).
pub fn request_poll(spool: &Path, request: PollRequest) -> Result<(), SpoolError> {
    let path = spool.join(POLL_REQUEST);
    kindling_atomic_write::write_atomic(&path, request.word().as_bytes(), false).map_err(io(&path))
}

/// The request waiting in `spool`, removed as it is taken. A link or
/// anything but the two words is dropped: the agent trusts the file's
/// meaning only, and the worst it can ask is a check.
pub fn take_poll_request(spool: &Path) -> Option<PollRequest> {
    let path = spool.join(POLL_REQUEST);
    let meta = path.symlink_metadata().ok()?;
    let text = if meta.is_file() && meta.len() <= 64 {
        std::fs::read_to_string(&path).unwrap_or_default()
    } else {
        String::new()
    };
    if let Err(e) = std::fs::remove_file(&path) {
        eprintln!("update: removing {}: {e}", path.display());
    }
    match text.trim() {
        "check" => Some(PollRequest::Check),
        "apply-now" => Some(PollRequest::ApplyNow),
        _ => None,
    }
}

/// Whether a poll request waits (the API shows it as asked, not yet taken).
pub fn poll_requested(spool: &Path) -> bool {
    spool.join(POLL_REQUEST).is_file()
}

/// A bundle starts with a valid tar header for `manifest.json`.
fn check_head(head: &[u8]) -> Result<(), SpoolError> {
    let bad = |why: String| SpoolError::NotABundle(why);
    let mut archive = tar::Archive::new(head);
    let mut entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    let first = entries
        .next()
        .ok_or_else(|| bad("not a tar archive".into()))?
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    let path = first
        .path()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?
        .into_owned();
    if path.as_os_str() != crate::bundle::MANIFEST_ENTRY {
        return Err(bad(format!(
            "its first entry is {}, a bundle starts with {}",
            path.display(),
            crate::bundle::MANIFEST_ENTRY
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn bundle_head() -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut tar = tar::Builder::new(&mut out);
            let mut h = tar::Header::new_ustar();
            h.set_size(2);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, "manifest.json", &b"{}"[..])
                .unwrap();
            tar.finish().unwrap();
        }
        out
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_whole_upload_is_named_by_its_hash_and_one_waits_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let body = bundle_head();
        let mut r = Receiver::begin(dir.path()).unwrap();
        for chunk in body.chunks(100) {
            r.write(chunk).unwrap();
        }
        assert!(pending(dir.path()).is_none(), "not visible before finish");
        let up = r.finish().unwrap();
        assert_eq!(up.bytes, body.len() as u64);
        assert_eq!(up.id, &up.sha256[..16]);
        assert_eq!(names(dir.path()), [format!("{}.kupd", up.id)]);
        assert_eq!(pending(dir.path()).unwrap().id, up.id);
        assert!(matches!(Receiver::begin(dir.path()), Err(SpoolError::Busy(id)) if id == up.id));
    }

    #[test]
    fn garbage_oversize_and_abandoned_uploads_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Receiver::begin(dir.path()).unwrap();
        let e = r.write(&[b'x'; 600]).unwrap_err();
        assert!(matches!(e, SpoolError::NotABundle(_)), "{e}");
        drop(r);
        assert!(names(dir.path()).is_empty());

        let mut r = Receiver::begin(dir.path()).unwrap();
        r.write(&bundle_head()[..100]).unwrap();
        assert!(matches!(r.finish(), Err(SpoolError::NotABundle(_))));
        assert!(names(dir.path()).is_empty());

        let mut r = Receiver::begin(dir.path()).unwrap();
        r.bytes = MAX_UPLOAD - 10;
        assert!(matches!(r.write(&[0; 11]), Err(SpoolError::TooLarge)));
        drop(r);
        assert!(names(dir.path()).is_empty());

        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("x.kupd")).unwrap();
        assert!(pending(dir.path()).is_none(), "a link is not an upload");
    }

    #[test]
    fn a_discarded_upload_is_gone_and_discarding_it_again_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let mut rx = Receiver::begin(dir.path()).unwrap();
        rx.write(&bundle_head()).unwrap();
        let upload = rx.finish().unwrap();
        discard(&upload).unwrap();
        assert!(pending(dir.path()).is_none());
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
        discard(&upload).unwrap();
    }

    #[test]
    fn poll_requests_are_taken_once_and_never_count_as_uploads() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(take_poll_request(dir.path()), None);
        request_poll(dir.path(), PollRequest::Check).unwrap();
        request_poll(dir.path(), PollRequest::ApplyNow).unwrap();
        assert!(poll_requested(dir.path()));
        assert!(pending(dir.path()).is_none());
        assert_eq!(take_poll_request(dir.path()), Some(PollRequest::ApplyNow));
        assert_eq!(take_poll_request(dir.path()), None);
        std::fs::write(dir.path().join(POLL_REQUEST), "reboot").unwrap();
        assert_eq!(take_poll_request(dir.path()), None);
        assert!(!poll_requested(dir.path()), "garbage is dropped");
    }
}
