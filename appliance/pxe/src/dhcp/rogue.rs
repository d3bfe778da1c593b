//! Rogue DHCP detection: another server answering on the LAN breaks PXE for
//! every node, so the service watches for it and reports it in status.
//!
//! Listens on UDP 68 of the LAN interface for OFFER/ACK from any server id
//! but ours, and probes actively (a DISCOVER from a fixed, locally
//! administered MAC with the broadcast flag set, so every server broadcasts
//! its answer). Owns detection only; it never answers clients.

use crate::status::Stats;
use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

pub use super::client::PROBE_MAC;
pub const PROBE_INTERVAL: Duration = Duration::from_secs(300);

/// A reply seen from another server, if `datagram` is one.
pub fn foreign_server(datagram: &[u8], our_id: Ipv4Addr) -> Option<(Ipv4Addr, MessageType)> {
    if datagram.len() < 240 || datagram.len() > 1500 {
        return None;
    }
    let clean = super::wire::sanitize(datagram).ok()?;
    let msg = Message::decode(&mut Decoder::new(&clean)).ok()?;
    if msg.opcode() != Opcode::BootReply {
        return None;
    }
    let kind = msg.opts().msg_type()?;
    if !matches!(
        kind,
        MessageType::Offer | MessageType::Ack | MessageType::Nak
    ) {
        return None;
    }
    let server = match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => *ip,
        _ => msg.siaddr(),
    };
    (server != our_id).then_some((server, kind))
}

pub fn probe_discover() -> Result<Vec<u8>, dhcproto::error::EncodeError> {
    let mut msg = Message::default();
    msg.set_opcode(Opcode::BootRequest)
        .set_htype(HType::Eth)
        .set_xid(rand_xid())
        .set_flags(Flags::default().set_broadcast())
        .set_chaddr(&PROBE_MAC.0);
    msg.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    let mut buf = Vec::new();
    msg.encode(&mut Encoder::new(&mut buf))?;
    Ok(buf)
}

fn rand_xid() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// Listens on `socket` (UDP 68 on the LAN) forever, probing every
/// `PROBE_INTERVAL`. Returns on a non-transient receive error.
pub fn watch(socket: &UdpSocket, our_id: Ipv4Addr, stats: &Arc<Stats>) -> std::io::Error {
    if let Err(e) = socket.set_read_timeout(Some(Duration::from_secs(1))) {
        return e;
    }
    let mut buf = vec![0u8; 2048];
    let mut last_probe: Option<std::time::Instant> = None;
    loop {
        if last_probe.is_none_or(|t| t.elapsed() >= PROBE_INTERVAL) {
            last_probe = Some(std::time::Instant::now());
            match probe_discover() {
                Ok(bytes) => {
                    if let Err(e) =
                        socket.send_to(&bytes, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67))
                    {
                        tracing::warn!(error = %e, "dhcp: rogue probe send failed");
                    } else {
                        stats.bump("rogue_probes_sent");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "dhcp: rogue probe encode failed"),
            }
        }
        match socket.recv_from(&mut buf) {
            Ok((len, peer)) => {
                if let Some((server, kind)) =
                    foreign_server(buf.get(..len).unwrap_or_default(), our_id)
                {
                    if stats.rogue_seen(server, peer.ip(), kind) {
                        tracing::warn!(%server, %peer, "dhcp: another DHCP server answers on the LAN");
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return e,
        }
    }
}
