//! `/metrics`' DHCP counters against real DHCP traffic: `kindlingd pxe`
//! serves the lab LAN inside a network namespace this test creates
//! (`kdm-*`), busybox udhcpc takes leases from a second namespace, and the
//! API on loopback (fed by the same run directory) must count exactly the
//! offers, ACKs and leases the client took. Skipped with a message when not
//! root (CI runs as root).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::appliance::{apply, start_api, Root, KINDLINGD};
use common::lab_tokens;
use std::collections::BTreeMap;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// Two namespaces joined by a veth: the appliance's LAN side
/// (192.168.100.1/24, as the lab site says) and a node's.
struct Lan {
    server: String,
    node: String,
    server_if: String,
    node_if: String,
    pxe: Option<Child>,
}

fn run(argv: &[&str]) -> Output {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Lan {
    fn new() -> Self {
        let tag = std::process::id() % 100_000;
        let lan = Self {
            server: format!("kdm-{tag}-srv"),
            node: format!("kdm-{tag}-node"),
            server_if: format!("kdm{tag}s"),
            node_if: format!("kdm{tag}n"),
            pxe: None,
        };
        run(&["ip", "netns", "add", &lan.server]);
        run(&["ip", "netns", "add", &lan.node]);
        run(&[
            "ip",
            "link",
            "add",
            &lan.server_if,
            "netns",
            &lan.server,
            "type",
            "veth",
            "peer",
            "name",
            &lan.node_if,
            "netns",
            &lan.node,
        ]);
        lan.exec(
            &lan.server,
            &[
                "ip",
                "addr",
                "add",
                "192.168.100.1/24",
                "dev",
                &lan.server_if,
            ],
        );
        for (ns, dev) in [(&lan.server, &lan.server_if), (&lan.node, &lan.node_if)] {
            lan.exec(ns, &["ip", "link", "set", dev, "up"]);
            lan.exec(ns, &["ip", "link", "set", "lo", "up"]);
        }
        lan
    }

    fn exec(&self, ns: &str, argv: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(argv);
        run(&full)
    }

    /// One DHCP exchange (DISCOVER, OFFER, REQUEST, ACK) as `mac`: the address.
    fn take_lease(&self, mac: &str) -> String {
        self.exec(
            &self.node,
            &["ip", "link", "set", &self.node_if, "address", mac],
        );
        let out = self.exec(
            &self.node,
            &[
                "busybox",
                "udhcpc",
                "-i",
                &self.node_if,
                "-n",
                "-q",
                "-f",
                "-t",
                "4",
                "-T",
                "1",
                "-s",
                "/bin/true",
            ],
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        text.lines()
            .find_map(|l| l.split("lease of ").nth(1)?.split_whitespace().next())
            .map(String::from)
            .unwrap_or_else(|| panic!("no lease for {mac}: {text}"))
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        if let Some(child) = &mut self.pxe {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.server, &self.node] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The `kindling_pxe_dhcp_*` samples and the leases gauge of `/metrics`.
fn dhcp_metrics(api: &common::appliance::Server) -> BTreeMap<String, u64> {
    let reader = api.client_with(Some(lab_tokens().read));
    let reply = reader.request("GET", "/metrics", None).unwrap();
    assert_eq!(reply.status, 200);
    String::from_utf8(reply.body)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("kindling_pxe_dhcp_") || l.starts_with("kindling_pxe_leases"))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn get(m: &BTreeMap<String, u64>, name: &str) -> u64 {
    m.get(name).copied().unwrap_or(0)
}

#[test]
fn dhcp_counters_move_by_exactly_the_leases_taken() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: needs root to create network namespaces (CI runs as root)");
        return;
    }
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    let mut lan = Lan::new();
    let status_file = root.path("run/kindling/status/pxe.json");
    let scratch = tempfile::tempdir().unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &lan.server, KINDLINGD, "pxe"])
        .args(["--interface", &lan.server_if, "--boot-dir", "/usr/lib/ipxe"])
        .arg("--site")
        .arg(root.path("run/kindling/site.json"))
        .arg("--state-dir")
        .arg(root.path("var/lib/kindling"))
        .arg("--status-file")
        .arg(&status_file)
        .arg("--artifacts-dir")
        .arg(scratch.path())
        .arg("--repo-dir")
        .arg(scratch.path())
        .env("KINDLING_STATE_DIR", root.path("var/lib/kindling"))
        .env("KINDLING_RUN_DIR", root.path("run/kindling"))
        .env("KINDLING_SITE_JSON", root.path("run/kindling/site.json"))
        .spawn()
        .unwrap();
    lan.pxe = Some(child);

    // The PXE service reports ready before any client: the baseline.
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = loop {
        let m = dhcp_metrics(&api);
        if m.contains_key("kindling_pxe_dhcp_received_total") || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        before.contains_key("kindling_pxe_dhcp_received_total"),
        "the PXE service never reported: {before:?}"
    );

    let macs = [
        "52:54:00:6b:01:01",
        "52:54:00:6b:01:02",
        "52:54:00:6b:01:03",
    ];
    let leases: Vec<String> = macs.iter().map(|mac| lan.take_lease(mac)).collect();
    let n = macs.len() as u64;
    let distinct: std::collections::BTreeSet<_> = leases.iter().collect();
    assert_eq!(distinct.len(), macs.len(), "{leases:?}");

    // The service rewrites its status about every second: wait for the
    // ACKs, then one more round to be sure nothing else moves.
    let acks = "kindling_pxe_dhcp_acks_total";
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&dhcp_metrics(&api), acks) < get(&before, acks) + n {
        assert!(
            Instant::now() < deadline,
            "ACKs never counted: {:?}",
            dhcp_metrics(&api)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(2500));
    let after = dhcp_metrics(&api);
    for (name, moved) in [
        ("kindling_pxe_dhcp_acks_total", n),
        ("kindling_pxe_dhcp_offers_total", n),
        ("kindling_pxe_dhcp_naks_total", 0),
        ("kindling_pxe_dhcp_declines_total", 0),
        ("kindling_pxe_leases_in_use", n),
    ] {
        assert_eq!(
            get(&after, name),
            get(&before, name) + moved,
            "{name}: before {before:?}, after {after:?}"
        );
    }
    eprintln!("metrics: {n} leases taken ({leases:?}); before {before:?}; after {after:?}");
}
