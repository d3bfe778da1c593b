//! The lab's network without QEMU: namespaces, bridges, the upstream router's
//! dnsmasq and HTTP target. A client namespace joined to the uplink bridge
//! takes a real DHCP lease from the upstream dnsmasq (busybox udhcpc) and
//! fetches the HTTP target, whose log must show the client's address; dropping
//! the network deletes every namespace. Needs root; skips otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kindling_lab::network::{netns_exists, LabNames, LabNetwork};
use kindling_lab::upstream::{Upstream, NAT_PROBE_PATH};
use std::process::Command;

/// Removes the client namespace even when an assertion fails.
struct ClientNs(&'static str);

impl Drop for ClientNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn upstream_router_leases_an_address_and_logs_the_client() {
    if kindling_lab::cmd::require_root("lab network test").is_err() {
        eprintln!(
            "skipped: the lab network test needs root (network namespaces); CI runs it as root"
        );
        return;
    }
    for tool in ["dnsmasq", "busybox", "curl"] {
        if kindling_lab::cmd::require_tool(tool).is_err() {
            eprintln!("skipped: {tool} missing (tests/install-deps installs it)");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let names = LabNames::with_prefix("kl-n");
    let net = LabNetwork::create(&names).unwrap();
    assert!(netns_exists("kl-n-up") && netns_exists("kl-n-lan"));
    let upstream = Upstream::start(&net, dir.path()).unwrap();

    // A client on the uplink segment, in its own namespace, through a tap-like veth.
    let client = ClientNs("kl-n-client");
    ip(&["netns", "add", client.0]);
    ip(&[
        "-n", "kl-n-lan", "link", "add", "cl0", "type", "veth", "peer", "name", "eth0", "netns",
        client.0,
    ]);
    ip(&[
        "-n", "kl-n-lan", "link", "set", "cl0", "master", "br-up", "up",
    ]);
    ip(&["-n", client.0, "link", "set", "lo", "up"]);
    ip(&[
        "-n",
        client.0,
        "link",
        "set",
        "eth0",
        "address",
        "52:54:00:6b:00:99",
        "up",
    ]);

    let script = dir.path().join("udhcpc.sh");
    let lease = dir.path().join("lease");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && ip addr add \"$ip/${{mask:-24}}\" dev \"$interface\" && echo \"$ip $router\" > {}\nexit 0\n",
            lease.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dhcp = Command::new("ip")
        .args([
            "netns", "exec", client.0, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5",
            "-T", "1", "-s",
        ])
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        dhcp.status.success(),
        "udhcpc: {}",
        String::from_utf8_lossy(&dhcp.stderr)
    );
    let got = std::fs::read_to_string(&lease).unwrap();
    let (addr, router) = got.trim().split_once(' ').unwrap();
    assert!(addr.starts_with("10.0.2.1"), "leased {addr}");
    assert_eq!(router, "10.0.2.1");
    assert!(upstream
        .leases()
        .iter()
        .any(|(mac, a)| mac == "52:54:00:6b:00:99" && a == addr));

    let url = format!("http://10.0.2.1{NAT_PROBE_PATH}");
    let (code, body) = kindling_lab::lab::http_in_netns(client.0, "GET", &url, None).unwrap();
    assert_eq!(code, 200, "{body}");
    // python's http.server logs the line after answering; give it a moment.
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients = upstream.http_clients_for(NAT_PROBE_PATH);
        if !clients.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(clients, vec![addr.to_string()]);

    drop(upstream);
    drop(net);
    assert!(
        !netns_exists("kl-n-up") && !netns_exists("kl-n-lan"),
        "namespaces left behind"
    );
}
