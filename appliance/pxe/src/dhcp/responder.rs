//! `DhcpResponder`: turns one received DHCP datagram into at most one reply.
//! The DHCPv4 state machine (RFC 2131) for an authoritative server, and the
//! boot-only answers of proxyDHCP mode.
//!
//! Owns protocol decisions and the lease store. It never touches sockets or
//! the clock (callers pass `now`), so every path is unit-testable and
//! fuzzable; it never panics on any input.

use super::boot::{self, BootFile, BootFiles};
use super::client::{self, ClientFacts};
use super::options;
use crate::leases::LeaseStore;
use crate::settings::PxeSettings;
use dhcproto::v4::{
    DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use kindling_site::DhcpMode;
use kindling_site::MacAddr;
use std::net::Ipv4Addr;

/// Largest datagram we accept; anything longer is dropped as oversized
/// (Ethernet MTU sized requests are all real clients send).
pub const MAX_REQUEST_LEN: usize = 1500;
/// Smallest valid BOOTP message (fixed header + magic cookie).
pub const MIN_REQUEST_LEN: usize = 240;

/// Which socket a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Dhcp,
    /// 4011: PXE boot-server discovery, used by proxyDHCP clients.
    ProxyPxe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255:68 on the LAN interface.
    Broadcast,
    Unicast(Ipv4Addr, u16),
}

#[derive(Debug)]
pub struct Reply {
    pub message: Message,
    pub destination: Destination,
}

impl Reply {
    pub fn to_bytes(&self) -> Result<Vec<u8>, dhcproto::error::EncodeError> {
        let mut buf = Vec::with_capacity(400);
        self.message.encode(&mut Encoder::new(&mut buf))?;
        Ok(buf)
    }
}

/// Why a datagram got no reply. Counted in status; none of these is an error
/// of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dropped {
    Oversized,
    Truncated,
    Malformed,
    NotRequest,
    NoMessageType,
    NotEthernet,
    /// A message type a server never answers (or an unknown one).
    Ignored,
    /// The client chose another server's offer.
    OtherServer,
    PoolExhausted,
    /// proxyDHCP mode: not a PXE client.
    NotPxe,
    /// Unknown MAC with `unknown = "ignore"` in proxy mode.
    NotServed,
    /// Our own rogue-detection probe, looped back to us.
    OwnProbe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answered {
    Offer,
    Ack,
    Nak,
    InformAck,
    Released,
    Declined,
}

/// The result of one datagram: the reply (if any) and what we learnt.
#[derive(Debug)]
pub struct Handled {
    pub answered: Answered,
    pub reply: Option<Reply>,
    pub facts: ClientFacts,
    /// Address bound by an ACK.
    pub bound: Option<Ipv4Addr>,
    pub boot_file: Option<BootFile>,
}

/// Whether a MAC gets boot information (the site's unknown-MAC policy), and
/// the fixed address / hostname it may have.
pub trait NodePolicy {
    fn may_boot(&self, mac: &MacAddr) -> bool;
    fn reserved_ip(&self, mac: &MacAddr) -> Option<Ipv4Addr>;
    fn hostname(&self, mac: &MacAddr) -> Option<String>;
}

pub struct DhcpResponder {
    settings: PxeSettings,
    files: BootFiles,
    base_url: String,
    leases: LeaseStore,
}

impl DhcpResponder {
    pub fn new(settings: PxeSettings, files: BootFiles, leases: LeaseStore) -> Self {
        let base_url = settings.base_url();
        Self {
            settings,
            files,
            base_url,
            leases,
        }
    }

    pub fn leases(&self) -> &LeaseStore {
        &self.leases
    }

    pub fn leases_mut(&mut self) -> &mut LeaseStore {
        &mut self.leases
    }

    fn server_id(&self) -> Ipv4Addr {
        self.settings.lan_addr
    }

    /// Decodes and answers one datagram.
    pub fn handle(
        &mut self,
        datagram: &[u8],
        port: Port,
        policy: &dyn NodePolicy,
        now: u64,
    ) -> Result<Handled, Dropped> {
        if datagram.len() > MAX_REQUEST_LEN {
            return Err(Dropped::Oversized);
        }
        if datagram.len() < MIN_REQUEST_LEN {
            return Err(Dropped::Truncated);
        }
        let clean = super::wire::sanitize(datagram).map_err(|_| Dropped::Malformed)?;
        let request = Message::decode(&mut Decoder::new(&clean)).map_err(|_| Dropped::Malformed)?;
        self.handle_message(&request, port, policy, now)
    }

    pub fn handle_message(
        &mut self,
        req: &Message,
        port: Port,
        policy: &dyn NodePolicy,
        now: u64,
    ) -> Result<Handled, Dropped> {
        if req.opcode() != Opcode::BootRequest {
            return Err(Dropped::NotRequest);
        }
        let facts = client::inspect(req).ok_or(Dropped::NotEthernet)?;
        if facts.mac == client::PROBE_MAC {
            return Err(Dropped::OwnProbe);
        }
        let kind = req.opts().msg_type().ok_or(Dropped::NoMessageType)?;
        match self.settings.mode {
            DhcpMode::Authoritative => self.authoritative(req, kind, facts, policy, now),
            DhcpMode::Proxy => self.proxy(req, kind, facts, port, policy),
        }
    }

    fn boot_file_for(&self, facts: &ClientFacts, policy: &dyn NodePolicy) -> Option<BootFile> {
        if !policy.may_boot(&facts.mac) {
            return None;
        }
        boot::choose(facts, &self.files, &self.base_url)
    }

    fn authoritative(
        &mut self,
        req: &Message,
        kind: MessageType,
        facts: ClientFacts,
        policy: &dyn NodePolicy,
        now: u64,
    ) -> Result<Handled, Dropped> {
        let mac = facts.mac;
        let requested = match req.opts().get(OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
            _ => None,
        };
        let server_id = match req.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
            _ => None,
        };
        let reserved = policy.reserved_ip(&mac);
        let hostname = policy.hostname(&mac).or_else(|| facts.hostname.clone());
        let boot_file = self.boot_file_for(&facts, policy);
        match kind {
            MessageType::Discover => {
                let ip = self
                    .leases
                    .choose(&mac, reserved, requested, now)
                    .ok_or(Dropped::PoolExhausted)?;
                self.leases.hold_offer(mac, ip, now);
                let reply = self.reply(
                    req,
                    MessageType::Offer,
                    ip,
                    &facts,
                    boot_file.as_ref(),
                    hostname.as_deref(),
                );
                Ok(Handled {
                    answered: Answered::Offer,
                    reply: Some(reply),
                    facts,
                    bound: None,
                    boot_file,
                })
            }
            MessageType::Request => {
                if let Some(sid) = server_id {
                    if sid != self.server_id() {
                        // SELECTING another server's offer: free what we offered.
                        if let Some(lease) = self.leases.lease_of(&mac).cloned() {
                            if lease.state == crate::leases::LeaseState::Offered {
                                self.leases.release(&mac, lease.ip);
                            }
                        }
                        return Err(Dropped::OtherServer);
                    }
                }
                let ciaddr = req.ciaddr();
                let wanted = requested.or((!ciaddr.is_unspecified()).then_some(ciaddr));
                let acceptable = wanted.filter(|ip| match reserved {
                    Some(r) => r == *ip,
                    None => self.leases.available_for(*ip, &mac, now),
                });
                match acceptable {
                    Some(ip) => {
                        self.leases
                            .bind(mac, ip, self.settings.lease_secs, hostname.clone(), now);
                        let reply = self.reply(
                            req,
                            MessageType::Ack,
                            ip,
                            &facts,
                            boot_file.as_ref(),
                            hostname.as_deref(),
                        );
                        Ok(Handled {
                            answered: Answered::Ack,
                            reply: Some(reply),
                            facts,
                            bound: Some(ip),
                            boot_file,
                        })
                    }
                    None => {
                        // Authoritative for the LAN: a wrong, foreign or taken
                        // address is refused so the client restarts at DISCOVER
                        // at once instead of waiting out its timers.
                        let reply = self.nak(req);
                        Ok(Handled {
                            answered: Answered::Nak,
                            reply: Some(reply),
                            facts,
                            bound: None,
                            boot_file: None,
                        })
                    }
                }
            }
            MessageType::Release => {
                self.leases.release(&mac, req.ciaddr());
                Ok(Handled {
                    answered: Answered::Released,
                    reply: None,
                    facts,
                    bound: None,
                    boot_file: None,
                })
            }
            MessageType::Decline => {
                if let Some(ip) = requested {
                    self.leases.decline(&mac, ip, now);
                }
                Ok(Handled {
                    answered: Answered::Declined,
                    reply: None,
                    facts,
                    bound: None,
                    boot_file: None,
                })
            }
            MessageType::Inform => {
                let mut reply = self.reply(
                    req,
                    MessageType::Ack,
                    Ipv4Addr::UNSPECIFIED,
                    &facts,
                    None,
                    None,
                );
                let opts = reply.message.opts_mut();
                opts.remove(OptionCode::AddressLeaseTime);
                opts.remove(OptionCode::Renewal);
                opts.remove(OptionCode::Rebinding);
                if !req.ciaddr().is_unspecified() && req.giaddr().is_unspecified() {
                    reply.destination = Destination::Unicast(req.ciaddr(), 68);
                }
                Ok(Handled {
                    answered: Answered::InformAck,
                    reply: Some(reply),
                    facts,
                    bound: None,
                    boot_file: None,
                })
            }
            _ => Err(Dropped::Ignored),
        }
    }

    fn proxy(
        &mut self,
        req: &Message,
        kind: MessageType,
        facts: ClientFacts,
        port: Port,
        policy: &dyn NodePolicy,
    ) -> Result<Handled, Dropped> {
        if !facts.is_pxe && !facts.is_ipxe {
            return Err(Dropped::NotPxe);
        }
        let boot_file = self
            .boot_file_for(&facts, policy)
            .ok_or(Dropped::NotServed)?;
        let (answered, msg_kind) = match (kind, port) {
            (MessageType::Discover, Port::Dhcp) => (Answered::Offer, MessageType::Offer),
            (MessageType::Request, Port::ProxyPxe) => (Answered::Ack, MessageType::Ack),
            (MessageType::Request, Port::Dhcp) => {
                let ours = matches!(req.opts().get(OptionCode::ServerIdentifier),
                    Some(DhcpOption::ServerIdentifier(ip)) if *ip == self.server_id());
                if !ours {
                    return Err(Dropped::OtherServer);
                }
                (Answered::Ack, MessageType::Ack)
            }
            _ => return Err(Dropped::Ignored),
        };
        let mut reply = self.reply(
            req,
            msg_kind,
            Ipv4Addr::UNSPECIFIED,
            &facts,
            Some(&boot_file),
            None,
        );
        let opts = reply.message.opts_mut();
        // A proxy gives boot information only: no address, lease or network options.
        for code in options::network_option_codes() {
            opts.remove(code);
        }
        if !facts.http_client {
            opts.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
            opts.insert(DhcpOption::VendorExtensions(
                boot::PXE_VENDOR_USE_BOOTFILE.to_vec(),
            ));
        }
        if port == Port::ProxyPxe && !req.ciaddr().is_unspecified() {
            reply.destination = Destination::Unicast(req.ciaddr(), 68);
        }
        Ok(Handled {
            answered,
            reply: Some(reply),
            facts,
            bound: None,
            boot_file: Some(boot_file),
        })
    }

    fn destination(req: &Message) -> Destination {
        if !req.giaddr().is_unspecified() {
            Destination::Unicast(req.giaddr(), 67)
        } else if !req.ciaddr().is_unspecified() {
            Destination::Unicast(req.ciaddr(), 68)
        } else {
            // No ARP entry can exist for a client without an address; a
            // broadcast on the LAN interface always reaches it.
            Destination::Broadcast
        }
    }

    fn base_reply(&self, req: &Message, kind: MessageType, yiaddr: Ipv4Addr) -> Message {
        let mut msg = Message::default();
        msg.set_opcode(Opcode::BootReply)
            .set_htype(HType::Eth)
            .set_xid(req.xid())
            .set_flags(req.flags())
            .set_ciaddr(req.ciaddr())
            .set_yiaddr(yiaddr)
            .set_giaddr(req.giaddr())
            .set_chaddr(req.chaddr());
        msg.opts_mut().insert(DhcpOption::MessageType(kind));
        msg.opts_mut()
            .insert(DhcpOption::ServerIdentifier(self.server_id()));
        msg
    }

    fn reply(
        &self,
        req: &Message,
        kind: MessageType,
        yiaddr: Ipv4Addr,
        facts: &ClientFacts,
        boot_file: Option<&BootFile>,
        hostname: Option<&str>,
    ) -> Reply {
        let s = &self.settings;
        let mut msg = self.base_reply(req, kind, yiaddr);
        let opts = msg.opts_mut();
        for option in options::network_options(s).chain(options::hostname(hostname)) {
            opts.insert(option);
        }
        if let Some(file) = boot_file {
            if facts.http_client {
                // UEFI HTTP boot only accepts offers that echo its vendor class.
                opts.insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
            }
            opts.insert(DhcpOption::BootfileName(file.as_str().as_bytes().to_vec()));
            msg.set_siaddr(s.lan_addr);
            if file.as_str().len() < 128 {
                msg.set_fname_str(file.as_str());
            }
        }
        if facts.is_pxe || facts.is_ipxe {
            msg.opts_mut()
                .insert(DhcpOption::Unknown(UnknownOption::new(
                    OptionCode::Unknown(175),
                    boot::IPXE_ENCAPSULATED_NO_PXEDHCP.to_vec(),
                )));
        }
        Reply {
            message: msg,
            destination: Self::destination(req),
        }
    }

    fn nak(&self, req: &Message) -> Reply {
        let msg = self.base_reply(req, MessageType::Nak, Ipv4Addr::UNSPECIFIED);
        // RFC 2131 4.3.2: a NAK is broadcast unless it goes through a relay.
        let destination = if req.giaddr().is_unspecified() {
            Destination::Broadcast
        } else {
            Destination::Unicast(req.giaddr(), 67)
        };
        let mut reply = Reply {
            message: msg,
            destination,
        };
        reply.message.set_flags(Flags::default().set_broadcast());
        reply
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::dhcp::client::{ARCH_BIOS, ARCH_EFI_X64, ARCH_EFI_X64_HTTP};
    use crate::settings::{tests::lab_site, PxePaths};
    use dhcproto::v4::Architecture;

    struct Policy {
        boot: bool,
    }
    impl NodePolicy for Policy {
        fn may_boot(&self, _: &MacAddr) -> bool {
            self.boot
        }
        fn reserved_ip(&self, mac: &MacAddr) -> Option<Ipv4Addr> {
            (mac.0[5] == 0x20).then(|| Ipv4Addr::new(192, 168, 100, 150))
        }
        fn hostname(&self, _: &MacAddr) -> Option<String> {
            None
        }
    }
    const BOOT: Policy = Policy { boot: true };

    fn responder(mode: DhcpMode, range: (u8, u8)) -> DhcpResponder {
        let mut site = lab_site();
        site.pxe.mode = mode;
        let mut s = PxeSettings::from_site(&site, PxePaths::default()).unwrap();
        s.range_start = Ipv4Addr::new(192, 168, 100, range.0);
        s.range_end = Ipv4Addr::new(192, 168, 100, range.1);
        let leases = LeaseStore::new(
            s.range_start,
            s.range_end,
            [(mac(0x20), Ipv4Addr::new(192, 168, 100, 150))],
        );
        DhcpResponder::new(s, BootFiles::default(), leases)
    }

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x52, 0x54, 0, 0x6b, 0, last])
    }

    fn request(kind: MessageType, m: MacAddr, arch: Option<u16>, vendor: &[u8]) -> Message {
        let mut msg = Message::default();
        msg.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_xid(0x1234)
            .set_chaddr(&m.0);
        msg.opts_mut().insert(DhcpOption::MessageType(kind));
        if let Some(a) = arch {
            msg.opts_mut()
                .insert(DhcpOption::ClientSystemArchitecture(Architecture(a)));
        }
        if !vendor.is_empty() {
            msg.opts_mut()
                .insert(DhcpOption::ClassIdentifier(vendor.to_vec()));
        }
        msg
    }

    fn wire(msg: &Message) -> Vec<u8> {
        let mut buf = Vec::new();
        msg.encode(&mut Encoder::new(&mut buf)).unwrap();
        buf
    }

    /// Every reply goes through encode → decode, as on the wire.
    fn exchange(r: &mut DhcpResponder, msg: &Message, now: u64) -> (Handled, Message) {
        let handled = r.handle(&wire(msg), Port::Dhcp, &BOOT, now).unwrap();
        let bytes = handled.reply.as_ref().unwrap().to_bytes().unwrap();
        let back = Message::decode(&mut Decoder::new(&bytes)).unwrap();
        (handled, back)
    }

    fn opt(m: &Message, code: OptionCode) -> Option<&DhcpOption> {
        m.opts().get(code)
    }

    #[test]
    fn discover_request_ack_for_bios_pxe() {
        let mut r = responder(DhcpMode::Authoritative, (100, 200));
        let (h, offer) = exchange(
            &mut r,
            &request(
                MessageType::Discover,
                mac(1),
                Some(ARCH_BIOS),
                b"PXEClient:Arch:00000",
            ),
            10,
        );
        assert_eq!(h.answered, Answered::Offer);
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(offer.xid(), 0x1234);
        assert_eq!(offer.opcode(), Opcode::BootReply);
        let ip = offer.yiaddr();
        assert!(r.settings.in_range(ip));
        assert_eq!(offer.siaddr(), Ipv4Addr::new(192, 168, 100, 1));
        // Decoded fname has a trailing NUL per DESIGN; compare trimmed.
        let fname = offer
            .fname()
            .map(|f| f.split(|b| *b == 0).next().unwrap_or_default().to_vec());
        assert_eq!(fname.as_deref(), Some(&b"undionly.kpxe"[..]));
        assert!(
            matches!(opt(&offer, OptionCode::Unknown(175)), Some(DhcpOption::Unknown(u)) if u.data() == [0xb0, 1, 1])
        );
        assert!(
            matches!(opt(&offer, OptionCode::Router), Some(DhcpOption::Router(v)) if v == &[Ipv4Addr::new(192, 168, 100, 1)])
        );
        assert!(
            matches!(opt(&offer, OptionCode::SubnetMask), Some(DhcpOption::SubnetMask(m)) if *m == Ipv4Addr::new(255, 255, 255, 0))
        );
        assert!(matches!(
            opt(&offer, OptionCode::AddressLeaseTime),
            Some(DhcpOption::AddressLeaseTime(3600))
        ));

        let mut req = request(
            MessageType::Request,
            mac(1),
            Some(ARCH_BIOS),
            b"PXEClient:Arch:00000",
        );
        req.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
        req.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(
                192, 168, 100, 1,
            )));
        let (h, ack) = exchange(&mut r, &req, 11);
        assert_eq!(h.answered, Answered::Ack);
        assert_eq!(h.bound, Some(ip));
        assert_eq!(ack.yiaddr(), ip);
        assert_eq!(r.leases().lease_of(&mac(1)).map(|l| l.ip), Some(ip));
    }

    #[test]
    fn boot_file_per_architecture_and_ipxe() {
        let mut r = responder(DhcpMode::Authoritative, (100, 200));
        let (_, uefi) = exchange(
            &mut r,
            &request(
                MessageType::Discover,
                mac(2),
                Some(ARCH_EFI_X64),
                b"PXEClient:Arch:00007",
            ),
            1,
        );
        assert!(
            matches!(opt(&uefi, OptionCode::BootfileName), Some(DhcpOption::BootfileName(f)) if f == b"snponly.efi")
        );

        let (h, http) = exchange(
            &mut r,
            &request(
                MessageType::Discover,
                mac(3),
                Some(ARCH_EFI_X64_HTTP),
                b"HTTPClient:Arch:00016",
            ),
            1,
        );
        assert_eq!(
            h.boot_file,
            Some(BootFile::Http(
                "http://192.168.100.1/boot/snponly.efi".into()
            ))
        );
        assert!(
            matches!(opt(&http, OptionCode::ClassIdentifier), Some(DhcpOption::ClassIdentifier(v)) if v == b"HTTPClient")
        );

        let mut ipxe = request(
            MessageType::Discover,
            mac(4),
            Some(ARCH_BIOS),
            b"PXEClient:Arch:00000",
        );
        ipxe.opts_mut()
            .insert(DhcpOption::UserClass(b"iPXE".to_vec()));
        let (h, _) = exchange(&mut r, &ipxe, 1);
        assert_eq!(
            h.boot_file,
            Some(BootFile::Http(
                "http://192.168.100.1/boot/52:54:00:6b:00:04.ipxe".into()
            ))
        );

        let (h, plain) = exchange(
            &mut r,
            &request(MessageType::Discover, mac(5), None, b""),
            1,
        );
        assert_eq!(
            h.boot_file, None,
            "an installed OS asking for an address gets no boot file"
        );
        assert!(opt(&plain, OptionCode::Unknown(175)).is_none());
    }

    #[test]
    fn unknown_mac_with_ignore_policy_gets_an_address_but_no_boot() {
        let mut r = responder(DhcpMode::Authoritative, (100, 200));
        let msg = request(MessageType::Discover, mac(6), Some(ARCH_BIOS), b"PXEClient");
        let h = r
            .handle(&wire(&msg), Port::Dhcp, &Policy { boot: false }, 1)
            .unwrap();
        assert!(h.boot_file.is_none());
        assert!(!h.reply.unwrap().message.yiaddr().is_unspecified());
    }

    #[test]
    fn reservation_wins_and_foreign_requests_are_naked() {
        let mut r = responder(DhcpMode::Authoritative, (100, 200));
        let (_, offer) = exchange(
            &mut r,
            &request(MessageType::Discover, mac(0x20), None, b""),
            1,
        );
        assert_eq!(offer.yiaddr(), Ipv4Addr::new(192, 168, 100, 150));

        // INIT-REBOOT asking for an address outside the range: NAK.
        let mut req = request(MessageType::Request, mac(7), None, b"");
        req.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 9, 9, 9)));
        let (h, nak) = exchange(&mut r, &req, 1);
        assert_eq!(h.answered, Answered::Nak);
        assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
        assert!(nak.flags().broadcast());

        // Somebody else's reservation: NAK.
        let mut req = request(MessageType::Request, mac(8), None, b"");
        req.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                192, 168, 100, 150,
            )));
        assert_eq!(exchange(&mut r, &req, 1).0.answered, Answered::Nak);
    }

    #[test]
    fn choosing_another_server_frees_our_offer() {
        let mut r = responder(DhcpMode::Authoritative, (100, 100));
        let (_, offer) = exchange(
            &mut r,
            &request(MessageType::Discover, mac(1), None, b""),
            1,
        );
        let mut req = request(MessageType::Request, mac(1), None, b"");
        req.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
        req.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(
                192, 168, 100, 254,
            )));
        assert_eq!(
            r.handle(&wire(&req), Port::Dhcp, &BOOT, 2).unwrap_err(),
            Dropped::OtherServer
        );
        // The single address is free again for someone else.
        assert!(r
            .handle(
                &wire(&request(MessageType::Discover, mac(2), None, b"")),
                Port::Dhcp,
                &BOOT,
                3
            )
            .is_ok());
    }

    #[test]
    fn exhausted_pool_is_dropped_and_counted() {
        let mut r = responder(DhcpMode::Authoritative, (100, 101));
        for n in 1..=2 {
            exchange(
                &mut r,
                &request(MessageType::Discover, mac(n), None, b""),
                1,
            );
        }
        let third = r.handle(
            &wire(&request(MessageType::Discover, mac(3), None, b"")),
            Port::Dhcp,
            &BOOT,
            1,
        );
        assert_eq!(third.unwrap_err(), Dropped::PoolExhausted);
        // Offers expire: the pool frees up after the hold time.
        assert!(r
            .handle(
                &wire(&request(MessageType::Discover, mac(3), None, b"")),
                Port::Dhcp,
                &BOOT,
                100
            )
            .is_ok());
    }

    #[test]
    fn renew_release_decline_inform() {
        let mut r = responder(DhcpMode::Authoritative, (100, 200));
        let (_, offer) = exchange(
            &mut r,
            &request(MessageType::Discover, mac(1), None, b""),
            1,
        );
        let ip = offer.yiaddr();
        let mut renew = request(MessageType::Request, mac(1), None, b"");
        renew.set_ciaddr(ip);
        let (h, ack) = exchange(&mut r, &renew, 2);
        assert_eq!(h.answered, Answered::Ack);
        assert_eq!(h.reply.unwrap().destination, Destination::Unicast(ip, 68));
        assert_eq!(ack.yiaddr(), ip);

        let mut inform = request(MessageType::Inform, mac(1), None, b"");
        inform.set_ciaddr(ip);
        let (h, ack) = exchange(&mut r, &inform, 3);
        assert_eq!(h.answered, Answered::InformAck);
        assert!(opt(&ack, OptionCode::AddressLeaseTime).is_none());

        let mut release = request(MessageType::Release, mac(1), None, b"");
        release.set_ciaddr(ip);
        assert!(r
            .handle(&wire(&release), Port::Dhcp, &BOOT, 4)
            .unwrap()
            .reply
            .is_none());
        assert!(r.leases().lease_of(&mac(1)).is_none());

        let mut decline = request(MessageType::Decline, mac(2), None, b"");
        decline
            .opts_mut()
            .insert(DhcpOption::RequestedIpAddress(ip));
        r.handle(&wire(&decline), Port::Dhcp, &BOOT, 5).unwrap();
        assert!(
            !r.leases().available_for(ip, &mac(3), 6),
            "declined address is quarantined"
        );
    }

    #[test]
    fn proxy_mode_gives_boot_information_only() {
        let mut r = responder(DhcpMode::Proxy, (100, 200));
        let (h, offer) = exchange(
            &mut r,
            &request(
                MessageType::Discover,
                mac(1),
                Some(ARCH_BIOS),
                b"PXEClient:Arch:00000",
            ),
            1,
        );
        assert_eq!(h.answered, Answered::Offer);
        assert!(offer.yiaddr().is_unspecified());
        assert!(opt(&offer, OptionCode::AddressLeaseTime).is_none());
        assert!(opt(&offer, OptionCode::Router).is_none());
        assert!(
            matches!(opt(&offer, OptionCode::ClassIdentifier), Some(DhcpOption::ClassIdentifier(v)) if v == b"PXEClient")
        );
        assert!(
            matches!(opt(&offer, OptionCode::VendorExtensions), Some(DhcpOption::VendorExtensions(v)) if v == &[6, 1, 8, 255])
        );

        let mut req = request(
            MessageType::Request,
            mac(1),
            Some(ARCH_BIOS),
            b"PXEClient:Arch:00000",
        );
        req.set_ciaddr(Ipv4Addr::new(192, 168, 100, 77));
        let h = r.handle(&wire(&req), Port::ProxyPxe, &BOOT, 2).unwrap();
        assert_eq!(h.answered, Answered::Ack);
        assert_eq!(
            h.reply.unwrap().destination,
            Destination::Unicast(Ipv4Addr::new(192, 168, 100, 77), 68)
        );

        let plain = r.handle(
            &wire(&request(MessageType::Discover, mac(2), None, b"")),
            Port::Dhcp,
            &BOOT,
            3,
        );
        assert_eq!(plain.unwrap_err(), Dropped::NotPxe);
    }

    #[test]
    fn bad_datagrams_are_dropped_not_fatal() {
        let mut r = responder(DhcpMode::Authoritative, (100, 200));
        assert_eq!(
            r.handle(&[0u8; 10], Port::Dhcp, &BOOT, 1).unwrap_err(),
            Dropped::Truncated
        );
        assert_eq!(
            r.handle(&vec![0u8; 4000], Port::Dhcp, &BOOT, 1)
                .unwrap_err(),
            Dropped::Oversized
        );
        let mut good = wire(&request(MessageType::Discover, mac(1), None, b""));
        good[2] = 200; // hlen beyond chaddr: dhcproto would panic in chaddr()
        assert_eq!(
            r.handle(&good, Port::Dhcp, &BOOT, 1).unwrap_err(),
            Dropped::NotEthernet
        );
        let mut reply = request(MessageType::Discover, mac(1), None, b"");
        reply.set_opcode(Opcode::BootReply);
        assert_eq!(
            r.handle(&wire(&reply), Port::Dhcp, &BOOT, 1).unwrap_err(),
            Dropped::NotRequest
        );
        let mut no_type = request(MessageType::Discover, mac(1), None, b"");
        no_type.opts_mut().remove(OptionCode::MessageType);
        assert_eq!(
            r.handle(&wire(&no_type), Port::Dhcp, &BOOT, 1).unwrap_err(),
            Dropped::NoMessageType
        );
        let mut unknown_opt = request(MessageType::Discover, mac(1), None, b"");
        unknown_opt
            .opts_mut()
            .insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::Unknown(250),
                vec![1, 2, 3],
            )));
        assert!(
            r.handle(&wire(&unknown_opt), Port::Dhcp, &BOOT, 1).is_ok(),
            "unknown options are ignored"
        );
        // Random garbage of every length never panics.
        let mut seed = 0x9e3779b97f4a7c15u64;
        for len in 0..700 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = r.handle(&junk, Port::Dhcp, &BOOT, 1);
        }
    }
}
