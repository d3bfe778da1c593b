//! The API's wire: TLS (rustls) over TCP, HTTP/1.1 (hyper), and the limits
//! that keep slow or hostile clients from holding the API.
//!
//! Why hyper on tokio rather than a thread per connection: hyper and
//! tokio-rustls are already in the appliance's dependency graph (reqwest,
//! for the stack), they frame HTTP/1.1 completely (keep-alive, pipelining,
//! chunked bodies) and time out a slow head themselves; and a connection is
//! a task of a few KiB, not a thread, so the caps below can sit far above
//! what an operator's tools (and the status page's live updates to come)
//! use while a LAN host opening hundreds of idle connections costs memory,
//! not service. Handlers are blocking code and run on tokio's blocking pool.
//!
//! Limits, each per connection: the TLS handshake must finish within
//! `handshake`; each request head (and the wait for the next one on a kept
//! connection) within `head`; a response write may stall `write_stall` at
//! most. At most `max_connections` are open, `max_per_peer` from one
//! address; past that a connection is closed at once. Plain HTTP to this
//! port gets a TLS alert or a close, never an answer.
//!
//! Owns sockets and framing only: what a request means is the caller's
//! service function; it never reads a request body itself.

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

pub type Body = super::body::ReplyBody;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub handshake: Duration,
    pub head: Duration,
    pub write_stall: Duration,
    pub max_connections: usize,
    pub max_per_peer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            head: Duration::from_secs(10),
            write_stall: Duration::from_secs(30),
            max_connections: 1024,
            max_per_peer: 256,
        }
    }
}

/// What the transport counts, for the status page.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections_open: AtomicU64,
    pub connections_refused_busy: AtomicU64,
    pub handshakes_failed: AtomicU64,
}

/// The connection caps: one count in all and one per peer address.
#[derive(Debug)]
pub struct ConnectionGate {
    limits: Limits,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    pub counters: Counters,
}

/// One admitted connection; dropping it frees its place.
pub struct Permit {
    gate: Arc<ConnectionGate>,
    peer: IpAddr,
}

impl ConnectionGate {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: Mutex::new((0, HashMap::new())),
            counters: Counters::default(),
        })
    }

    /// A place for a connection from `peer`, or `None` when either cap is
    /// reached.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Permit> {
        let Ok(mut open) = self.open.lock() else {
            return None;
        };
        let (total, per_peer) = &mut *open;
        let mine = per_peer.entry(peer).or_insert(0);
        if *total >= self.limits.max_connections || *mine >= self.limits.max_per_peer {
            if *mine == 0 {
                per_peer.remove(&peer);
            }
            self.counters
                .connections_refused_busy
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *mine += 1;
        *total += 1;
        self.counters
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        Some(Permit {
            gate: self.clone(),
            peer,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut open) = self.gate.open.lock() {
            let (total, per_peer) = &mut *open;
            *total = total.saturating_sub(1);
            if let Some(n) = per_peer.get_mut(&self.peer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_peer.remove(&self.peer);
                }
            }
        }
        self.gate
            .counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP stream whose writes fail once they have waited `limit` for a
/// client that stopped reading.
struct StallLimit {
    inner: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl StallLimit {
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for StallLimit {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallLimit {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, result)
    }
}

/// Accept failures that pass: out of descriptors or memory for a moment,
/// or the client gave up before the accept.
fn transient(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    )
}

/// Serves `listener` until it fails: each admitted connection in its own
/// task, TLS first, then HTTP/1.1 requests answered by `service`.
pub async fn serve<S, F>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    gate: Arc<ConnectionGate>,
    service: S,
) -> io::Error
where
    S: Fn(hyper::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = hyper::Response<Body>> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let limits = gate.limits;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if transient(&e) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return e,
        };
        let Some(permit) = gate.admit(peer.ip()) else {
            // Closed at once: a busy API says so by not holding the client.
            drop(tcp);
            continue;
        };
        let (acceptor, service) = (acceptor.clone(), service.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let io = StallLimit {
                inner: tcp,
                limit: limits.write_stall,
                stalled: None,
            };
            let stream = match tokio::time::timeout(limits.handshake, acceptor.accept(io)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(_)) | Err(_) => {
                    _permit
                        .gate
                        .counters
                        .handshakes_failed
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.head)
                .max_headers(32)
                .max_buf_size(64 * 1024)
                .keep_alive(true)
                .serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(move |request| {
                        let answer = service(request);
                        async move { Ok::<_, std::convert::Infallible>(answer.await) }
                    }),
                );
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_caps_in_all_and_per_peer_and_frees_on_drop() {
        let gate = ConnectionGate::new(Limits {
            max_connections: 3,
            max_per_peer: 2,
            ..Limits::default()
        });
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            [192, 168, 100, 7].into(),
            [192, 168, 100, 8].into(),
            [192, 168, 100, 9].into(),
        );
        let a1 = gate.admit(a);
        let a2 = gate.admit(a);
        assert!(a1.is_some() && a2.is_some());
        assert!(gate.admit(a).is_none(), "a third from one peer");
        let b1 = gate.admit(b);
        assert!(b1.is_some());
        assert!(gate.admit(c).is_none(), "a fourth in all");
        drop(a1);
        assert!(gate.admit(c).is_some(), "a freed place is reused");
        assert_eq!(
            gate.counters
                .connections_refused_busy
                .load(Ordering::Relaxed),
            2
        );
        drop((a2, b1));
        assert_eq!(gate.counters.connections_open.load(Ordering::Relaxed), 0);
        assert!(gate.open.lock().map(|o| o.1.is_empty()).unwrap_or(false));
    }
}
