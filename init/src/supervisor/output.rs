//! Children's stdout/stderr and readiness pipes: read without blocking, split
//! into lines, copy to the console and to the service's log file
//! (`service_logs`).
//!
//! Owns the parent's ends of the pipes. It never blocks (every fd is
//! non-blocking) and never decides anything about a service: a readiness write
//! is only reported back to the supervisor.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::service_logs::ServiceLogs;
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
    logs: ServiceLogs,
}

impl OutputHub {
    pub fn new(logs: ServiceLogs) -> OutputHub {
        OutputHub {
            streams: HashMap::new(),
            logs,
        }
    }

    /// The log files, for their status and their bound.
    pub fn logs(&mut self) -> &mut ServiceLogs {
        &mut self.logs
    }

    /// Where the log files are, for init's status.
    pub fn logs_status(&self) -> kindling_init_protocol::control::LogsStatus {
        self.logs.status()
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
        self.logs.append(service, &[line]);
    }
}

/// Sends every complete line of `partial` (all of it when `flush`) to the
/// console and, as one batch, to the service's log file.
fn emit_lines(service: &str, partial: &mut Vec<u8>, logs: &mut ServiceLogs, flush: bool) {
    let mut lines: Vec<String> = Vec::new();
    let mut taken = 0;
    loop {
        let rest = &partial[taken..];
        let cut = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => Some((i, i + 1)),
            None if rest.len() >= MAX_LINE => Some((MAX_LINE, MAX_LINE)),
            None if flush && !rest.is_empty() => Some((rest.len(), rest.len())),
            None => None,
        };
        let Some((end, next)) = cut else { break };
        let line = String::from_utf8_lossy(&rest[..end]);
        let line = line.trim_end_matches('\r');
        console::service_output(service, line);
        lines.push(line.to_string());
        taken += next;
    }
    partial.drain(..taken);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    logs.append(service, &lines);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::service_logs::Placement;
    use super::*;
    use kindling_init_protocol::control::LogStorage;
    use kindling_init_protocol::table::OutputLogLimits;
    use std::io::Write;
    use std::path::PathBuf;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ki-out-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn hub(dir: &std::path::Path) -> OutputHub {
        OutputHub::new(ServiceLogs::new(
            Placement {
                dir: dir.to_path_buf(),
                storage: LogStorage::Data,
                reason: None,
            },
            &dir.join("ram"),
            OutputLogLimits {
                file_bytes: 1 << 20,
                files: 2,
            },
        ))
    }

    #[test]
    fn splits_lines_and_keeps_partial_until_eof() {
        let dir = temp_dir("lines");
        let mut hub = hub(&dir);
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
        let mut hub = hub(&dir);
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
