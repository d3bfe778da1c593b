//! A port scan of the appliance from a lab network namespace, the way a
//! hostile LAN host would look at it: every TCP port (a full connect scan,
//! thousands of non-blocking connects at once, each open port confirmed
//! again slowly), and UDP probes that get an answer only from a service
//! that really listens (DNS, TFTP, NTP, Consul's DNS).
//!
//! Runs on a thread that joins the namespace (`setns`), so the test process
//! itself stays where it is. Never sends anything but SYNs and those probes.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// What a scan saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanResult {
    pub tcp_open: BTreeSet<u16>,
    /// UDP ports that answered their protocol probe.
    pub udp_answered: BTreeSet<u16>,
    pub took: Duration,
}

impl std::fmt::Display for ScanResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TCP open {:?}, UDP answering {:?} ({:.1} s)",
            self.tcp_open,
            self.udp_answered,
            self.took.as_secs_f64()
        )
    }
}

/// UDP probes: a DNS query (53 and Consul's 8600), a TFTP read request for a
/// file that does not exist (an error packet answers), an NTP client packet.
fn udp_probe(port: u16) -> Vec<u8> {
    match port {
        69 => b"\x00\x01kindling-scan-no-such-file\x00octet\x00".to_vec(),
        123 => {
            let mut p = vec![0u8; 48];
            p[0] = 0x23; // version 4, client
            p
        }
        // A standard query for `kindling.` type A.
        _ => b"\x4b\x53\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x08kindling\x00\x00\x01\x00\x01"
            .to_vec(),
    }
}

/// Ports of the UDP probe list.
pub const UDP_PROBED: &[u16] = &[53, 69, 123, 8301, 8600];

fn enter_netns(ns: &str) -> Result<(), String> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))
        .map_err(|e| format!("opening netns {ns}: {e}"))?;
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("entering netns {ns}: {e}"))
}

/// Non-blocking connects to `ports`; returns those that completed within
/// `timeout`.
fn connect_batch(target: Ipv4Addr, ports: &[u16], timeout: Duration) -> BTreeSet<u16> {
    let mut pending: Vec<(u16, OwnedFd)> = Vec::new();
    for &port in ports {
        let Ok(fd) = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        ) else {
            continue;
        };
        let addr = SockaddrIn::from(SocketAddrV4::new(target, port));
        match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => pending.push((port, fd)),
            Err(_) => {}
        }
    }
    let mut open = BTreeSet::new();
    let deadline = Instant::now() + timeout;
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds: Vec<PollFd<'_>> = pending
            .iter()
            .map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLOUT))
            .collect();
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        if poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) == 0 {
            break;
        }
        let done: Vec<usize> = fds
            .iter()
            .enumerate()
            .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
            .map(|(i, _)| i)
            .collect();
        drop(fds);
        for i in done.into_iter().rev() {
            let (port, fd) = pending.swap_remove(i);
            if getsockopt(&fd, sockopt::SocketError).is_ok_and(|e| e == 0) {
                open.insert(port);
            }
        }
    }
    open
}

fn udp_answers(target: Ipv4Addr, port: u16, timeout: Duration) -> bool {
    let Ok(sock) = UdpSocket::bind("0.0.0.0:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(timeout));
    if sock.send_to(&udp_probe(port), (target, port)).is_err() {
        return false;
    }
    let mut buf = [0u8; 1500];
    // TFTP answers from another port: any datagram from the target counts.
    matches!(sock.recv_from(&mut buf), Ok((_, from)) if from.ip() == target)
}

/// Scans `target` from inside network namespace `ns`: TCP `ports` (all of
/// them: 1..=65535), UDP [`UDP_PROBED`].
pub fn scan_from(ns: &str, target: Ipv4Addr, ports: Vec<u16>) -> Result<ScanResult, String> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter_netns(&ns)?;
        Ok(scan_here(target, &ports))
    })
    .join()
    .map_err(|_| "the scan thread panicked".to_string())?
}

/// The TCP `ports` of `target` that accept a connection within `timeout`,
/// from inside `ns`: one quick pass, no UDP, for a check that must fit a
/// short window (a filtered port costs the timeout once, all in parallel).
pub fn tcp_open_from(
    ns: &str,
    target: Ipv4Addr,
    ports: Vec<u16>,
    timeout: Duration,
) -> Result<BTreeSet<u16>, String> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter_netns(&ns)?;
        Ok(connect_batch(target, &ports, timeout))
    })
    .join()
    .map_err(|_| "the scan thread panicked".to_string())?
}

/// The scan, from the calling thread's network namespace.
pub fn scan_here(target: Ipv4Addr, ports: &[u16]) -> ScanResult {
    let start = Instant::now();
    // Enough descriptors for wide batches.
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 8192, 8192);
    let mut candidates = BTreeSet::new();
    for batch in ports.chunks(4000) {
        candidates.extend(connect_batch(target, batch, Duration::from_millis(1500)));
    }
    // A SYN-ACK may have been lost in the crowd: each candidate again,
    // alone and patiently, and so are the usual suspects.
    let recheck: Vec<u16> = candidates
        .iter()
        .copied()
        .chain(
            [
                22, 53, 67, 69, 80, 123, 443, 4646, 4647, 4648, 8200, 8201, 8210, 8300, 8301, 8302,
                8500, 8501, 8502, 8600, 9000,
            ]
            .into_iter()
            .filter(|p| ports.contains(p)),
        )
        .collect::<BTreeSet<u16>>()
        .into_iter()
        .collect();
    let tcp_open = connect_batch(target, &recheck, Duration::from_secs(3));
    // Each UDP probe on its own thread: silence costs its timeout once.
    let probes: Vec<_> = UDP_PROBED
        .iter()
        .map(|&p| {
            std::thread::spawn(move || {
                (0..2)
                    .any(|_| udp_answers(target, p, Duration::from_secs(1)))
                    .then_some(p)
            })
        })
        .collect();
    let udp_answered = probes
        .into_iter()
        .filter_map(|t| t.join().ok().flatten())
        .collect();
    ScanResult {
        tcp_open,
        udp_answered,
        took: start.elapsed(),
    }
}

/// Every TCP port.
pub fn all_tcp_ports() -> Vec<u16> {
    (1..=u16::MAX).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// On loopback: the one listener among 65535 ports is found, and a UDP
    /// socket that answers is told from silence.
    #[test]
    fn finds_the_listening_ports_and_nothing_else_it_was_not_given() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let result = scan_here(Ipv4Addr::LOCALHOST, &all_tcp_ports());
        assert!(result.tcp_open.contains(&port), "{result}");
        // Whatever else this machine runs on loopback is there too; the
        // scan must at least not invent closed ports as open.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(!result.tcp_open.contains(&closed_port) || closed_port == port);
    }
}
