//! Forwarding every service line to a syslog server (RFC 5424 over UDP),
//! when the service table names one (`syslog`, from the site's
//! `[logs] syslog`).
//!
//! Owns one unconnected, non-blocking UDP socket. A datagram that cannot be
//! sent now (no route yet, buffer full) is dropped and counted: init never
//! waits for the network, and UDP syslog is lossy by nature. No name is
//! looked up: the server is an address.

use std::net::{SocketAddr, UdpSocket};

/// Longest datagram sent; longer lines are cut (RFC 5424 receivers must
/// take 480 bytes, and commonly take 2048).
const MAX_DATAGRAM: usize = 2048;

pub struct Forwarder {
    socket: UdpSocket,
    server: SocketAddr,
    hostname: String,
    pub sent: u64,
    pub dropped: u64,
}

impl Forwarder {
    pub fn new(server: SocketAddr, hostname: &str) -> std::io::Result<Forwarder> {
        let any: SocketAddr = match server {
            SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(any)?;
        socket.set_nonblocking(true)?;
        Ok(Forwarder {
            socket,
            server,
            hostname: header_field(hostname),
            sent: 0,
            dropped: 0,
        })
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Sends one line of `service`, stamped `wall` (RFC 3339).
    pub fn send(&mut self, service: &str, wall: &str, line: &str) {
        let message = format_5424(&self.hostname, service, wall, line);
        match self.socket.send_to(message.as_bytes(), self.server) {
            Ok(_) => self.sent += 1,
            Err(_) => self.dropped += 1,
        }
    }
}

/// A header field: printable ASCII without spaces, at most 48 bytes, `-`
/// when empty (RFC 5424 §6).
fn header_field(value: &str) -> String {
    let field: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(48)
        .collect();
    if field.is_empty() {
        "-".to_string()
    } else {
        field
    }
}

/// `<30>1 TIMESTAMP HOST SERVICE - - - LINE`: facility daemon, severity
/// info (a child's output carries no severity init could trust).
pub fn format_5424(hostname: &str, service: &str, wall: &str, line: &str) -> String {
    let mut message = format!(
        "<30>1 {wall} {hostname} {} - - - {line}",
        header_field(service)
    );
    if message.len() > MAX_DATAGRAM {
        let mut cut = MAX_DATAGRAM;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lines_reach_a_udp_server_as_rfc5424() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut forwarder = Forwarder::new(server.local_addr().unwrap(), "kindling lab").unwrap();
        forwarder.send(
            "vault",
            "2026-12-05T16:21:17.123456Z",
            "core: vault is unsealed",
        );
        let mut buf = [0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "<30>1 2026-12-05T16:21:17.123456Z kindlinglab vault - - - core: vault is unsealed"
        );
        assert_eq!((forwarder.sent, forwarder.dropped), (1, 0));
    }

    #[test]
    fn long_lines_are_cut_to_one_datagram() {
        let line = "é".repeat(3000);
        let message = format_5424("h", "svc", "2026-12-05T16:21:17.000000Z", &line);
        assert!(message.len() <= MAX_DATAGRAM);
        assert!(message.starts_with("<30>1 2026-12-05T16:21:17.000000Z h svc - - - é"));
    }

    #[test]
    fn an_unreachable_server_is_counted_not_waited_for() {
        // TEST-NET-1 without a route in most sandboxes; either way it must
        // return at once.
        let mut forwarder = Forwarder::new("192.0.2.1:514".parse().unwrap(), "h").unwrap();
        let started = std::time::Instant::now();
        for _ in 0..100 {
            forwarder.send("svc", "2026-12-05T16:21:17.000000Z", "x");
        }
        assert_eq!(forwarder.sent + forwarder.dropped, 100);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
