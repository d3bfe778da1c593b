//! The DHCP client's sockets: an AF_PACKET socket on the uplink (works before
//! the interface has an address, sees replies regardless of rp_filter and the
//! firewall) and a UDP socket bound to port 68 on the uplink (unicast renewals
//! go through the kernel's routing; it also keeps the port open so unicast
//! replies never trigger ICMP port-unreachable).
//!
//! Owns the syscalls and their `unsafe`. It never interprets DHCP content.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::unix::AsyncFd;

/// Classic BPF: accept IPv4 UDP, not a later fragment, destination port 68.
/// The packet socket is SOCK_DGRAM, so offsets start at the IP header.
const UDP_DPORT_68_FILTER: [libc::sock_filter; 9] = [
    bpf(0x30, 0, 0, 9),       // ldb [9]            IP protocol
    bpf(0x15, 0, 6, 17),      // jeq #17            UDP? else drop
    bpf(0x28, 0, 0, 6),       // ldh [6]            flags + fragment offset
    bpf(0x45, 4, 0, 0x1fff),  // jset #0x1fff       later fragment -> drop
    bpf(0xb1, 0, 0, 0),       // ldxb 4*([0]&0xf)   X = IP header length
    bpf(0x48, 0, 0, 2),       // ldh [x+2]          UDP destination port
    bpf(0x15, 0, 1, 68),      // jeq #68
    bpf(0x06, 0, 0, 0x40000), // ret: accept whole packet
    bpf(0x06, 0, 0, 0),       // ret: drop
];

const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// A received frame and the link-layer address it came from.
pub struct ReceivedFrame {
    pub len: usize,
    pub source_mac: [u8; 6],
}

/// AF_PACKET socket bound to one interface, carrying IPv4 only.
pub struct PacketSocket {
    fd: AsyncFd<OwnedFd>,
    ifindex: i32,
}

impl PacketSocket {
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let ifindex =
            i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid descriptor we exclusively own.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // Protocol 0 above receives nothing yet; attach the filter before binding
        // to ETH_P_IP so no unfiltered packet is ever queued.
        let prog = libc::sock_fprog {
            len: UDP_DPORT_68_FILTER.len() as u16,
            filter: UDP_DPORT_68_FILTER.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at a static filter that outlives the call; the
        // kernel copies it. The size passed is the size of `prog`.
        let rc = unsafe {
            libc::setsockopt(
                owned.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let addr = link_addr(ifindex, [0; 6]);
        // SAFETY: `addr` is a fully initialised sockaddr_ll and we pass its size.
        let rc = unsafe {
            libc::bind(
                owned.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `owned` is an open socket that the AsyncFd takes by value and
        // owns until it is dropped, so the descriptor stays the same and open.
        let fd = unsafe { AsyncFd::register(owned) }?;
        Ok(Self { fd, ifindex })
    }

    /// Sends an IPv4 frame to `dest_mac` (broadcast for DISCOVER/REQUEST/REBIND).
    pub async fn send(&self, frame: &[u8], dest_mac: [u8; 6]) -> io::Result<()> {
        let addr = link_addr(self.ifindex, dest_mac);
        loop {
            let mut guard = self.fd.writable().await?;
            let result = guard.try_io(|fd| {
                // SAFETY: `frame` and `addr` are valid for the lengths given.
                let rc = unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        (&addr as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                };
                if rc < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match result {
                Ok(outcome) => return outcome,
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one incoming frame (outgoing copies are skipped).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<ReceivedFrame> {
        loop {
            let mut guard = self.fd.readable().await?;
            let result = guard.try_io(|fd| {
                // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: `buf` is writable for `buf.len()` bytes and `from`
                // for `from_len` bytes; the kernel writes at most that much.
                let rc = unsafe {
                    libc::recvfrom(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&mut from as *mut libc::sockaddr_ll).cast(),
                        &mut from_len,
                    )
                };
                if rc < 0 {
                    return Err(io::Error::last_os_error());
                }
                let mut source_mac = [0u8; 6];
                source_mac.copy_from_slice(&from.sll_addr[..6]);
                Ok((rc as usize, from.sll_pkttype, source_mac))
            });
            match result {
                Ok(Ok((_, pkttype, _))) if pkttype == libc::PACKET_OUTGOING => continue,
                Ok(Ok((len, _, source_mac))) => return Ok(ReceivedFrame { len, source_mac }),
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => continue,
            }
        }
    }
}

fn link_addr(ifindex: i32, dest_mac: [u8; 6]) -> libc::sockaddr_ll {
    let mut addr_bytes = [0u8; 8];
    addr_bytes[..6].copy_from_slice(&dest_mac);
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: (libc::ETH_P_IP as u16).to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: addr_bytes,
    }
}

/// UDP socket on port 68 bound to the uplink device: sends unicast renewals.
pub struct RenewSocket {
    socket: tokio::net::UdpSocket,
}

impl RenewSocket {
    pub fn open(device: &str) -> io::Result<Self> {
        use nix::sys::socket::{
            bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
        };
        let raw = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        // Scoped to the uplink, so port 68 on another interface stays free.
        setsockopt(
            &raw,
            sockopt::BindToDevice,
            &std::ffi::OsString::from(device),
        )?;
        setsockopt(&raw, sockopt::ReuseAddr, &true)?;
        setsockopt(&raw, sockopt::Broadcast, &true)?;
        // Replies are read on the packet socket; this one only holds the port,
        // so a tiny buffer that silently drops is what we want.
        setsockopt(&raw, sockopt::RcvBuf, &1024)?;
        bind(
            raw.as_raw_fd(),
            &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)),
        )?;
        Ok(Self {
            socket: tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(raw))?,
        })
    }

    pub async fn send_to_server(&self, payload: &[u8], server: Ipv4Addr) -> io::Result<()> {
        self.socket
            .send_to(payload, SocketAddrV4::new(server, 67))
            .await
            .map(|_| ())
    }
}
