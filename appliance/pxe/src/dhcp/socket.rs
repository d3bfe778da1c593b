//! UDP sockets for DHCP on the LAN interface, and the receive loop that feeds
//! the responder and sends its replies.
//!
//! Owns socket options (SO_BINDTODEVICE so a server bound to 0.0.0.0:67 never
//! answers on the uplink, SO_BROADCAST for replies to address-less clients)
//! and the loop. It never makes protocol decisions.

use super::responder::{Destination, DhcpResponder, NodePolicy, Port};
use crate::status::Stats;
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex};

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

/// Serves one socket forever (returns only on a receive error that is not
/// transient). Several loops may share one responder.
pub fn serve(
    socket: &UdpSocket,
    port: Port,
    responder: &Mutex<DhcpResponder>,
    observer: &dyn DhcpObserver,
    stats: &Arc<Stats>,
) -> std::io::Error {
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return e,
        };
        stats.bump("dhcp_received");
        let datagram = buf.get(..len).unwrap_or_default();
        let now = kindling_clock::unix_now();
        let outcome = match responder.lock() {
            Ok(mut r) => r.handle(datagram, port, observer, now),
            // A panic while holding the lock cannot happen (the responder
            // never panics); recover the data anyway rather than stop serving.
            Err(poisoned) => poisoned.into_inner().handle(datagram, port, observer, now),
        };
        match outcome {
            Ok(handled) => {
                stats.bump(answer_counter(handled.answered));
                observer.observed(&handled);
                if let Some(reply) = &handled.reply {
                    if handled.boot_file.is_some() {
                        stats.bump_boot_answer(&handled.facts);
                    }
                    let target = match reply.destination {
                        Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
                        Destination::Unicast(ip, p) => SocketAddrV4::new(ip, p),
                    };
                    // ProxyDHCP on 4011: answer to the port the client used.
                    let target = if port == Port::ProxyPxe {
                        match peer {
                            std::net::SocketAddr::V4(p) if !p.ip().is_unspecified() => p,
                            _ => target,
                        }
                    } else {
                        target
                    };
                    match reply.to_bytes() {
                        Ok(bytes) => {
                            if let Err(e) = socket.send_to(&bytes, target) {
                                stats.bump("dhcp_send_errors");
                                tracing::warn!(%target, error = %e, "dhcp: send failed");
                            }
                        }
                        Err(e) => {
                            stats.bump("dhcp_encode_errors");
                            tracing::warn!(error = %e, "dhcp: encoding a reply failed");
                        }
                    }
                }
            }
            Err(dropped) => {
                stats.bump_dropped(dropped);
                tracing::debug!(?dropped, %peer, "dhcp: dropped");
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
