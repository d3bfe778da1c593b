//! UDP sockets for DHCP on the LAN interface, and the receive loop that feeds
//! the responder and sends its replies.
//!
//! Owns socket options (SO_BINDTODEVICE so a server bound to 0.0.0.0:67 never
//! answers on the uplink, SO_BROADCAST for replies to address-less clients)
//! and the loop: the per-MAC rate limit before any decoding, counting, and
//! a rate-limited console line for ignored RELEASE/DECLINE messages. It
//! never makes protocol decisions.

use super::commit::{AckQueue, PendingAck};
use super::rate::{self, MacRateLimit};
use super::responder::{Destination, DhcpResponder, Dropped, NodePolicy, NotHolder, Port};
use crate::status::Stats;
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("create UDP socket for port {port}: {source}")]
    Create { port: u16, source: nix::Error },
    #[error("set {option} on UDP port {port}: {source}")]
    Option {
        port: u16,
        option: &'static str,
        source: nix::Error,
    },
    #[error("bind UDP {addr}: {source}")]
    Bind {
        addr: SocketAddrV4,
        source: nix::Error,
    },
}

/// A UDP socket bound to `addr`, optionally tied to one interface.
pub fn open_udp(addr: SocketAddrV4, interface: Option<&str>) -> Result<UdpSocket, SocketError> {
    let port = addr.port();
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|source| SocketError::Create { port, source })?;
    let opt = |option, r: nix::Result<()>| {
        r.map_err(|source| SocketError::Option {
            port,
            option,
            source,
        })
    };
    opt(
        "SO_REUSEADDR",
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true),
    )?;
    opt(
        "SO_BROADCAST",
        socket::setsockopt(&fd, sockopt::Broadcast, &true),
    )?;
    if let Some(name) = interface {
        opt(
            "SO_BINDTODEVICE",
            socket::setsockopt(&fd, sockopt::BindToDevice, &OsString::from(name)),
        )?;
    }
    socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(addr),
    )
    .map_err(|source| SocketError::Bind { addr, source })?;
    Ok(UdpSocket::from(fd))
}

/// What the loop reports for every answered request (inventory updates).
pub trait DhcpObserver: NodePolicy + Send + Sync {
    fn observed(&self, handled: &super::Handled);
}

/// Console lines about refused RELEASE/DECLINE messages, at most one per
/// `REFUSAL_LINE_EVERY`, so a flood of spoofed messages cannot flood the
/// console; the status counters count every one.
const REFUSAL_LINE_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
struct RefusalLines {
    last: Option<Instant>,
    unlogged: u64,
}

impl RefusalLines {
    fn refused(&mut self, refused: &NotHolder, peer: std::net::SocketAddr) {
        if self.last.is_some_and(|t| t.elapsed() < REFUSAL_LINE_EVERY) {
            self.unlogged += 1;
            return;
        }
        let address = refused
            .address
            .map_or_else(|| "no address".to_string(), |a| a.to_string());
        tracing::warn!(
            "dhcp: ignored {:?} for {address} naming {} from {peer}: it {} ({} more ignored since the last line)",
            refused.message,
            refused.mac,
            refused.why.as_str(),
            self.unlogged,
        );
        self.last = Some(Instant::now());
        self.unlogged = 0;
    }
}

/// Serves one socket forever (returns only on a receive error that is not
/// transient). Several loops may share one responder. ACKs that bind a
/// lease go through `acks` (sent once the lease is on disk) when given.
pub fn serve(
    socket: &UdpSocket,
    port: Port,
    responder: &Mutex<DhcpResponder>,
    observer: &dyn DhcpObserver,
    stats: &Arc<Stats>,
    acks: Option<&AckQueue>,
) -> std::io::Error {
    let mut buf = vec![0u8; 4096];
    let mut limit = MacRateLimit::default();
    let mut lines = RefusalLines::default();
    let started = Instant::now();
    loop {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return e,
        };
        stats.bump("dhcp_received");
        let datagram = buf.get(..len).unwrap_or_default();
        // Before any decoding or locking: a MAC over its rate costs only this.
        if let Some(mac) = rate::raw_chaddr(datagram) {
            let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            if !limit.allow(mac, now_ms) {
                stats.bump_dropped(Dropped::RateLimited);
                continue;
            }
        }
        let now = kindling_clock::unix_now();
        let outcome = match responder.lock() {
            Ok(mut r) => r.handle(datagram, port, observer, now),
            // A panic while holding the lock cannot happen (the responder
            // never panics); recover the data anyway rather than stop serving.
            Err(poisoned) => poisoned.into_inner().handle(datagram, port, observer, now),
        };
        let handled = match outcome {
            Ok(handled) => handled,
            Err(dropped) => {
                stats.bump_dropped(dropped);
                if let Dropped::NotHolder(refused) = &dropped {
                    lines.refused(refused, peer);
                }
                tracing::debug!(?dropped, %peer, "dhcp: dropped");
                continue;
            }
        };
        stats.bump(answer_counter(handled.answered));
        if handled.refused.is_some() {
            stats.bump("dhcp_refused_request");
        }
        observer.observed(&handled);
        let Some(reply) = &handled.reply else {
            continue;
        };
        if handled.boot_file.is_some() {
            stats.bump_boot_answer(&handled.facts);
        }
        let target = match reply.destination {
            Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
            Destination::Unicast(ip, p) => SocketAddrV4::new(ip, p),
        };
        // ProxyDHCP on 4011: answer to the port the client used.
        let target = match peer {
            std::net::SocketAddr::V4(p) if port == Port::ProxyPxe && !p.ip().is_unspecified() => p,
            _ => target,
        };
        let bytes = match reply.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                stats.bump("dhcp_encode_errors");
                tracing::warn!(error = %e, "dhcp: encoding a reply failed");
                continue;
            }
        };
        match acks {
            Some(queue) if handled.bound.is_some() => {
                if !queue.submit(PendingAck { bytes, target }) {
                    stats.bump("dhcp_ack_queue_full");
                }
            }
            _ => {
                if let Err(e) = socket.send_to(&bytes, target) {
                    stats.bump("dhcp_send_errors");
                    tracing::warn!(%target, error = %e, "dhcp: send failed");
                }
            }
        }
    }
}

fn answer_counter(a: super::responder::Answered) -> &'static str {
    use super::responder::Answered::*;
    match a {
        Offer => "dhcp_offers",
        Ack => "dhcp_acks",
        Nak => "dhcp_naks",
        InformAck => "dhcp_informs",
        Released => "dhcp_releases",
        Declined => "dhcp_declines",
    }
}
