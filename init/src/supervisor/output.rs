//! Children's stdout/stderr and readiness pipes: read without blocking, split
//! into lines, copy to the console and to `/run/log/<service>.log` (rotated).
//!
//! Owns the parent's ends of the pipes. It never blocks (every fd is
//! non-blocking) and never decides anything about a service: a readiness write
//! is only reported back to the supervisor.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::console;

/// A line longer than this is cut and continued on the next line.
const MAX_LINE: usize = 4096;

/// What a pipe carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Output,
    Notify,
}

struct Stream {
    service: String,
    generation: u64,
    kind: StreamKind,
    file: File,
    partial: Vec<u8>,
}

/// What reading a pipe produced.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The child wrote to its readiness fd.
    Notified { service: String, generation: u64 },
}

/// All open child pipes.
pub struct OutputHub {
    streams: HashMap<RawFd, Stream>,
    logs: LogFiles,
}

impl OutputHub {
    pub fn new(log_dir: &Path, max_bytes: u64) -> OutputHub {
        OutputHub {
            streams: HashMap::new(),
            logs: LogFiles::new(log_dir, max_bytes),
        }
    }

    /// Takes ownership of a pipe's read end.
    pub fn add(&mut self, service: &str, generation: u64, kind: StreamKind, fd: OwnedFd) {
        if let Err(e) = nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        ) {
            crate::say!(
                service,
                "cannot make its pipe non-blocking ({e}); output dropped"
            );
            return;
        }
        let raw = fd.as_raw_fd();
        self.streams.insert(
            raw,
            Stream {
                service: service.to_string(),
                generation,
                kind,
                file: File::from(fd),
                partial: Vec::new(),
            },
        );
    }

    /// Drops the readiness pipes of one service generation (it is ready or gone).
    pub fn close_notify(&mut self, service: &str) {
        self.streams
            .retain(|_, s| !(s.kind == StreamKind::Notify && s.service == service));
    }

    /// The fds to poll.
    pub fn fds(&self) -> Vec<RawFd> {
        self.streams.keys().copied().collect()
    }

    /// Reads what `fd` has; on EOF the stream is closed.
    pub fn on_readable(&mut self, fd: RawFd) -> Option<StreamEvent> {
        let stream = self.streams.get_mut(&fd)?;
        let mut buf = [0u8; 8192];
        let mut event = None;
        let mut closed = false;
        loop {
            match stream.file.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => match stream.kind {
                    StreamKind::Notify => {
                        event = Some(StreamEvent::Notified {
                            service: stream.service.clone(),
                            generation: stream.generation,
                        });
                    }
                    StreamKind::Output => {
                        stream.partial.extend_from_slice(&buf[..n]);
                        emit_lines(&stream.service, &mut stream.partial, &mut self.logs, false);
                    }
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            if let Some(mut stream) = self.streams.remove(&fd) {
                if stream.kind == StreamKind::Output {
                    emit_lines(&stream.service, &mut stream.partial, &mut self.logs, true);
                }
            }
        }
        event
    }

    /// Writes a line of init's own about a service into that service's log file.
    pub fn log_event(&mut self, service: &str, line: &str) {
        self.logs.append(service, line);
    }
}

fn emit_lines(service: &str, partial: &mut Vec<u8>, logs: &mut LogFiles, flush: bool) {
    loop {
        let cut = match partial.iter().position(|&b| b == b'\n') {
            Some(i) => Some((i, i + 1)),
            None if partial.len() >= MAX_LINE => Some((MAX_LINE, MAX_LINE)),
            None if flush && !partial.is_empty() => Some((partial.len(), partial.len())),
            None => None,
        };
        let Some((end, next)) = cut else { return };
        let line = String::from_utf8_lossy(&partial[..end]);
        let line = line.trim_end_matches('\r');
        console::service_output(service, line);
        logs.append(service, line);
        partial.drain(..next);
    }
}

/// Rotating per-service log files.
pub struct LogFiles {
    dir: PathBuf,
    max_bytes: u64,
    open: HashMap<String, (File, u64)>,
    broken: bool,
}

impl LogFiles {
    pub fn new(dir: &Path, max_bytes: u64) -> LogFiles {
        LogFiles {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(1024),
            open: HashMap::new(),
            broken: false,
        }
    }

    /// Path of a service's current log.
    pub fn path(&self, service: &str) -> PathBuf {
        self.dir.join(format!("{service}.log"))
    }

    /// Appends one timestamped line, rotating first if the file is full.
    pub fn append(&mut self, service: &str, line: &str) {
        if self.broken {
            return;
        }
        let text = format!("{} {}\n", console::stamp(console::boottime()), line);
        if let Some((_, size)) = self.open.get(service) {
            if size + text.len() as u64 > self.max_bytes {
                self.open.remove(service);
                let current = self.path(service);
                let _ = std::fs::rename(&current, self.dir.join(format!("{service}.log.1")));
            }
        }
        if !self.open.contains_key(service) {
            match self.open_log(service) {
                Ok(entry) => {
                    self.open.insert(service.to_string(), entry);
                }
                Err(e) => {
                    // Logged once; the console still has every line.
                    self.broken = true;
                    crate::say!(
                        "log",
                        "cannot write service logs in {}: {e}",
                        self.dir.display()
                    );
                    return;
                }
            }
        }
        if let Some((file, size)) = self.open.get_mut(service) {
            if file.write_all(text.as_bytes()).is_ok() {
                *size += text.len() as u64;
            }
        }
    }

    fn open_log(&self, service: &str) -> std::io::Result<(File, u64)> {
        std::fs::create_dir_all(&self.dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(service))?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ki-out-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn rotates_at_the_limit() {
        let dir = temp_dir("rotate");
        let mut logs = LogFiles::new(&dir, 1024);
        let line = "x".repeat(100);
        for _ in 0..25 {
            logs.append("svc", &line);
        }
        let current = std::fs::metadata(dir.join("svc.log")).unwrap().len();
        let rotated = std::fs::metadata(dir.join("svc.log.1")).unwrap().len();
        assert!(current <= 1024 && rotated <= 1024, "{current} {rotated}");
        assert!(
            rotated > 900,
            "rotated file should be nearly full: {rotated}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn splits_lines_and_keeps_partial_until_eof() {
        let dir = temp_dir("lines");
        let mut hub = OutputHub::new(&dir, 1 << 20);
        let (read, write) = nix::unistd::pipe().unwrap();
        let raw = read.as_raw_fd();
        hub.add("svc", 1, StreamKind::Output, read);
        let mut w = File::from(write);
        w.write_all(b"one\ntwo\r\nthr").unwrap();
        assert_eq!(hub.on_readable(raw), None);
        w.write_all(b"ee").unwrap();
        drop(w);
        hub.on_readable(raw);
        assert!(hub.fds().is_empty(), "stream closes on EOF");
        let log = std::fs::read_to_string(dir.join("svc.log")).unwrap();
        let lines: Vec<&str> = log.lines().map(|l| l.split_once("] ").unwrap().1).collect();
        assert_eq!(lines, ["one", "two", "three"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn notify_write_is_reported() {
        let dir = temp_dir("notify");
        let mut hub = OutputHub::new(&dir, 1 << 20);
        let (read, write) = nix::unistd::pipe().unwrap();
        let raw = read.as_raw_fd();
        hub.add("svc", 7, StreamKind::Notify, read);
        File::from(write).write_all(b"ready\n").unwrap();
        assert_eq!(
            hub.on_readable(raw),
            Some(StreamEvent::Notified {
                service: "svc".into(),
                generation: 7
            })
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
