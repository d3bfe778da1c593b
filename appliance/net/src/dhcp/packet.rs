//! DHCPv4 client messages: building DISCOVER/REQUEST/RELEASE, framing them in
//! IPv4+UDP for the packet socket, and turning received frames into a checked
//! `Reply`.
//!
//! Owns every byte-level decision of the client. It never does I/O and never
//! trusts a received packet: anything that is not a well-formed BOOTREPLY for
//! our transaction and hardware address is an error value, never a panic.

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use std::net::Ipv4Addr;
use std::time::Duration;

pub const CLIENT_PORT: u16 = 68;
pub const SERVER_PORT: u16 = 67;

/// Why a received frame was not accepted as a reply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseReplyError {
    #[error("frame too short for IPv4+UDP ({0} bytes)")]
    Truncated(usize),
    #[error("not an IPv4 UDP datagram to port 68")]
    NotDhcpClientTraffic,
    #[error("IPv4/UDP length fields disagree with the frame length")]
    BadLength,
    #[error("DHCP option {code} at offset {offset} runs past the end of the packet")]
    OptionOverrun { code: u8, offset: usize },
    #[error("DHCP payload does not decode: {0}")]
    Undecodable(String),
    #[error("not a BOOTREPLY")]
    NotReply,
    #[error("reply has no DHCP message type")]
    NoMessageType,
}

/// Why a reply to our transaction cannot be used as an offer or a lease.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeaseFromReplyError {
    #[error("{0:?} carries no server identifier (option 54)")]
    NoServerId(MessageType),
    #[error("{0:?} offers no address (yiaddr is 0.0.0.0)")]
    NoAddress(MessageType),
    #[error("{0:?} has no usable subnet mask")]
    BadSubnetMask(MessageType),
}

/// A decoded reply from a server, already checked to be a BOOTREPLY with a type.
#[derive(Debug, Clone)]
pub struct Reply {
    pub kind: MessageType,
    pub xid: u32,
    pub chaddr: [u8; 6],
    pub message: Message,
}

/// What the client learnt from an ACK (or was offered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOffer {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub server_id: Ipv4Addr,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_time: Duration,
    pub renew_after: Duration,
    pub rebind_after: Duration,
}

/// Who we are on the wire: identical for every message of one client.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub mac: [u8; 6],
    pub hostname: Option<String>,
}

fn base_request(identity: &ClientIdentity, xid: u32, kind: MessageType, secs: u16) -> Message {
    let mut msg = Message::default();
    msg.set_opcode(Opcode::BootRequest)
        .set_xid(xid)
        .set_secs(secs)
        .set_chaddr(&identity.mac);
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    // Type 1 (Ethernet) + MAC, as RFC 2132 §9.14 suggests for hardware clients.
    let mut client_id = vec![1u8];
    client_id.extend_from_slice(&identity.mac);
    opts.insert(DhcpOption::ClientIdentifier(client_id));
    opts.insert(DhcpOption::MaxMessageSize(1500));
    if let Some(name) = &identity.hostname {
        opts.insert(DhcpOption::Hostname(name.clone()));
    }
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::DomainName,
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ]));
    msg
}

/// DISCOVER, broadcast flag set: before we own an address the kernel cannot
/// receive a unicast reply for us, and some relays need the flag.
pub fn discover(identity: &ClientIdentity, xid: u32, secs: u16) -> Message {
    let mut msg = base_request(identity, xid, MessageType::Discover, secs);
    msg.set_flags(Flags::default().set_broadcast());
    msg
}

/// REQUEST in SELECTING state: names the chosen server and address.
pub fn request_selected(
    identity: &ClientIdentity,
    xid: u32,
    secs: u16,
    offer: &LeaseOffer,
) -> Message {
    let mut msg = base_request(identity, xid, MessageType::Request, secs);
    msg.set_flags(Flags::default().set_broadcast());
    msg.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(offer.address));
    msg.opts_mut()
        .insert(DhcpOption::ServerIdentifier(offer.server_id));
    msg
}

/// REQUEST in RENEWING/REBINDING state: ciaddr set, no server id (RFC 2131 §4.3.2).
pub fn request_extend(
    identity: &ClientIdentity,
    xid: u32,
    secs: u16,
    address: Ipv4Addr,
) -> Message {
    let mut msg = base_request(identity, xid, MessageType::Request, secs);
    msg.set_ciaddr(address);
    msg
}

/// Encodes a message as a DHCP payload.
pub fn encode(msg: &Message) -> Result<Vec<u8>, dhcproto::error::EncodeError> {
    let mut buf = Vec::with_capacity(548);
    msg.encode(&mut Encoder::new(&mut buf))?;
    Ok(buf)
}

/// Frames a DHCP payload as IPv4+UDP from port 68 to port 67, for a
/// packet socket that adds only the Ethernet header.
pub fn frame_ipv4_udp(payload: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total_len = 20 + udp_len;
    let mut frame = Vec::with_capacity(total_len);
    // IPv4 header: version 4, IHL 5, TOS 0x10 (low delay, as ISC dhclient), DF clear.
    frame.extend_from_slice(&[0x45, 0x10]);
    frame.extend_from_slice(&(total_len as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]); // id, flags+fragment offset
    frame.extend_from_slice(&[64, 17, 0, 0]); // TTL, protocol UDP, checksum placeholder
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&dst.octets());
    let ip_sum = internet_checksum(&[&frame[..20]]);
    frame[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    // UDP header + payload; the checksum covers the IPv4 pseudo header.
    let udp_start = frame.len();
    frame.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    frame.extend_from_slice(&SERVER_PORT.to_be_bytes());
    frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    let mut udp_sum = internet_checksum(&[&pseudo, &frame[udp_start..]]);
    if udp_sum == 0 {
        udp_sum = 0xffff; // 0 means "no checksum" in UDP over IPv4
    }
    frame[udp_start + 6..udp_start + 8].copy_from_slice(&udp_sum.to_be_bytes());
    frame
}

/// RFC 1071 one's-complement sum over several slices treated as one buffer.
fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &byte in part.iter() {
            match odd.take() {
                Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
                None => odd = Some(byte),
            }
        }
    }
    if let Some(high) = odd {
        sum += u32::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Extracts the UDP payload of an IPv4 frame addressed to port 68.
pub fn udp_payload_to_client(frame: &[u8]) -> Result<&[u8], ParseReplyError> {
    if frame.len() < 28 {
        return Err(ParseReplyError::Truncated(frame.len()));
    }
    let ihl = usize::from(frame[0] & 0x0f) * 4;
    if frame[0] >> 4 != 4 || ihl < 20 || frame[9] != 17 {
        return Err(ParseReplyError::NotDhcpClientTraffic);
    }
    let total_len = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
    if total_len > frame.len() || total_len < ihl + 8 {
        return Err(ParseReplyError::BadLength);
    }
    let udp = &frame[ihl..total_len];
    if u16::from_be_bytes([udp[2], udp[3]]) != CLIENT_PORT {
        return Err(ParseReplyError::NotDhcpClientTraffic);
    }
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len < 8 || udp_len > udp.len() {
        return Err(ParseReplyError::BadLength);
    }
    Ok(&udp[8..udp_len])
}

/// Fixed BOOTP header (236 bytes) plus the magic cookie.
const OPTIONS_OFFSET: usize = 240;

/// Walks the option TLVs: the decoder silently drops an option whose length
/// runs past the packet, which would hide a damaged packet; we refuse it.
fn check_option_lengths(payload: &[u8]) -> Result<(), ParseReplyError> {
    let mut offset = OPTIONS_OFFSET;
    while let Some(&code) = payload.get(offset) {
        match code {
            0 => offset += 1,
            255 => return Ok(()),
            _ => {
                let len = usize::from(
                    *payload
                        .get(offset + 1)
                        .ok_or(ParseReplyError::OptionOverrun { code, offset })?,
                );
                if offset + 2 + len > payload.len() {
                    return Err(ParseReplyError::OptionOverrun { code, offset });
                }
                offset += 2 + len;
            }
        }
    }
    Ok(())
}

/// Decodes a DHCP payload and checks it is a typed BOOTREPLY.
pub fn parse_reply(payload: &[u8]) -> Result<Reply, ParseReplyError> {
    check_option_lengths(payload)?;
    let message = Message::decode(&mut Decoder::new(payload))
        .map_err(|err| ParseReplyError::Undecodable(err.to_string()))?;
    if message.opcode() != Opcode::BootReply {
        return Err(ParseReplyError::NotReply);
    }
    let kind = message
        .opts()
        .msg_type()
        .ok_or(ParseReplyError::NoMessageType)?;
    let mut chaddr = [0u8; 6];
    if let Some(prefix) = message.chaddr().get(..6) {
        chaddr.copy_from_slice(prefix);
    }
    Ok(Reply {
        kind,
        xid: message.xid(),
        chaddr,
        message,
    })
}

/// Reads the lease parameters out of an OFFER or ACK.
pub fn lease_from_reply(reply: &Reply) -> Result<LeaseOffer, LeaseFromReplyError> {
    let opts = reply.message.opts();
    let address = reply.message.yiaddr();
    if address.is_unspecified() {
        return Err(LeaseFromReplyError::NoAddress(reply.kind));
    }
    let server_id = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(id)) => *id,
        _ => return Err(LeaseFromReplyError::NoServerId(reply.kind)),
    };
    let prefix_len = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) => {
            let bits = u32::from(*mask);
            // A mask must be contiguous ones; anything else is unusable.
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                return Err(LeaseFromReplyError::BadSubnetMask(reply.kind));
            }
            bits.leading_ones() as u8
        }
        // RFC 2131 leaves the mask optional; fall back to the classful default.
        _ => classful_prefix(address),
    };
    let routers = match opts.get(OptionCode::Router) {
        Some(DhcpOption::Router(list)) => list.clone(),
        _ => Vec::new(),
    };
    let dns = match opts.get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(list)) => list.clone(),
        _ => Vec::new(),
    };
    let domain = match opts.get(OptionCode::DomainName) {
        Some(DhcpOption::DomainName(name)) => Some(name.clone()),
        _ => None,
    };
    // No lease time: treat as one hour rather than infinite, so we re-ask.
    let lease_secs = match opts.get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(secs)) => *secs,
        _ => 3600,
    };
    let lease_time = Duration::from_secs(u64::from(lease_secs));
    let renew_after = match opts.get(OptionCode::Renewal) {
        Some(DhcpOption::Renewal(secs)) if u64::from(*secs) < lease_time.as_secs() => {
            Duration::from_secs(u64::from(*secs))
        }
        _ => lease_time / 2,
    };
    let rebind_after = match opts.get(OptionCode::Rebinding) {
        Some(DhcpOption::Rebinding(secs))
            if u64::from(*secs) < lease_time.as_secs()
                && Duration::from_secs(u64::from(*secs)) > renew_after =>
        {
            Duration::from_secs(u64::from(*secs))
        }
        _ => lease_time.mul_f64(0.875).max(renew_after),
    };
    Ok(LeaseOffer {
        address,
        prefix_len,
        server_id,
        routers,
        dns,
        domain,
        lease_time,
        renew_after,
        rebind_after,
    })
}

fn classful_prefix(address: Ipv4Addr) -> u8 {
    match address.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x6b, 0x00, 0x01];

    fn identity() -> ClientIdentity {
        ClientIdentity {
            mac: MAC,
            hostname: Some("kindling-lab".into()),
        }
    }

    fn ack(xid: u32) -> Message {
        let mut msg = Message::default();
        msg.set_opcode(Opcode::BootReply)
            .set_xid(xid)
            .set_chaddr(&MAC)
            .set_yiaddr(Ipv4Addr::new(10, 0, 2, 15));
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::MessageType(MessageType::Ack));
        opts.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 1)));
        opts.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        opts.insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 1)]));
        opts.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            10, 0, 2, 3,
        )]));
        opts.insert(DhcpOption::AddressLeaseTime(120));
        msg
    }

    /// A frame as a server would send it: IPv4+UDP from 67 to 68.
    fn server_frame(payload: &[u8]) -> Vec<u8> {
        let mut frame = frame_ipv4_udp(payload, Ipv4Addr::new(10, 0, 2, 1), Ipv4Addr::BROADCAST);
        frame[20..22].copy_from_slice(&SERVER_PORT.to_be_bytes());
        frame[22..24].copy_from_slice(&CLIENT_PORT.to_be_bytes());
        frame
    }

    #[test]
    fn discover_round_trips_through_the_decoder() {
        let bytes = encode(&discover(&identity(), 0xdead_beef, 3)).unwrap();
        let msg = Message::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(msg.opcode(), Opcode::BootRequest);
        assert_eq!(msg.xid(), 0xdead_beef);
        assert!(msg.flags().broadcast());
        assert_eq!(msg.opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(&msg.chaddr()[..6], &MAC);
    }

    #[test]
    fn framed_packet_has_valid_ip_and_udp_checksums() {
        let payload = encode(&discover(&identity(), 1, 0)).unwrap();
        let frame = frame_ipv4_udp(&payload, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
        // A correct header sums (with its checksum) to 0xffff, i.e. checksum of it is 0.
        assert_eq!(internet_checksum(&[&frame[..20]]), 0);
        let udp_len = (frame.len() - 20) as u16;
        let mut pseudo = vec![0, 0, 0, 0, 255, 255, 255, 255, 0, 17];
        pseudo.extend_from_slice(&udp_len.to_be_bytes());
        assert_eq!(internet_checksum(&[&pseudo, &frame[20..]]), 0);
        assert_eq!(u16::from_be_bytes([frame[22], frame[23]]), SERVER_PORT);
    }

    #[test]
    fn ack_frame_parses_into_a_lease() {
        let payload = encode(&ack(7)).unwrap();
        let frame = server_frame(&payload);
        let reply = parse_reply(udp_payload_to_client(&frame).unwrap()).unwrap();
        assert_eq!(reply.kind, MessageType::Ack);
        assert_eq!(reply.xid, 7);
        assert_eq!(reply.chaddr, MAC);
        let lease = lease_from_reply(&reply).unwrap();
        assert_eq!(lease.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(lease.prefix_len, 24);
        assert_eq!(lease.routers, vec![Ipv4Addr::new(10, 0, 2, 1)]);
        assert_eq!(lease.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(lease.lease_time, Duration::from_secs(120));
        assert_eq!(lease.renew_after, Duration::from_secs(60));
        assert_eq!(lease.rebind_after, Duration::from_secs(105));
    }

    #[test]
    fn truncated_and_foreign_frames_are_errors() {
        assert_eq!(
            udp_payload_to_client(&[0x45; 10]),
            Err(ParseReplyError::Truncated(10))
        );
        let payload = encode(&ack(7)).unwrap();
        let mut tcp = server_frame(&payload);
        tcp[9] = 6;
        assert_eq!(
            udp_payload_to_client(&tcp),
            Err(ParseReplyError::NotDhcpClientTraffic)
        );
        let mut lying_length = server_frame(&payload);
        lying_length[2..4].copy_from_slice(&4000u16.to_be_bytes());
        assert_eq!(
            udp_payload_to_client(&lying_length),
            Err(ParseReplyError::BadLength)
        );
        let mut bad_udp_len = server_frame(&payload);
        bad_udp_len[24..26].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(
            udp_payload_to_client(&bad_udp_len),
            Err(ParseReplyError::BadLength)
        );
    }

    #[test]
    fn malformed_dhcp_payloads_are_errors_not_panics() {
        let good = encode(&ack(9)).unwrap();
        // Every truncation of a valid reply, and garbage of every small length.
        for cut in 0..good.len() {
            let _ = parse_reply(&good[..cut]);
        }
        for len in 0..300usize {
            let garbage: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let _ = parse_reply(&garbage);
        }
        assert!(matches!(
            parse_reply(&good[..100]),
            Err(ParseReplyError::Undecodable(_))
        ));
        // An option whose length runs past the end of the packet.
        let mut overrun = good.clone();
        overrun.truncate(240);
        overrun.extend_from_slice(&[53, 1, 5, 3, 200, 10, 0]);
        assert_eq!(
            parse_reply(&overrun).unwrap_err(),
            ParseReplyError::OptionOverrun {
                code: 3,
                offset: 243
            }
        );
    }

    #[test]
    fn requests_and_replies_are_told_apart() {
        let bytes = encode(&discover(&identity(), 1, 0)).unwrap();
        assert_eq!(parse_reply(&bytes).unwrap_err(), ParseReplyError::NotReply);
        let mut untyped = ack(1);
        untyped.opts_mut().remove(OptionCode::MessageType);
        assert_eq!(
            parse_reply(&encode(&untyped).unwrap()).unwrap_err(),
            ParseReplyError::NoMessageType
        );
    }

    #[test]
    fn replies_without_server_id_or_with_a_broken_mask_are_unusable() {
        let mut no_server = ack(1);
        no_server.opts_mut().remove(OptionCode::ServerIdentifier);
        let reply = parse_reply(&encode(&no_server).unwrap()).unwrap();
        assert_eq!(
            lease_from_reply(&reply),
            Err(LeaseFromReplyError::NoServerId(MessageType::Ack))
        );
        let mut bad_mask = ack(1);
        bad_mask
            .opts_mut()
            .insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0)));
        let reply = parse_reply(&encode(&bad_mask).unwrap()).unwrap();
        assert_eq!(
            lease_from_reply(&reply),
            Err(LeaseFromReplyError::BadSubnetMask(MessageType::Ack))
        );
    }

    #[test]
    fn inconsistent_timers_fall_back_to_rfc_defaults() {
        let mut msg = ack(1);
        msg.opts_mut().insert(DhcpOption::Renewal(500)); // beyond the 120 s lease
        msg.opts_mut().insert(DhcpOption::Rebinding(10)); // before T1
        let lease = lease_from_reply(&parse_reply(&encode(&msg).unwrap()).unwrap()).unwrap();
        assert_eq!(lease.renew_after, Duration::from_secs(60));
        assert_eq!(lease.rebind_after, Duration::from_secs(105));
    }
}
