//! The network service against real kernels and a real DHCP server, in
//! network namespaces this test creates (`kn-<test>-{app,up,node}`):
//!
//! ```text
//!  kn-*-up (dnsmasq DHCP+DNS, HTTP target)   kn-*-app (kindling_net::run)    kn-*-node
//!  up0p 10.99.2.1/24  ── veth ──  up0 (uplink, DHCP)   lan0 192.168.100.1/24 ── veth ── eth0 192.168.100.50
//! ```
//!
//! Needs root (skips otherwise). Everything is removed on drop, also when an
//! assertion fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use kindling_net::dhcp::DhcpTiming;
use kindling_net::nic::NicFilter;
use kindling_net::{LanReady, NetOptions, NetPlan, NetServiceError};
use kindling_site::{NicMatch, SiteConfig, UplinkMode};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

const UPLINK_MAC: &str = "52:54:00:6b:00:01";
const LAN_MAC: &str = "52:54:00:6b:00:02";

fn site() -> SiteConfig {
    let mut site = SiteConfig::default();
    site.site.id = "kn-test".into();
    site.network.uplink.nic = NicMatch::Mac(UPLINK_MAC.parse().unwrap());
    site.network.lan.nic = NicMatch::Mac(LAN_MAC.parse().unwrap());
    site
}

/// `kindling_net::run` on a thread inside the appliance namespace; stopped
/// and joined on drop.
struct Appliance {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    ready: mpsc::Receiver<LanReady>,
    status: PathBuf,
    stack_status: PathBuf,
    _dir: tempfile::TempDir,
}

impl Appliance {
    fn start(ns: &Netns, site: &SiteConfig) -> Self {
        // The service's events, shown with --nocapture.
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("net.json");
        let options = NetOptions {
            status_path: status.clone(),
            nic_filter: NicFilter::AnyEthernet,
            // veths have no sysfs device; never look at the host's sysfs.
            sysfs_net: dir.path().join("no-sysfs"),
            dns_port: 53,
            dhcp_timing: DhcpTiming {
                first_retransmit: Duration::from_millis(500),
                max_retransmit: Duration::from_secs(2),
                no_answer_after: Duration::from_secs(2),
                request_wait: Duration::from_secs(2),
            },
            status_interval: Duration::from_millis(200),
            carrier_wait: Duration::from_secs(3),
            remove_ruleset_on_stop: true,
            stack_status_path: dir.path().join("stack.json"),
            stack_status_owner: None,
            stack_poll: Duration::from_millis(100),
        };
        let plan = NetPlan::from_site(site);
        let (ready_tx, ready) = mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = ns.spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime
                .block_on(kindling_net::run(
                    plan,
                    options,
                    move |r| {
                        let _ = ready_tx.send(r);
                    },
                    async move {
                        let _ = stop_rx.await;
                    },
                ))
                .unwrap();
        });
        Appliance {
            stop: Some(stop),
            thread: Some(thread),
            ready,
            status,
            stack_status: dir.path().join("stack.json"),
            _dir: dir,
        }
    }

    fn wait_ready(&self) -> LanReady {
        self.ready
            .recv_timeout(Duration::from_secs(10))
            .expect("the service never signalled LAN ready")
    }

    fn wait_status(
        &self,
        what: &str,
        secs: u64,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_for(what, Duration::from_secs(secs), || {
            read_status(&self.status).filter(|s| pred(s))
        })
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Lab {
    app: Netns,
    up: Netns,
    node: Netns,
    dir: tempfile::TempDir,
}

/// The three namespaces, wired; upstream 10.99.2.1/24, node 192.168.100.50/24.
fn lab(tag: &str, upstream_cidr: &str) -> Lab {
    let app = Netns::new(tag, "app");
    let up = Netns::new(tag, "up");
    let node = Netns::new(tag, "node");
    veth(&app, "up0", UPLINK_MAC, &up, "up0p");
    veth(&app, "lan0", LAN_MAC, &node, "eth0");
    up.ip(&["addr", "add", upstream_cidr, "dev", "up0p"]);
    node.ip(&["addr", "add", "192.168.100.50/24", "dev", "eth0"]);
    node.ip(&["route", "add", "default", "via", "192.168.100.1"]);
    Lab {
        app,
        up,
        node,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn upstream_dhcp(lab: &Lab) -> ChildGuard {
    dnsmasq(
        &lab.up,
        "up0p",
        "10.99.2.50,10.99.2.60,255.255.255.0,2m",
        &[
            "--dhcp-option=option:router,10.99.2.1",
            "--dhcp-option=option:dns-server,10.99.2.1",
            // dnsmasq's minimum lease is 2 min; short T1/T2 make renewal testable.
            "--dhcp-option=option:T1,3",
            "--dhcp-option=option:T2,6",
            "--address=/kindling-test.example/10.99.2.77",
        ],
        lab.dir.path(),
    )
}

/// One-request HTTP server in the upstream namespace; reports the peer address.
fn http_target(ns: &Netns) -> mpsc::Receiver<SocketAddr> {
    let (tx, rx) = mpsc::channel();
    let (bound_tx, bound_rx) = mpsc::channel();
    ns.spawn(move || {
        let listener = TcpListener::bind("10.99.2.1:8080").unwrap();
        bound_tx.send(()).unwrap();
        if let Ok((mut stream, peer)) = listener.accept() {
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello");
            let _ = tx.send(peer);
        }
    });
    bound_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    rx
}

fn dns_query(name: &str) -> Vec<u8> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    let mut msg = Message::query();
    msg.metadata.id = 4242;
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    msg.to_vec().unwrap()
}

fn has_addr(ns: &Netns, dev: &str, cidr: &str) -> bool {
    ns.ip_output(&["-4", "addr", "show", "dev", dev])
        .contains(cidr)
}

#[test]
fn uplink_lease_renewal_nat_dns_and_inbound_drop() {
    if !running_as_root("uplink_lease_renewal_nat_dns_and_inbound_drop") {
        return;
    }
    let lab = lab("main", "10.99.2.1/24");
    let _dnsmasq = upstream_dhcp(&lab);
    let appliance = Appliance::start(&lab.app, &site());

    let ready = appliance.wait_ready();
    assert!(
        ready.degraded.is_empty(),
        "unexpected degraded: {:?}",
        ready.degraded
    );
    assert!(
        has_addr(&lab.app, "lan0", "192.168.100.1/24"),
        "LAN address set when ready is signalled"
    );

    // Lease, default route and resolvers from dnsmasq.
    let status = appliance.wait_status("uplink lease", 20, |s| !s["lease"].is_null());
    let leased = ipv4(&status["lease"]["address"]).unwrap();
    assert!(
        (Ipv4Addr::new(10, 99, 2, 50)..=Ipv4Addr::new(10, 99, 2, 60)).contains(&leased),
        "{leased}"
    );
    assert!(has_addr(&lab.app, "up0", &format!("{leased}/24")));
    assert!(lab
        .app
        .ip_output(&["route", "show", "default"])
        .contains("via 10.99.2.1 dev up0"));
    assert_eq!(status["dns_upstream"], serde_json::json!(["10.99.2.1"]));

    // Renewal at T1 = 3 s.
    let status = appliance.wait_status("lease renewal", 15, |s| {
        s["lease"]["renewals"].as_u64() >= Some(1)
    });
    assert_eq!(
        ipv4(&status["lease"]["address"]),
        Some(leased),
        "renewal keeps the address"
    );

    // Node → upstream HTTP through NAT: upstream sees the appliance's uplink address.
    let peers = http_target(&lab.up);
    let body = lab.node.run(|| {
        let mut stream =
            TcpStream::connect_timeout(&"10.99.2.1:8080".parse().unwrap(), Duration::from_secs(5))
                .unwrap();
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        body
    });
    assert!(body.ends_with("hello"), "{body}");
    let peer = peers.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(leased),
        "upstream must see the masqueraded source"
    );

    // DNS from the node through the LAN forwarder to dnsmasq upstream.
    let answer = lab.node.run(|| {
        let socket = UdpSocket::bind("192.168.100.50:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
            .send_to(&dns_query("kindling-test.example."), "192.168.100.1:53")
            .unwrap();
        let mut buf = [0u8; 512];
        let len = socket.recv(&mut buf).unwrap();
        hickory_proto::op::Message::from_vec(&buf[..len]).unwrap()
    });
    assert_eq!(answer.metadata.id, 4242);
    let addrs: Vec<String> = answer.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(addrs, vec!["10.99.2.77".to_string()]);

    // A new connection from upstream to the node is dropped.
    let listener = lab
        .node
        .run(|| TcpListener::bind("192.168.100.50:9090").unwrap());
    lab.up.ip(&[
        "route",
        "add",
        "192.168.100.0/24",
        "via",
        &leased.to_string(),
    ]);
    let inbound = lab.up.run(|| {
        TcpStream::connect_timeout(
            &"192.168.100.50:9090".parse().unwrap(),
            Duration::from_millis(1500),
        )
    });
    assert!(inbound.is_err(), "upstream reached the node: {inbound:?}");
    drop(listener);

    // A LAN host spoofing a source outside the LAN subnet is not forwarded.
    lab.node.ip(&["addr", "add", "10.77.0.9/32", "dev", "eth0"]);
    let received = lab.up.run(|| {
        let socket = UdpSocket::bind("10.99.2.1:9999").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        socket
    });
    lab.node.run(|| {
        let socket = UdpSocket::bind("10.77.0.9:0").unwrap();
        for _ in 0..3 {
            socket.send_to(b"spoofed", "10.99.2.1:9999").unwrap();
        }
    });
    // The socket was bound inside the upstream namespace; it can be read anywhere.
    let mut buf = [0u8; 64];
    let got = received.recv_from(&mut buf);
    assert!(
        got.is_err(),
        "a spoofed LAN source reached upstream: {got:?}"
    );

    let status = appliance.wait_status("NAT counters", 5, |s| {
        s["nat_counters"]["forward_uplink_to_lan_dropped"]["packets"].as_u64() >= Some(1)
            && s["nat_counters"]["forward_lan_spoofed_dropped"]["packets"].as_u64() >= Some(3)
    });
    assert!(
        status["nat_counters"]["nat_masquerade"]["packets"].as_u64() >= Some(1),
        "{status:#}"
    );
    assert!(
        status["nat_counters"]["forward_lan_to_uplink"]["packets"].as_u64() >= Some(1),
        "{status:#}"
    );
    assert_eq!(status["state"], "ready", "{status:#}");
    // The packet socket's BPF filter kept HTTP/DNS/NAT traffic away from the
    // DHCP client: after one more renewal (which reads everything queued on
    // the socket since the traffic) nothing it read was anything but DHCP.
    let renewals = status["lease"]["renewals"].as_u64().unwrap();
    let status = appliance.wait_status("a renewal after the traffic", 15, |s| {
        s["lease"]["renewals"].as_u64() > Some(renewals)
    });
    assert_eq!(status["dhcp_client"]["malformed_dropped"], 0, "{status:#}");
}

#[test]
fn no_dhcp_answer_degrades_but_the_lan_comes_up() {
    if !running_as_root("no_dhcp_answer_degrades_but_the_lan_comes_up") {
        return;
    }
    let lab = lab("nodhcp", "10.99.2.1/24");
    let appliance = Appliance::start(&lab.app, &site());
    let ready = appliance.wait_ready();
    assert!(
        ready.elapsed < Duration::from_secs(2),
        "ready must not wait for a lease"
    );
    assert!(has_addr(&lab.app, "lan0", "192.168.100.1/24"));
    let status = appliance.wait_status("no-answer degradation", 10, |s| s["state"] == "degraded");
    let reasons = status["degraded"].to_string();
    assert!(reasons.contains("no DHCP answer"), "{reasons}");
    assert!(
        status["dhcp_client"]["sent"].as_u64() >= Some(2),
        "{status:#}"
    );
    assert!(status["firewall_installed"].as_bool().unwrap());
}

#[test]
fn malformed_dhcp_packets_are_dropped_counted_and_a_lease_still_follows() {
    if !running_as_root("malformed_dhcp_packets_are_dropped_counted_and_a_lease_still_follows") {
        return;
    }
    let lab = lab("malformed", "10.99.2.1/24");
    let appliance = Appliance::start(&lab.app, &site());
    appliance.wait_ready();
    appliance.wait_status("DHCP client running", 5, |s| {
        s["dhcp_client"]["sent"].as_u64() >= Some(1)
    });
    // Broadcast junk to port 68 from the upstream side before any server exists.
    let sent = lab.up.run(|| {
        let socket = UdpSocket::bind("10.99.2.1:67").unwrap();
        socket.set_broadcast(true).unwrap();
        let junk: [&[u8]; 4] = [b"", &[2u8; 10], &[0xffu8; 300], &[2, 1, 6, 0, 1, 2, 3, 4]];
        for payload in junk {
            socket.send_to(payload, "10.99.2.255:68").unwrap();
        }
        junk.len() as u64
    });
    appliance.wait_status("malformed counter", 5, |s| {
        s["dhcp_client"]["malformed_dropped"].as_u64() >= Some(sent)
    });
    let _dnsmasq = upstream_dhcp(&lab);
    let status = appliance.wait_status("lease after junk", 20, |s| !s["lease"].is_null());
    assert!(ipv4(&status["lease"]["address"]).is_some());
}

#[test]
fn one_nic_only_brings_up_the_lan_without_nat() {
    if !running_as_root("one_nic_only_brings_up_the_lan_without_nat") {
        return;
    }
    let app = Netns::new("onenic", "app");
    let node = Netns::new("onenic", "node");
    veth(&app, "lan0", LAN_MAC, &node, "eth0");
    let mut site = site();
    site.network.uplink.nic = NicMatch::Order(2);
    site.network.lan.nic = NicMatch::Order(1);
    let appliance = Appliance::start(&app, &site);
    let ready = appliance.wait_ready();
    let reasons = ready.degraded.join("; ");
    assert!(
        reasons.contains("uplink: no interface matches order 2"),
        "{reasons}"
    );
    assert!(has_addr(&app, "lan0", "192.168.100.1/24"));
    let status = appliance.wait_status("status", 5, |s| s["state"] == "degraded");
    assert!(status["uplink"].is_null());
    assert!(status["firewall_installed"].as_bool().unwrap());
    assert!(
        status["nat_counters"].get("nat_masquerade").is_none(),
        "no NAT without an uplink: {status:#}"
    );
}

#[test]
fn no_nic_at_all_fails_without_ever_being_ready() {
    if !running_as_root("no_nic_at_all_fails_without_ever_being_ready") {
        return;
    }
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let app = Netns::new("nonic", "app");
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("net.json");
    let options = NetOptions {
        status_path: status.clone(),
        nic_filter: NicFilter::AnyEthernet,
        sysfs_net: dir.path().join("no-sysfs"),
        stack_status_path: dir.path().join("stack.json"),
        ..NetOptions::default()
    };
    let plan = NetPlan::from_site(&site());
    let (ready_tx, ready) = mpsc::channel();
    // No shutdown: the service must end by itself, with the error.
    let result = app
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(kindling_net::run(
                plan,
                options,
                move |r| {
                    let _ = ready_tx.send(r);
                },
                std::future::pending(),
            ))
        })
        .join()
        .unwrap();
    let err = result.expect_err("a service with no NIC must fail");
    assert!(matches!(err, NetServiceError::NoNic(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "no network interface found: nothing to bring up"
    );
    assert!(ready.try_recv().is_err(), "readiness was signalled");
    let status = read_status(&status).expect("the status file says why");
    assert_eq!(status["state"], "failed", "{status:#}");
    assert!(status["lan"].is_null() && status["uplink"].is_null());
    assert!(
        status["degraded"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "no network interface found: nothing to bring up"),
        "{status:#}"
    );
}

#[test]
fn static_uplink_inside_the_lan_is_refused_but_the_lan_comes_up() {
    if !running_as_root("static_uplink_inside_the_lan_is_refused_but_the_lan_comes_up") {
        return;
    }
    let lab = lab("static", "10.99.2.1/24");
    let mut site = site();
    site.network.uplink.mode = UplinkMode::Static;
    site.network.uplink.address = Some("192.168.100.9/24".parse().unwrap());
    let appliance = Appliance::start(&lab.app, &site);
    let ready = appliance.wait_ready();
    assert!(
        ready
            .degraded
            .iter()
            .any(|r| r.contains("inside the LAN subnet")),
        "{:?}",
        ready.degraded
    );
    assert!(has_addr(&lab.app, "lan0", "192.168.100.1/24"));
    assert!(
        !has_addr(&lab.app, "up0", "192.168.100.9"),
        "the conflicting address must not be configured"
    );
}

#[test]
fn leased_uplink_overlapping_the_lan_is_not_configured() {
    if !running_as_root("leased_uplink_overlapping_the_lan_is_not_configured") {
        return;
    }
    // The upstream network uses the LAN's own subnet.
    let lab = lab("overlap", "192.168.100.254/24");
    let _dnsmasq = dnsmasq(
        &lab.up,
        "up0p",
        "192.168.100.20,192.168.100.30,255.255.255.0,2m",
        &[],
        lab.dir.path(),
    );
    let appliance = Appliance::start(&lab.app, &site());
    appliance.wait_ready();
    let status = appliance.wait_status("overlap degradation", 20, |s| {
        s["degraded"].to_string().contains("inside the LAN subnet")
    });
    assert!(status["lease"].is_null(), "{status:#}");
    assert!(!lab
        .app
        .ip_output(&["-4", "addr", "show", "dev", "up0"])
        .contains("192.168.100."));
    assert!(has_addr(&lab.app, "lan0", "192.168.100.1/24"));
}

#[test]
fn carrier_loss_degrades_and_carrier_return_reacquires_the_lease() {
    if !running_as_root("carrier_loss_degrades_and_carrier_return_reacquires_the_lease") {
        return;
    }
    let lab = lab("carrier", "10.99.2.1/24");
    let dnsmasq_first = upstream_dhcp(&lab);
    let appliance = Appliance::start(&lab.app, &site());
    appliance.wait_ready();
    let first = appliance.wait_status("first lease", 20, |s| !s["lease"].is_null());
    let first_addr = ipv4(&first["lease"]["address"]).unwrap();

    // The cable is pulled, and plugged into another network (10.99.3.0/24).
    lab.up.ip(&["link", "set", "up0p", "down"]);
    appliance.wait_status("carrier loss", 5, |s| {
        s["degraded"].to_string().contains("carrier lost")
    });
    drop(dnsmasq_first);
    lab.up.ip(&["addr", "flush", "dev", "up0p"]);
    lab.up.ip(&["addr", "add", "10.99.3.1/24", "dev", "up0p"]);
    let _dnsmasq_second = dnsmasq(
        &lab.up,
        "up0p",
        "10.99.3.50,10.99.3.60,255.255.255.0,2m",
        &["--dhcp-option=option:router,10.99.3.1"],
        lab.dir.path(),
    );
    lab.up.ip(&["link", "set", "up0p", "up"]);
    let status = appliance.wait_status("lease on the new network", 20, |s| {
        s["state"] == "ready" && ipv4(&s["lease"]["address"]).is_some_and(|a| a.octets()[2] == 3)
    });
    let second_addr = ipv4(&status["lease"]["address"]).unwrap();
    assert!(has_addr(&lab.app, "up0", &format!("{second_addr}/24")));
    assert!(
        !has_addr(&lab.app, "up0", &format!("{first_addr}/")),
        "old address must go"
    );
    let default = lab.app.ip_output(&["route", "show", "default"]);
    assert!(default.contains("via 10.99.3.1 dev up0"), "{default}");
}

/// Whether this kernel can create 802.1Q devices (the CI VM's kernel may not).
fn kernel_has_vlan(ns: &Netns) -> bool {
    let probe = std::process::Command::new("ip")
        .args([
            "-n", &ns.name, "link", "add", "link", "lan0", "name", "probe.7", "type", "vlan", "id",
            "7",
        ])
        .output()
        .unwrap();
    if probe.status.success() {
        ns.ip(&["link", "del", "probe.7"]);
    }
    probe.status.success()
}

#[test]
fn lan_mtu_static_uplink_and_slaac_settings_are_applied() {
    if !running_as_root("lan_mtu_static_uplink_and_slaac_settings_are_applied") {
        return;
    }
    let lab = lab("mtu", "10.99.2.1/24");
    let mut site = site();
    site.network.lan.mtu = Some(1400);
    site.network.uplink.mode = UplinkMode::Static;
    site.network.uplink.address = Some("10.99.2.2/24".parse().unwrap());
    site.network.uplink.gateway = Some(Ipv4Addr::new(10, 99, 2, 1));
    let appliance = Appliance::start(&lab.app, &site);
    let ready = appliance.wait_ready();
    assert!(ready.degraded.is_empty(), "{:?}", ready.degraded);
    assert!(lab
        .app
        .ip_output(&["link", "show", "lan0"])
        .contains("mtu 1400"));
    let status = appliance.wait_status("uplink configured", 5, |s| {
        s["uplink"]["addresses"]
            .to_string()
            .contains("10.99.2.2/24")
    });
    assert_eq!(status["uplink_mode"], "static");
    let accept_ra = sh_output(&[
        "ip",
        "netns",
        "exec",
        &lab.app.name,
        "cat",
        "/proc/sys/net/ipv6/conf/up0/accept_ra",
    ]);
    assert_eq!(
        accept_ra.trim(),
        "2",
        "SLAAC on the uplink must accept RAs with forwarding on"
    );
    let default = lab.app.ip_output(&["route", "show", "default"]);
    assert!(default.contains("via 10.99.2.1 dev up0"), "{default}");
}

#[test]
fn lan_vlan_device_carries_the_lan_address() {
    if !running_as_root("lan_vlan_device_carries_the_lan_address") {
        return;
    }
    let lab = lab("vlan", "10.99.2.1/24");
    if !kernel_has_vlan(&lab.app) {
        eprintln!("SKIP lan_vlan_device_carries_the_lan_address: this kernel has no 802.1Q support (8021q)");
        return;
    }
    let mut site = site();
    site.network.lan.vlan = Some(100);
    site.network.uplink.mode = UplinkMode::None;
    let appliance = Appliance::start(&lab.app, &site);
    let ready = appliance.wait_ready();
    assert!(ready.degraded.is_empty(), "{:?}", ready.degraded);
    let vlan = lab.app.ip_output(&["-d", "link", "show", "lan0.100"]);
    assert!(vlan.contains("vlan protocol 802.1Q id 100"), "{vlan}");
    assert!(has_addr(&lab.app, "lan0.100", "192.168.100.1/24"));
    assert!(
        !has_addr(&lab.app, "lan0", "192.168.100.1/24"),
        "the address lives on the VLAN device"
    );
    let status = appliance.wait_status("status", 5, |s| s["state"] == "ready");
    assert_eq!(status["lan"]["device"], "lan0.100");
}

#[test]
fn first_nic_with_carrier_skips_a_nic_without_cable() {
    if !running_as_root("first_nic_with_carrier_skips_a_nic_without_cable") {
        return;
    }
    let app = Netns::new("carrierpick", "app");
    let spare = Netns::new("carrierpick", "spare");
    let up = Netns::new("carrierpick", "up");
    // Created first, so it is NIC #1 in order; its peer stays down: no carrier.
    app.ip(&[
        "link",
        "add",
        "spare0",
        "type",
        "veth",
        "peer",
        "name",
        "sparep",
        "netns",
        &spare.name,
    ]);
    veth(&app, "up0", UPLINK_MAC, &up, "up0p");
    let mut site = site();
    site.network.lan.nic = NicMatch::FirstWithCarrier;
    site.network.uplink.mode = UplinkMode::None;
    let appliance = Appliance::start(&app, &site);
    let ready = appliance.wait_ready();
    assert!(ready.degraded.is_empty(), "{:?}", ready.degraded);
    let status = appliance.wait_status("status", 5, |s| !s["lan"].is_null());
    assert_eq!(status["lan"]["nic"], "up0", "{status:#}");
}

#[test]
fn a_restarted_service_takes_over_its_own_configuration() {
    if !running_as_root("a_restarted_service_takes_over_its_own_configuration") {
        return;
    }
    let lab = lab("restart", "10.99.2.1/24");
    let _dnsmasq = upstream_dhcp(&lab);
    let first = Appliance::start(&lab.app, &site());
    first.wait_ready();
    let leased = first.wait_status("first lease", 20, |s| !s["lease"].is_null());
    drop(first);
    // init restarts the service: addresses, routes and the table are still there.
    let second = Appliance::start(&lab.app, &site());
    let ready = second.wait_ready();
    assert!(ready.degraded.is_empty(), "{:?}", ready.degraded);
    let again = second.wait_status("lease after restart", 20, |s| !s["lease"].is_null());
    assert_eq!(again["lease"]["address"], leased["lease"]["address"]);
    let v4 = lab.app.ip_output(&["-4", "addr", "show", "dev", "lan0"]);
    assert_eq!(
        v4.matches("inet ").count(),
        1,
        "one LAN address, not two: {v4}"
    );
}

/// Whether a TCP connection from the node to `addr` is accepted within
/// 1.5 s (a dropped SYN times out, a closed port would be refused).
fn reaches(node: &Netns, addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().unwrap();
    node.run(move || TcpStream::connect_timeout(&addr, Duration::from_millis(1500)).is_ok())
}

#[test]
fn stack_ports_stay_closed_to_the_lan_until_the_stack_is_bootstrapped() {
    if !running_as_root("stack_ports_stay_closed_to_the_lan_until_the_stack_is_bootstrapped") {
        return;
    }
    let app = Netns::new("stackgate", "app");
    let node = Netns::new("stackgate", "node");
    veth(&app, "lan0", LAN_MAC, &node, "eth0");
    node.ip(&["addr", "add", "192.168.100.50/24", "dev", "eth0"]);
    node.ip(&["link", "set", "eth0", "up"]);
    let mut site = site();
    site.network.uplink.nic = NicMatch::Order(2);
    site.network.lan.nic = NicMatch::Order(1);
    site.stack.consul.enabled = true;
    site.stack.vault.enabled = true;
    let appliance = Appliance::start(&app, &site);
    appliance.wait_ready();
    // Stand-ins for Vault's TLS port, Consul's HTTPS and plain HTTP ports
    // on the LAN address, and the API (always open).
    let listeners: Vec<TcpListener> = [
        "192.168.100.1:8200",
        "192.168.100.1:8501",
        "192.168.100.1:8500",
        "192.168.100.1:9000",
    ]
    .into_iter()
    .map(|a| app.run(move || TcpListener::bind(a).unwrap()))
    .collect();
    assert!(
        reaches(&node, "192.168.100.1:9000"),
        "the API is open from the start"
    );
    for port in [8200, 8501, 8500] {
        assert!(
            !reaches(&node, &format!("192.168.100.1:{port}")),
            "{port} reachable from the LAN before the stack's bootstrap"
        );
    }
    // A status that is not `ready` opens nothing.
    std::fs::write(&appliance.stack_status, r#"{"state":"running","steps":[]}"#).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(!reaches(&node, "192.168.100.1:8200"));
    std::fs::write(&appliance.stack_status, r#"{"state":"ready","steps":[]}"#).unwrap();
    wait_for("Vault's TLS port open", Duration::from_secs(5), || {
        reaches(&node, "192.168.100.1:8200").then_some(())
    });
    assert!(
        reaches(&node, "192.168.100.1:8501"),
        "Consul's HTTPS port after bootstrap"
    );
    assert!(
        !reaches(&node, "192.168.100.1:8500"),
        "Consul's plain HTTP port is never for the LAN"
    );
    drop(listeners);
}
