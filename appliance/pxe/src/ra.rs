//! IPv6 router advertisements on the LAN, sent only so iPXE stops waiting
//! for IPv6 autoconfiguration (it waits ~13 s for an RA before giving up).
//!
//! The RA advertises nothing: router lifetime 0 (not a default router), no
//! prefix, M and O flags clear, so iPXE's IPv6 configuration completes at
//! once and no node gets an IPv6 address or route from us. Answers router
//! solicitations immediately and repeats unsolicited every
//! `UNSOLICITED_INTERVAL`. It never configures the appliance's own IPv6.

use crate::status::Stats;
use nix::sys::socket::{
    self, sockopt, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn6,
};
use std::ffi::OsString;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const UNSOLICITED_INTERVAL: Duration = Duration::from_secs(30);
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
const ICMPV6_ROUTER_SOLICITATION: u8 = 133;
const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;

#[derive(Debug, thiserror::Error)]
pub enum RaError {
    #[error("router advertisements on {interface}: {action}: {source}")]
    Setup {
        interface: String,
        action: &'static str,
        source: nix::Error,
    },
}

/// The advertisement: ICMPv6 type 134; the kernel fills in the checksum.
pub fn advertisement() -> [u8; 16] {
    let mut ra = [0u8; 16];
    ra[0] = ICMPV6_ROUTER_ADVERTISEMENT;
    ra[4] = 64; // current hop limit suggestion
                // flags (M=0, O=0), router lifetime 0, reachable 0, retrans 0: all zero.
    ra
}

pub struct RaSender {
    fd: OwnedFd,
    ifindex: u32,
}

impl RaSender {
    pub fn open(interface: &str) -> Result<Self, RaError> {
        let err = |action| {
            move |source| RaError::Setup {
                interface: interface.to_string(),
                action,
                source,
            }
        };
        let ifindex = nix::net::if_::if_nametoindex(interface).map_err(err("look up interface"))?;
        let fd = socket::socket(
            AddressFamily::Inet6,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::IcmpV6,
        )
        .map_err(err("open raw ICMPv6 socket"))?;
        socket::setsockopt(&fd, sockopt::BindToDevice, &OsString::from(interface))
            .map_err(err("SO_BINDTODEVICE"))?;
        // Neighbour discovery requires hop limit 255 (RFC 4861 §6.1.2).
        socket::setsockopt(&fd, sockopt::Ipv6MulticastHops, &255)
            .map_err(err("IPV6_MULTICAST_HOPS"))?;
        socket::setsockopt(&fd, sockopt::Ipv6Ttl, &255).map_err(err("IPV6_UNICAST_HOPS"))?;
        join_group(&fd, ALL_ROUTERS, ifindex).map_err(err("join ff02::2"))?;
        socket::setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(1, 0),
        )
        .map_err(err("SO_RCVTIMEO"))?;
        Ok(Self { fd, ifindex })
    }

    pub fn send(&self) -> nix::Result<()> {
        let to = SockaddrIn6::from(SocketAddrV6::new(ALL_NODES, 0, 0, self.ifindex));
        socket::sendto(
            self.fd.as_raw_fd(),
            &advertisement(),
            &to,
            socket::MsgFlags::empty(),
        )
        .map(|_| ())
    }

    /// Runs forever: an RA at start, on every router solicitation, and
    /// every `UNSOLICITED_INTERVAL`.
    pub fn run(&self, stats: &Arc<Stats>) -> ! {
        let mut last = None::<Instant>;
        let mut buf = [0u8; 1500];
        loop {
            let due = last.is_none_or(|t| t.elapsed() >= UNSOLICITED_INTERVAL);
            let solicited =
                match socket::recv(self.fd.as_raw_fd(), &mut buf, socket::MsgFlags::empty()) {
                    Ok(n) => n > 0 && buf[0] == ICMPV6_ROUTER_SOLICITATION,
                    Err(_) => false,
                };
            if due || solicited {
                match self.send() {
                    Ok(()) => stats.bump("ra_sent"),
                    Err(e) => {
                        stats.bump("ra_send_errors");
                        tracing::debug!(error = %e, "ra: send failed");
                    }
                }
                last = Some(Instant::now());
            }
        }
    }
}

fn join_group(fd: &OwnedFd, group: Ipv6Addr, ifindex: u32) -> nix::Result<()> {
    let mreq = libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr {
            s6_addr: group.octets(),
        },
        ipv6mr_interface: ifindex,
    };
    // SAFETY: `mreq` is a fully initialised ipv6_mreq living for the whole
    // call, and the length passed is exactly its size; `fd` is an open socket.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_ADD_MEMBERSHIP,
            std::ptr::from_ref(&mreq).cast(),
            std::mem::size_of::<libc::ipv6_mreq>() as libc::socklen_t,
        )
    };
    nix::errno::Errno::result(rc).map(|_| ())
}
