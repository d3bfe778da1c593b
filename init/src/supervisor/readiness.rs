//! TCP and HTTP readiness probes, each on a short-lived thread per service
//! generation, so a slow connect never stalls the run loop.
//!
//! Owns probing only: it reports success through the event queue and stops
//! when cancelled (the service exited or was restarted). It never touches
//! service state.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::events::{Event, EventSender};
use kindling_init_protocol::table::{HttpTarget, Readiness};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const IO_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_INTERVAL: Duration = Duration::from_millis(20);
const MAX_INTERVAL: Duration = Duration::from_millis(500);

/// Cancels a running probe when dropped.
#[derive(Debug)]
pub struct ProbeHandle {
    cancel: Arc<AtomicBool>,
}

impl Drop for ProbeHandle {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// Starts probing `readiness` if it is a tcp/http kind.
pub fn start(
    service: &str,
    generation: u64,
    readiness: &Readiness,
    events: &EventSender,
) -> Option<ProbeHandle> {
    let probe: Box<dyn Fn() -> bool + Send> = match readiness {
        Readiness::Tcp { addr } => {
            let addr = *addr;
            Box::new(move || tcp_answers(&addr))
        }
        Readiness::Http { url, ok } => {
            let target = HttpTarget::parse(url).ok()?;
            let ok = ok.clone();
            Box::new(move || http_status(&target).is_some_and(|s| ok.contains(&s)))
        }
        _ => return None,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let thread_cancel = Arc::clone(&cancel);
    let events = events.clone();
    let name = service.to_string();
    let service = service.to_string();
    let spawned = std::thread::Builder::new()
        .name(format!("probe-{service}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut interval = FIRST_INTERVAL;
            while !thread_cancel.load(Ordering::Relaxed) {
                if probe() {
                    if !thread_cancel.load(Ordering::Relaxed) {
                        events.send(Event::ProbeReady {
                            service,
                            generation,
                        });
                    }
                    return;
                }
                std::thread::sleep(interval);
                interval = (interval * 2).min(MAX_INTERVAL);
            }
        });
    match spawned {
        Ok(_) => Some(ProbeHandle { cancel }),
        Err(e) => {
            crate::say!(&name, "cannot start readiness probe thread: {e}");
            None
        }
    }
}

/// Whether a TCP connect to `addr` succeeds.
pub fn tcp_answers(addr: &SocketAddr) -> bool {
    TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).is_ok()
}

/// Status code of a plain HTTP/1.0 GET, if any answer came.
pub fn http_status(target: &HttpTarget) -> Option<u16> {
    let addr = target.authority.to_socket_addrs().ok()?.next()?;
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: kindling-init\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let mut filled = 0;
    while filled < 12 {
        match stream.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(_) => return None,
        }
    }
    parse_status_line(&head[..filled])
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let mut parts = text.split_ascii_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.get(..3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn status_line_parsing() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.0 200"), Some(200));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH"), None);
    }

    #[test]
    fn http_probe_reads_a_real_server_status() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).unwrap();
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            conn.write_all(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            request
        });
        let target = HttpTarget::parse(&format!("http://127.0.0.1:{port}/v1/sys/health")).unwrap();
        assert_eq!(http_status(&target), Some(429));
        assert!(server
            .join()
            .unwrap()
            .starts_with("GET /v1/sys/health HTTP/1.0\r\n"));
    }

    #[test]
    fn tcp_probe_sees_listener_and_refusal() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(tcp_answers(&addr));
        drop(listener);
        assert!(!tcp_answers(&addr));
    }
}
