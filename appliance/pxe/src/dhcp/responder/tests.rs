//! The responder against encoded packets, as on the wire.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use crate::dhcp::client::{ARCH_BIOS, ARCH_EFI_X64, ARCH_EFI_X64_HTTP};
use crate::settings::{tests::lab_site, PxePaths};
use dhcproto::v4::Architecture;

struct Policy {
    boot: bool,
}
impl NodePolicy for Policy {
    fn may_boot(&self, _: &ClientFacts) -> bool {
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

/// DISCOVER → OFFER → REQUEST (SELECTING) → ACK for `m` with client id
/// `cid`; returns the bound address.
fn dora(r: &mut DhcpResponder, m: MacAddr, cid: Option<&[u8]>, now: u64) -> Ipv4Addr {
    let with_cid = |mut msg: Message| {
        if let Some(id) = cid {
            msg.opts_mut()
                .insert(DhcpOption::ClientIdentifier(id.to_vec()));
        }
        msg
    };
    let discover = with_cid(request(MessageType::Discover, m, None, b""));
    let (_, offer) = exchange(r, &discover, now);
    let mut req = with_cid(request(MessageType::Request, m, None, b""));
    req.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    req.opts_mut()
        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(
            192, 168, 100, 1,
        )));
    let (h, ack) = exchange(r, &req, now);
    assert_eq!(h.answered, Answered::Ack);
    ack.yiaddr()
}

// Behaviour changed: offers are soft, so only bound leases exhaust the pool
// (offers held exclusively let a DISCOVER flood starve the LAN).
#[test]
fn exhausted_pool_is_dropped_and_counted() {
    let mut r = responder(DhcpMode::Authoritative, (100, 101));
    for n in 1..=2 {
        dora(&mut r, mac(n), None, 1);
    }
    let third = r.handle(
        &wire(&request(MessageType::Discover, mac(3), None, b"")),
        Port::Dhcp,
        &BOOT,
        1,
    );
    assert_eq!(third.unwrap_err(), Dropped::PoolExhausted);
    // Leases expire: the pool frees up after the lease time.
    assert!(r
        .handle(
            &wire(&request(MessageType::Discover, mac(3), None, b"")),
            Port::Dhcp,
            &BOOT,
            1 + 3600
        )
        .is_ok());
}

#[test]
fn a_discover_flood_never_exhausts_the_pool() {
    let mut r = responder(DhcpMode::Authoritative, (100, 110));
    for n in 0..5000u32 {
        let b = n.to_be_bytes();
        let fake = MacAddr([2, 0xfa, b[0], b[1], b[2], b[3]]);
        let h = r
            .handle(
                &wire(&request(MessageType::Discover, fake, None, b"")),
                Port::Dhcp,
                &BOOT,
                1,
            )
            .unwrap();
        assert_eq!(h.answered, Answered::Offer);
    }
    // The legitimate client still gets a lease, at once.
    let ip = dora(&mut r, mac(1), Some(&[1, 0x52, 0x54, 0, 0x6b, 0, 1]), 2);
    assert!(r.settings.in_range(ip));
}

// Behaviour changed: a renewal is ACKed only for the lease the client holds
// (it used to bind any free address named in ciaddr).
#[test]
fn renew_release_decline_inform() {
    let mut r = responder(DhcpMode::Authoritative, (100, 200));
    let ip = dora(&mut r, mac(1), None, 1);
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

    let ip = dora(&mut r, mac(2), None, 5);
    let mut decline = request(MessageType::Decline, mac(2), None, b"");
    decline
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(ip));
    let h = r.handle(&wire(&decline), Port::Dhcp, &BOOT, 5).unwrap();
    assert_eq!(h.answered, Answered::Declined);
    assert!(
        !r.leases().available_for(ip, &mac(3), 6),
        "declined address is quarantined"
    );
}

/// Spoofed messages for a victim's address, through encode → decode: each
/// is refused, and the victim keeps its lease and renews it.
#[test]
fn spoofed_release_decline_request_leave_the_victim_its_lease() {
    let victim_cid: &[u8] = &[1, 0x52, 0x54, 0, 0x6b, 0, 1];
    let mut r = responder(DhcpMode::Authoritative, (100, 200));
    let ip = dora(&mut r, mac(1), Some(victim_cid), 1);
    let ours = Ipv4Addr::new(192, 168, 100, 1);
    let spoof = |kind, m: MacAddr, cid: Option<&[u8]>, ciaddr, opts: &[DhcpOption]| {
        let mut msg = request(kind, m, None, b"");
        msg.set_ciaddr(ciaddr);
        for o in cid
            .map(|id| DhcpOption::ClientIdentifier(id.to_vec()))
            .iter()
            .chain(opts)
        {
            msg.opts_mut().insert(o.clone());
        }
        msg
    };
    let (none, wants, names_us) = (
        Ipv4Addr::UNSPECIFIED,
        DhcpOption::RequestedIpAddress(ip),
        DhcpOption::ServerIdentifier(ours),
    );
    let attacker_cid: &[u8] = &[1, 2, 0, 0, 0, 0, 0x66];
    for (m, cid) in [
        (MacAddr([2, 0, 0, 0, 0, 0x66]), Some(attacker_cid)),
        (mac(1), Some(attacker_cid)), // the victim's MAC, another client id
        (mac(1), None),
    ] {
        for (kind, ciaddr, opts, message) in [
            (
                MessageType::Release,
                ip,
                vec![names_us.clone()],
                HolderMessage::Release,
            ),
            (
                MessageType::Decline,
                none,
                vec![wants.clone(), names_us.clone()],
                HolderMessage::Decline,
            ),
        ] {
            let got = r.handle(
                &wire(&spoof(kind, m, cid, ciaddr, &opts)),
                Port::Dhcp,
                &BOOT,
                2,
            );
            assert!(
                matches!(got, Err(Dropped::NotHolder(n)) if n.message == message),
                "{kind:?} from {m}: {got:?}"
            );
        }
        // SELECTING with no offer, INIT-REBOOT and RENEWING for the address.
        for (ciaddr, opts) in [
            (none, vec![wants.clone(), names_us.clone()]),
            (none, vec![wants.clone()]),
            (ip, vec![]),
        ] {
            let (h, nak) = exchange(
                &mut r,
                &spoof(MessageType::Request, m, cid, ciaddr, &opts),
                2,
            );
            assert_eq!((h.answered, h.bound), (Answered::Nak, None));
            assert!(h.refused.is_some());
            assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
        }
    }
    let lease = r.leases().lease_of(&mac(1)).unwrap();
    assert_eq!(lease.ip, ip);
    assert!(r.leases().available_for(ip, &mac(1), 3), "not quarantined");
    let renew = spoof(MessageType::Request, mac(1), Some(victim_cid), ip, &[]);
    let (h, ack) = exchange(&mut r, &renew, 3);
    assert_eq!((h.answered, ack.yiaddr()), (Answered::Ack, ip));
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
