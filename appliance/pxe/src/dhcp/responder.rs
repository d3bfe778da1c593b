//! `DhcpResponder`: turns one received DHCP datagram into at most one reply.
//! The DHCPv4 state machine (RFC 2131) for an authoritative server, and the
//! boot-only answers of proxyDHCP mode.
//!
//! Owns protocol decisions and the lease store. It never touches sockets or
//! the clock (callers pass `now`), so every path is unit-testable and
//! fuzzable; it never panics on any input.

use super::boot::{self, BootFile, BootFiles};
use super::client::{self, ClientFacts};
use crate::leases::LeaseStore;
use crate::mac::MacAddr;
use crate::settings::PxeSettings;
use dhcproto::v4::{
    DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use kindling_site::DhcpMode;
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
        let request =
            Message::decode(&mut Decoder::new(datagram)).map_err(|_| Dropped::Malformed)?;
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
        if facts.mac == super::rogue::PROBE_MAC {
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
        for code in [
            OptionCode::AddressLeaseTime,
            OptionCode::Renewal,
            OptionCode::Rebinding,
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::DomainName,
            OptionCode::BroadcastAddr,
            OptionCode::NtpServers,
        ] {
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
        let lease = s.lease_secs;
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::AddressLeaseTime(lease));
        opts.insert(DhcpOption::Renewal(lease / 2));
        opts.insert(DhcpOption::Rebinding(lease / 8 * 7));
        opts.insert(DhcpOption::SubnetMask(s.netmask()));
        opts.insert(DhcpOption::BroadcastAddr(s.broadcast()));
        opts.insert(DhcpOption::Router(vec![s.lan_addr]));
        if !s.dns.is_empty() {
            opts.insert(DhcpOption::DomainNameServer(s.dns.clone()));
        }
        if !s.domain.is_empty() {
            opts.insert(DhcpOption::DomainName(s.domain.clone()));
        }
        if !s.ntp.is_empty() {
            opts.insert(DhcpOption::NtpServers(s.ntp.clone()));
        }
        if let Some(name) = hostname.filter(|h| client::is_clean_hostname(h)) {
            opts.insert(DhcpOption::Hostname(name.to_string()));
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
