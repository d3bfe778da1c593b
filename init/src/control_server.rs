//! Server side of the control socket: accept, read one request line on a
//! short-lived thread, hand it to the run loop, write the answer line back.
//!
//! Owns the listening socket and the connection threads. It never changes
//! service state itself, and a slow or silent client can hold only its own
//! thread, never the run loop.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::events::{Event, EventSender};
use kindling_init_protocol::accounts;
use kindling_init_protocol::control::{Ack, Request, MAX_LINE};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// Connections served at once; more are answered with an error.
const MAX_CONNECTIONS: usize = 16;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ControlServerError {
    #[error("creating {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The listening control socket.
pub struct ControlServer {
    listener: UnixListener,
    events: EventSender,
    active: Arc<AtomicUsize>,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket), mode 0600.
    pub fn bind(path: &Path, events: EventSender) -> Result<ControlServer, ControlServerError> {
        let err = |source| ControlServerError::Bind {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let listener = UnixListener::bind(path).map_err(err)?;
        // Only root and the control group reach the socket; `may` then says
        // which member may ask what.
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(path, Some(0), Some(accounts::CONTROL.gid)).map_err(err)?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        Ok(ControlServer {
            listener,
            events,
            active: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// Accepts every pending connection.
    pub fn accept_pending(&self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if self.active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                self.active.fetch_sub(1, Ordering::AcqRel);
                refuse(stream, "too many control connections");
                continue;
            }
            let events = self.events.clone();
            let active = Arc::clone(&self.active);
            let spawned = std::thread::Builder::new()
                .name("control".into())
                .stack_size(128 * 1024)
                .spawn(move || {
                    serve(stream, &events);
                    active.fetch_sub(1, Ordering::AcqRel);
                });
            if spawned.is_err() {
                self.active.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

fn refuse(mut stream: UnixStream, why: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    if let Ok(mut line) = serde_json::to_string(&Ack::error(why)) {
        line.push('\n');
        let _ = stream.write_all(line.as_bytes());
    }
}

fn serve(stream: UnixStream, events: &EventSender) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream).take(MAX_LINE as u64);
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line).is_err() || line.is_empty() {
        return;
    }
    let peer = getsockopt(reader.get_ref().get_ref(), PeerCredentials)
        .map(|c| c.uid())
        .ok();
    let answer = match serde_json::from_slice::<Request>(&line) {
        Ok(request) if !may(peer, nix::unistd::geteuid().as_raw(), &request) => {
            json_line(&Ack::error(format!(
                "uid {} may not ask init for {request:?}",
                peer.unwrap_or(u32::MAX)
            )))
        }
        Ok(request) => {
            let (reply, answer) = std::sync::mpsc::channel();
            if !events.send(Event::Control { request, reply }) {
                json_line(&Ack::error("init's run loop is not running"))
            } else {
                answer
                    .recv_timeout(CLIENT_TIMEOUT)
                    .unwrap_or_else(|_| json_line(&Ack::error("init did not answer in time")))
            }
        }
        Err(e) => json_line(&Ack::error(format!("bad request: {e}"))),
    };
    let mut writer = writer;
    let _ = writer.write_all(answer.as_bytes());
}

/// Whether the peer with `uid` may make `request` (`own` is init's euid).
/// Root, init's own uid (tests run init unprivileged) and the API may ask
/// anything; the stack bootstrap may list and restart the services whose
/// config it rewrites; the console dashboard and the update agent (its
/// health gate) may list; nobody else may ask anything.
fn may(uid: Option<u32>, own: u32, request: &Request) -> bool {
    let Some(uid) = uid else {
        return false;
    };
    if uid == 0 || uid == own || uid == accounts::API.uid {
        return true;
    }
    if uid == accounts::STACK.uid {
        return match request {
            Request::List => true,
            Request::Restart { name } => ["consul", "vault", "nomad"].contains(&name.as_str()),
            Request::Reload => false,
        };
    }
    if uid == accounts::CONSOLE.uid || uid == accounts::UPDATE.uid {
        return matches!(request, Request::List);
    }
    false
}

/// A value as one JSON line.
pub fn json_line<T: serde::Serialize>(value: &T) -> String {
    let mut line = serde_json::to_string(value)
        .unwrap_or_else(|e| format!("{{\"ok\":false,\"error\":\"encoding the answer: {e}\"}}"));
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_ask_what() {
        let restart = |name: &str| Request::Restart {
            name: name.to_string(),
        };
        let own = 0;
        for r in [Request::List, Request::Reload, restart("pxe")] {
            assert!(may(Some(0), own, &r), "root: {r:?}");
            assert!(may(Some(accounts::API.uid), own, &r), "api: {r:?}");
            assert!(!may(Some(accounts::PXE.uid), own, &r), "pxe: {r:?}");
            assert!(!may(None, own, &r), "unknown peer: {r:?}");
        }
        let stack = Some(accounts::STACK.uid);
        assert!(may(stack, own, &Request::List));
        assert!(may(stack, own, &restart("vault")));
        assert!(may(stack, own, &restart("nomad")));
        assert!(!may(stack, own, &restart("pxe")));
        assert!(!may(stack, own, &Request::Reload));
        let console = Some(accounts::CONSOLE.uid);
        assert!(may(console, own, &Request::List));
        assert!(!may(console, own, &restart("pxe")));
        assert!(!may(console, own, &Request::Reload));
        let update = Some(accounts::UPDATE.uid);
        assert!(may(update, own, &Request::List));
        assert!(!may(update, own, &restart("pxe")));
        assert!(!may(update, own, &Request::Reload));
        // init run unprivileged (tests): its own uid may do anything.
        assert!(may(Some(1000), 1000, &Request::Reload));
    }
}
