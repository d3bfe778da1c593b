//! The PXE HTTP listener: binds the LAN port, accepts connections and gives
//! each its own thread (`connection`), up to a limit; past it a client gets
//! a 503 at once instead of waiting in a queue it cannot see.
//!
//! The service owns its sockets (rather than going through an HTTP library)
//! so file bodies go out with sendfile(2): measured against nginx, the copy
//! through user space was what kept artifact throughput below it.

use super::connection::{self, Limits};
use super::handler::PxeHttp;
use super::pump::BodyPump;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("bind HTTP {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

pub fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).map_err(|source| ListenError { addr, source })
}

/// A connection thread's stack. Reserved, not touched: only the pages a
/// request really uses count in RSS. Building `/repo.tar.gz` (tar + gzip)
/// overflowed 256 KiB in a debug build.
const CONNECTION_STACK: usize = 1024 * 1024;

/// Counts a connection as open for as long as it lives.
struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accept failures that pass: the process or system is short of descriptors
/// or memory for a moment, or the client gave up before we accepted.
fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::Interrupted
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Accepts connections for the life of the process; returns only when the
/// listening socket itself fails.
pub fn serve(
    listener: TcpListener,
    handler: Arc<PxeHttp>,
    max_connections: usize,
    limits: Limits,
) -> std::io::Error {
    let open = Arc::new(AtomicUsize::new(0));
    // One pump thread per CPU, as many as a small appliance has.
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let pump = Arc::new(BodyPump::start(cpus, limits.send));
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if transient(&e) => {
                tracing::warn!(error = %e, "http: accept failed; retrying");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return e,
        };
        if open.load(Ordering::Relaxed) >= max_connections {
            let why = format!("{max_connections} connections already open; retry shortly");
            connection::turn_away(stream, handler.refuse("http_refused_busy", 503, &why));
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let guard = OpenConnection(open.clone());
        let (handler, pump) = (handler.clone(), pump.clone());
        let started = std::thread::Builder::new()
            .name("pxe-http".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let _open = guard;
                connection::serve(stream, &handler, &pump, &limits);
            });
        // A failed spawn drops the closure: the stream closes and the count
        // goes back down.
        if let Err(e) = started {
            tracing::warn!(error = %e, "http: no thread for a connection; closed it");
        }
    }
}
