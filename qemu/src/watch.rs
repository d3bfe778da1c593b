//! Following a VM's serial log: read what QEMU appended, split it into lines
//! with terminal escape codes removed, and wait (bounded) for a line matching a
//! pattern. Serial lines carry firmware escape codes, so patterns are searched
//! anywhere in a line and must not be anchored with `^`.
//! This module only reads the log; it never writes or truncates it.

use regex::Regex;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// CSI sequences (`ESC [ … final`), two-byte escapes (`ESC c`, `ESC 7`) and
/// the stray carriage returns/NULs firmware writes.
static ESCAPES: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\x1b\[[0-9;?=]*[ -/]*[@-~]|\x1b[@-Z\\-_0-9=>c]|[\r\x00]").ok());

/// How often the log file is polled for new bytes.
const POLL: Duration = Duration::from_millis(100);

/// A line that matched, and when it was first seen.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenLine {
    pub line: String,
    /// Time since the watcher was created when the line was read.
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("timed out after {waited:?} waiting for /{pattern}/ in {log}; last lines:\n{tail}")]
    Timeout {
        pattern: String,
        waited: Duration,
        log: PathBuf,
        tail: String,
    },
    #[error("{why} while waiting for /{pattern}/ in {log}; last lines:\n{tail}")]
    Aborted {
        pattern: String,
        why: String,
        log: PathBuf,
        tail: String,
    },
    #[error("reading serial log {log}: {source}")]
    Read {
        log: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Removes terminal escape codes and carriage returns from one serial line.
pub fn clean_line(raw: &str) -> String {
    match ESCAPES.as_ref() {
        Some(re) => re.replace_all(raw, "").into_owned(),
        None => raw.to_string(),
    }
}

#[derive(Debug)]
pub struct SerialWatcher {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    lines: Vec<SeenLine>,
    /// Index of the first line `wait_for` has not yet looked at.
    cursor: usize,
    started: Instant,
}

impl SerialWatcher {
    /// Watches `path` from its beginning (the file may not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            offset: 0,
            partial: Vec::new(),
            lines: Vec::new(),
            cursor: 0,
            started: Instant::now(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every complete line read so far.
    pub fn lines(&self) -> &[SeenLine] {
        &self.lines
    }

    /// Reads newly appended bytes; returns how many new lines were completed.
    pub fn poll(&mut self) -> Result<usize, WatchError> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(WatchError::Read {
                    log: self.path.clone(),
                    source,
                })
            }
        };
        let read_err = |source| WatchError::Read {
            log: self.path.clone(),
            source,
        };
        file.seek(SeekFrom::Start(self.offset)).map_err(read_err)?;
        let mut buf = Vec::new();
        let n = file
            .read_to_end(&mut buf)
            .map_err(|source| WatchError::Read {
                log: self.path.clone(),
                source,
            })?;
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        let before = self.lines.len();
        let elapsed = self.started.elapsed();
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.partial.drain(..=pos).collect();
            let line = clean_line(&String::from_utf8_lossy(&raw[..raw.len() - 1]));
            self.lines.push(SeenLine { line, elapsed });
        }
        Ok(self.lines.len() - before)
    }

    /// The first line already read (at any position) that matches `pattern`.
    pub fn find_seen(&self, pattern: &Regex) -> Option<&SeenLine> {
        self.lines.iter().find(|l| pattern.is_match(&l.line))
    }

    /// Waits up to `timeout` for a line after the previous match that matches
    /// `pattern`. `abort` is asked between polls and may end the wait early
    /// with a reason (e.g. "the VM exited with status 1"); a line matching
    /// `fail` (e.g. a kernel panic or `kindling: degraded`) ends it too.
    pub fn wait_for(
        &mut self,
        pattern: &Regex,
        fail: Option<&Regex>,
        timeout: Duration,
        mut abort: impl FnMut() -> Option<String>,
    ) -> Result<SeenLine, WatchError> {
        let start = Instant::now();
        loop {
            self.poll()?;
            while self.cursor < self.lines.len() {
                let seen = &self.lines[self.cursor];
                self.cursor += 1;
                if pattern.is_match(&seen.line) {
                    return Ok(seen.clone());
                }
                if fail.is_some_and(|f| f.is_match(&seen.line)) {
                    let why = format!("serial log shows `{}`", seen.line.trim());
                    return Err(self.aborted(pattern, why));
                }
            }
            if let Some(why) = abort() {
                // One last read: the line may have been written just before exit.
                self.poll()?;
                if let Some(seen) = self.lines[self.cursor..]
                    .iter()
                    .find(|l| pattern.is_match(&l.line))
                {
                    let seen = seen.clone();
                    self.cursor = self.lines.len();
                    return Ok(seen);
                }
                return Err(self.aborted(pattern, why));
            }
            if start.elapsed() >= timeout {
                return Err(WatchError::Timeout {
                    pattern: pattern.as_str().to_string(),
                    waited: start.elapsed(),
                    log: self.path.clone(),
                    tail: self.tail(15),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    fn aborted(&self, pattern: &Regex, why: String) -> WatchError {
        WatchError::Aborted {
            pattern: pattern.as_str().to_string(),
            why,
            log: self.path.clone(),
            tail: self.tail(15),
        }
    }

    /// The last `n` lines read, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let from = self.lines.len().saturating_sub(n);
        self.lines[from..]
            .iter()
            .map(|l| format!("  | {}", l.line))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Parses a printk-style timestamp `[   12.345678]` from a serial line (the
/// kernel's and kindling-init's clock: seconds since boot).
pub fn boot_time(line: &str) -> Option<f64> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    line[open + 1..close].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::Write;

    #[test]
    fn clean_line_strips_firmware_escape_codes() {
        let raw = "\x1b[2J\x1b[01;01H\x1b[=3h\x1bcBooting from ROM...\r";
        assert_eq!(clean_line(raw), "Booting from ROM...");
    }

    #[test]
    fn waits_for_a_line_written_later_and_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serial.log");
        let writer_log = log.clone();
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::File::create(&writer_log).unwrap();
            f.write_all(b"\x1b[0mSeaBIOS\r\n[    1.5] kindling: early: ok\n")
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            f.write_all(b"[    2.25] kindling: ready (3 services, 750 ms since /init)\n")
                .unwrap();
        });
        let mut w = SerialWatcher::new(&log);
        let ready = Regex::new(r"kindling: ready \(").unwrap();
        let seen = w
            .wait_for(&ready, None, Duration::from_secs(10), || None)
            .unwrap();
        writer.join().unwrap();
        assert!(
            seen.line.starts_with("[    2.25] kindling: ready"),
            "{}",
            seen.line
        );
        assert_eq!(boot_time(&seen.line), Some(2.25));
        assert_eq!(w.lines()[0].line, "SeaBIOS");
    }

    #[test]
    fn a_partial_line_is_not_matched_until_complete() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serial.log");
        std::fs::write(&log, "kindling: rea").unwrap();
        let mut w = SerialWatcher::new(&log);
        assert_eq!(w.poll().unwrap(), 0);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"dy\n")
            .unwrap();
        assert_eq!(w.poll().unwrap(), 1);
        assert_eq!(w.lines()[0].line, "kindling: ready");
    }

    #[test]
    fn timeout_names_pattern_log_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serial.log");
        std::fs::write(&log, "Kernel booting\n").unwrap();
        let mut w = SerialWatcher::new(&log);
        let err = w
            .wait_for(
                &Regex::new("never").unwrap(),
                None,
                Duration::from_millis(250),
                || None,
            )
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/never/") && msg.contains("serial.log") && msg.contains("Kernel booting"),
            "{msg}"
        );
    }

    #[test]
    fn a_fail_line_or_abort_ends_the_wait_early() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serial.log");
        std::fs::write(&log, "[ 3.0] kindling: degraded: pxe: bind failed\n").unwrap();
        let mut w = SerialWatcher::new(&log);
        let fail = Regex::new("kindling: degraded").unwrap();
        let err = w.wait_for(
            &Regex::new("ready").unwrap(),
            Some(&fail),
            Duration::from_secs(30),
            || None,
        );
        assert!(err.unwrap_err().to_string().contains("pxe: bind failed"));
        let start = Instant::now();
        let err = w.wait_for(
            &Regex::new("ready").unwrap(),
            None,
            Duration::from_secs(30),
            || Some("the VM exited".into()),
        );
        assert!(err.unwrap_err().to_string().contains("the VM exited"));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn boot_time_parses_printk_stamps_only() {
        assert_eq!(
            boot_time("[    0.912345] Run /init as init process"),
            Some(0.912345)
        );
        assert_eq!(boot_time("no stamp here"), None);
        assert_eq!(boot_time("[ abc] x"), None);
    }
}
