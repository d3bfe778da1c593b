//! A hostile host on the LAN against the DHCP server, with real packets in
//! network namespaces this test creates (a bridge with the service, plus a
//! namespace per LAN host): spoofed RELEASE, DECLINE and REQUEST for a
//! victim's address; 10,000 made-up MACs against the inventory cap; a
//! 2,000-MAC DISCOVER flood (kea's perfdhcp) while a legitimate client
//! (busybox udhcpc) asks for a lease. Skipped with a message when not root.
//! Run under the lab lock: `flock /tmp/kindling-lab.lock cargo test -p
//! kindling-pxe --test dhcp_hostile`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use kindling_pxe::PxeSettings;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 1);
const VICTIM_MAC: [u8; 6] = [0x52, 0x54, 0, 0x6b, 0, 0x31];
const ATTACKER_MAC: [u8; 6] = [0x52, 0x54, 0, 0x6b, 0, 0x66];

fn settings(dirs: &Dirs) -> PxeSettings {
    PxeSettings::from_site(&lab_site(), dirs.paths(Path::new("/usr/lib/ipxe"))).unwrap()
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// busybox udhcpc's client identifier: type 1 + the MAC.
fn udhcpc_client_id(mac: [u8; 6]) -> Vec<u8> {
    let mut id = vec![1];
    id.extend_from_slice(&mac);
    id
}

/// Runs busybox udhcpc (retransmit every 1 s, up to 30 times) on `eth0` of
/// `ns`; returns the address leased and how long it took.
fn udhcpc(ns: &str) -> (Ipv4Addr, Duration) {
    let started = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "busybox", "udhcpc", "-i", "eth0"])
        .args(["-n", "-q", "-f", "-t", "30", "-T", "1", "-s", "/bin/true"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let ip = text
        .lines()
        .find_map(|l| {
            l.split("lease of ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("udhcpc in {ns} got no lease after {took:?}: {text}"));
    (ip, took)
}

struct Packet {
    kind: MessageType,
    mac: [u8; 6],
    client_id: Option<Vec<u8>>,
    ciaddr: Ipv4Addr,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
}

impl Packet {
    fn new(kind: MessageType, mac: [u8; 6]) -> Self {
        Self {
            kind,
            mac,
            client_id: Some(udhcpc_client_id(mac)),
            ciaddr: Ipv4Addr::UNSPECIFIED,
            requested: None,
            server_id: None,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut msg = Message::default();
        msg.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_xid(u32::from_be_bytes([
                self.mac[2],
                self.mac[3],
                self.mac[4],
                self.mac[5],
            ]))
            .set_flags(Flags::default().set_broadcast())
            .set_ciaddr(self.ciaddr)
            .set_chaddr(&self.mac);
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::MessageType(self.kind));
        if let Some(id) = &self.client_id {
            opts.insert(DhcpOption::ClientIdentifier(id.clone()));
        }
        if let Some(ip) = self.requested {
            opts.insert(DhcpOption::RequestedIpAddress(ip));
        }
        if let Some(ip) = self.server_id {
            opts.insert(DhcpOption::ServerIdentifier(ip));
        }
        let mut buf = Vec::new();
        msg.encode(&mut Encoder::new(&mut buf)).unwrap();
        buf
    }
}

/// Sends `packets` from `ns` (source `from`:68) to the server's port 67,
/// `per_ms` packets per millisecond at most.
fn send_from(ns: &str, from: Ipv4Addr, packets: Vec<Vec<u8>>, per_ms: usize) {
    in_netns(ns, move || {
        let socket = UdpSocket::bind(SocketAddrV4::new(from, 68)).unwrap();
        for chunk in packets.chunks(per_ms.max(1)) {
            for p in chunk {
                socket.send_to(p, SocketAddrV4::new(SERVER, 67)).unwrap();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["counters"][name].as_u64().unwrap_or(0)
}

fn status_when(
    dirs: &Dirs,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let path = dirs.path("status/pxe.json");
    eventually(Duration::from_secs(10), || {
        let st = read_status(&path);
        ok(&st).then_some(st)
    })
    .unwrap_or_else(|| panic!("status never showed {what}: {}", read_status(&path)))
}

#[test]
fn spoofed_release_decline_request_leave_the_victim_its_lease() {
    require_root!();
    let dirs = Dirs::new();
    let mut lan = BridgeLan::new();
    let victim = lan.host("v", &mac_text(VICTIM_MAC));
    let attacker = lan.host("a", &mac_text(ATTACKER_MAC));
    sh(&attacker, "ip addr add 192.168.100.250/24 dev eth0");
    start_service(&lan.ns, &lan.bridge, settings(&dirs));

    let (ip, _) = udhcpc(&victim);
    sh(&victim, &format!("ip addr add {ip}/24 dev eth0"));
    let attacker_id = udhcpc_client_id(ATTACKER_MAC);
    // From the attacker's MAC with its own client id, and with the
    // victim's MAC in chaddr but another client id (or none).
    let senders = [
        (ATTACKER_MAC, Some(attacker_id.clone())),
        (VICTIM_MAC, Some(attacker_id)),
        (VICTIM_MAC, None),
    ];
    let mut spoofed = Vec::new();
    for (mac, client_id) in &senders {
        let base = |kind| Packet {
            client_id: client_id.clone(),
            ..Packet::new(kind, *mac)
        };
        spoofed.push(Packet {
            ciaddr: ip,
            server_id: Some(SERVER),
            ..base(MessageType::Release)
        });
        spoofed.push(Packet {
            requested: Some(ip),
            server_id: Some(SERVER),
            ..base(MessageType::Decline)
        });
        // SELECTING without an offer, INIT-REBOOT, RENEWING.
        spoofed.push(Packet {
            requested: Some(ip),
            server_id: Some(SERVER),
            ..base(MessageType::Request)
        });
        spoofed.push(Packet {
            requested: Some(ip),
            ..base(MessageType::Request)
        });
        spoofed.push(Packet {
            ciaddr: ip,
            ..base(MessageType::Request)
        });
    }
    send_from(
        &attacker,
        Ipv4Addr::new(192, 168, 100, 250),
        spoofed.iter().map(Packet::bytes).collect(),
        1,
    );
    let st = status_when(&dirs, "every spoofed message refused", |st| {
        counter(st, "dhcp_refused_release") == 3
            && counter(st, "dhcp_refused_decline") == 3
            && counter(st, "dhcp_refused_request") == 9
    });
    assert_eq!(
        counter(&st, "dhcp_releases") + counter(&st, "dhcp_declines"),
        0,
        "{st}"
    );
    eprintln!(
        "refused: {} RELEASE, {} DECLINE, {} REQUEST (NAKed); leases in use {}",
        counter(&st, "dhcp_refused_release"),
        counter(&st, "dhcp_refused_decline"),
        counter(&st, "dhcp_refused_request"),
        st["leases_in_use"]
    );

    // The lease file still names the victim.
    let leases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs.path("state/leases/leases.json")).unwrap())
            .unwrap();
    let held = leases["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ip"] == ip.to_string())
        .unwrap_or_else(|| panic!("{ip} gone from the lease file: {leases}"));
    assert_eq!(held["mac"], mac_text(VICTIM_MAC));

    // The victim renews (RENEWING: unicast from its address) the same
    // address, and a new DISCOVER gets it again (not quarantined).
    let renew = Packet {
        ciaddr: ip,
        ..Packet::new(MessageType::Request, VICTIM_MAC)
    }
    .bytes();
    let ack = in_netns(&victim, move || {
        let socket = UdpSocket::bind(SocketAddrV4::new(ip, 68)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        socket
            .send_to(&renew, SocketAddrV4::new(SERVER, 67))
            .unwrap();
        let mut buf = [0u8; 1500];
        let (len, _) = socket
            .recv_from(&mut buf)
            .expect("an answer to the renewal");
        Message::decode(&mut Decoder::new(&buf[..len])).unwrap()
    });
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), ip);
    sh(&victim, &format!("ip addr del {ip}/24 dev eth0"));
    assert_eq!(udhcpc(&victim).0, ip, "the victim keeps its address");
}

#[test]
fn ten_thousand_fake_macs_stay_under_the_inventory_cap() {
    require_root!();
    let dirs = Dirs::new();
    let mut lan = BridgeLan::new();
    let attacker = lan.host("a", &mac_text(ATTACKER_MAC));
    let client = lan.host("c", &mac_text([0x52, 0x54, 0, 0x6b, 0, 0x32]));
    sh(&attacker, "ip addr add 192.168.100.250/24 dev eth0");
    start_service(&lan.ns, &lan.bridge, settings(&dirs));

    const FAKES: u32 = 10_000;
    let discovers = (0..FAKES)
        .map(|n| {
            let b = n.to_be_bytes();
            Packet::new(MessageType::Discover, [2, 0xfa, b[0], b[1], b[2], b[3]]).bytes()
        })
        .collect();
    let started = Instant::now();
    send_from(&attacker, Ipv4Addr::new(192, 168, 100, 250), discovers, 3);
    let sent_in = started.elapsed();
    // Every DISCOVER the server read was answered (offers never run out),
    // and each fake MAC's record is either kept or counted as evicted.
    let st = status_when(&dirs, "every offer's record kept or evicted", |st| {
        let offers = counter(st, "dhcp_offers");
        let read = counter(st, "dhcp_received") - counter(st, "dhcp_dropped_own_probe");
        let discovered = st["inventory"]["discovered"].as_u64().unwrap_or(0);
        offers > 0 && offers == read && discovered + counter(st, "inventory_evicted") == offers
    });
    let offers = counter(&st, "dhcp_offers");
    let cap = st["inventory_max_discovered"].as_u64().unwrap();
    let discovered = st["inventory"]["discovered"].as_u64().unwrap();
    let evicted = counter(&st, "inventory_evicted");
    eprintln!(
        "{FAKES} fake MACs sent in {sent_in:?}: {offers} offered, inventory {discovered} discovered \
         (cap {cap}), {evicted} evicted"
    );
    assert_eq!(cap, 1024, "the default cap");
    // Datagrams the kernel dropped from a full socket buffer never reach
    // the service (each fake MAC sends one DISCOVER, so offers = distinct
    // MACs it saw); far more than the cap must have.
    assert!(
        offers > 4 * cap,
        "too few DISCOVERs reached the server: {st}"
    );
    assert!(discovered <= cap, "{st}");
    let nodes = std::fs::read_to_string(dirs.path("state/inventory/nodes.json")).unwrap();
    let on_disk = serde_json::from_str::<serde_json::Value>(&nodes).unwrap()["nodes"]
        .as_array()
        .unwrap()
        .len() as u64;
    assert!(on_disk <= cap, "nodes.json holds {on_disk} records");

    // The service is up and answers a real client.
    let (ip, took) = udhcpc(&client);
    eprintln!("after the fake MACs: a real client leased {ip} in {took:?}");
    assert!(took < Duration::from_secs(5));
    let st = read_status(&dirs.path("status/pxe.json"));
    assert_eq!(st["ready"], true);
}

#[test]
fn legit_client_gets_a_lease_within_5s_during_and_after_a_discover_flood() {
    require_root!();
    if Command::new("perfdhcp").arg("-v").output().is_err() {
        eprintln!("skipping: perfdhcp (kea-admin) not installed");
        return;
    }
    let dirs = Dirs::new();
    let mut lan = BridgeLan::new();
    let attacker = lan.host("a", &mac_text(ATTACKER_MAC));
    let client = lan.host("c", &mac_text([0x52, 0x54, 0, 0x6b, 0, 0x33]));
    sh(&attacker, "ip addr add 192.168.100.250/24 dev eth0");
    start_service(&lan.ns, &lan.bridge, settings(&dirs));

    // 2,000 random MACs, DISCOVER only, 2,000/s for 8 s: a bounded flood.
    let log = std::fs::File::create(dirs.path("perfdhcp.log")).unwrap();
    let flood = Command::new("ip")
        .args([
            "netns", "exec", &attacker, "perfdhcp", "-4", "-l", "eth0", "-i",
        ])
        .args(["-R", "2000", "-r", "2000", "-p", "8"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut flood = KillOnDrop(flood);
    std::thread::sleep(Duration::from_secs(2));
    let (during_ip, during) = udhcpc(&client);
    assert!(
        flood.0.try_wait().unwrap().is_none(),
        "the flood was over before the lease: not a measurement during it"
    );
    let st = read_status(&dirs.path("status/pxe.json"));
    let offers_then = counter(&st, "dhcp_offers");
    let _ = flood.0.wait();
    let output = std::fs::read_to_string(dirs.path("perfdhcp.log")).unwrap_or_default();
    sh(&client, "ip link set eth0 address 52:54:00:6b:00:34");
    let (after_ip, after) = udhcpc(&client);
    let st = read_status(&dirs.path("status/pxe.json"));
    eprintln!(
        "DISCOVER flood (perfdhcp -i -R 2000 -r 2000 -p 8): legit lease {during_ip} in {during:?} during \
         (server had offered {offers_then}), {after_ip} in {after:?} after; counters {}; perfdhcp: {}",
        st["counters"],
        output.lines().filter(|l| l.contains("packets") || l.contains("drops")).collect::<Vec<_>>().join("; ")
    );
    assert!(offers_then > 1000, "the flood reached the server: {st}");
    assert!(
        during < Duration::from_secs(5),
        "during the flood: {during:?}"
    );
    assert!(after < Duration::from_secs(5), "after the flood: {after:?}");
    assert!(st["inventory"]["discovered"].as_u64().unwrap() <= 1024);
}
