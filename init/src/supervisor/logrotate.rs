//! Size-bounded files that services write but never rotate themselves
//! (Vault's audit log): the spec's `logs` entries. Past its bound a file is
//! renamed to `PATH.1` (older copies shift up, the oldest is deleted) and the
//! service is signalled to open a new one, like logrotate plus `kill -HUP`.
//!
//! Owns the rotation of those files only; it never truncates (a service that
//! keeps writing to the renamed file loses nothing) and never touches a path
//! the service table did not name.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kindling_init_protocol::table::LogLimit;

/// How often the files are measured: a stat per file, so cheap.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// When the files were last measured.
#[derive(Debug, Default)]
pub struct LogCheck {
    last: Option<Instant>,
}

impl LogCheck {
    /// Whether a check is due at `now` (and records it).
    pub fn due(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < CHECK_EVERY)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Rotates `limit.path` when it is larger than its bound. Returns whether it
/// did (then the service must be told to reopen the file).
pub fn rotate_if_large(limit: &LogLimit) -> io::Result<bool> {
    let path = Path::new(&limit.path);
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size <= limit.max_bytes {
        return Ok(false);
    }
    if limit.keep == 0 {
        ignore_missing(std::fs::remove_file(path))?;
        return Ok(true);
    }
    ignore_missing(std::fs::remove_file(numbered(path, limit.keep)))?;
    for n in (1..limit.keep).rev() {
        ignore_missing(std::fs::rename(numbered(path, n), numbered(path, n + 1)))?;
    }
    std::fs::rename(path, numbered(path, 1))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ki-rot-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn limit(path: &Path, max_bytes: u64, keep: u32) -> LogLimit {
        LogLimit {
            path: path.to_string_lossy().into_owned(),
            max_bytes,
            keep,
            reopen_signal: "SIGHUP".into(),
        }
    }

    #[test]
    fn rotates_past_the_bound_and_keeps_only_keep_copies() {
        let dir = temp_dir("keep");
        let path = dir.join("audit.log");
        let l = limit(&path, 10, 2);
        assert!(!rotate_if_large(&l).unwrap(), "no file: nothing to do");
        std::fs::write(&path, b"0123456789").unwrap();
        assert!(!rotate_if_large(&l).unwrap(), "at the bound: kept");
        for round in 0..4u8 {
            std::fs::write(&path, vec![b'a' + round; 11]).unwrap();
            assert!(rotate_if_large(&l).unwrap());
            assert!(!path.exists());
        }
        // The two newest survive, in order; the older ones are gone.
        assert_eq!(std::fs::read(numbered(&path, 1)).unwrap(), vec![b'd'; 11]);
        assert_eq!(std::fs::read(numbered(&path, 2)).unwrap(), vec![b'c'; 11]);
        assert!(!numbered(&path, 3).exists());
    }

    #[test]
    fn keep_zero_deletes() {
        let dir = temp_dir("zero");
        let path = dir.join("x.log");
        std::fs::write(&path, b"too long").unwrap();
        assert!(rotate_if_large(&limit(&path, 1, 0)).unwrap());
        assert!(!path.exists() && !numbered(&path, 1).exists());
    }

    #[test]
    fn checks_are_spaced() {
        let mut c = LogCheck::default();
        let t = Instant::now();
        assert!(c.due(t));
        assert!(!c.due(t + Duration::from_secs(1)));
        assert!(c.due(t + CHECK_EVERY));
    }
}
