//! End-to-end tests of `kindling-pxe` against real clients inside network
//! namespaces this test creates (`kp-*`): busybox udhcpc (DHCP), curl (HTTP,
//! incl. Range), busybox tftp (TFTP), and dnsmasq as a rogue DHCP server.
//! Skipped with a message when not root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use kindling_pxe::PxeSettings;
use std::path::Path;
use std::time::Duration;

const DEV_MAC: &str = "52:54:00:6b:00:10";
const PROD_MAC: &str = "52:54:00:6b:00:20";
const IPXE_DIR: &str = "/usr/lib/ipxe";

fn settings(dirs: &Dirs) -> PxeSettings {
    PxeSettings::from_site(&lab_site(), dirs.paths(Path::new(IPXE_DIR))).unwrap()
}

fn udhcpc(pair: &NetnsPair) -> String {
    let out = pair.exec(
        &pair.node,
        &[
            "busybox",
            "udhcpc",
            "-i",
            &pair.node_if,
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
    assert!(out.status.success(), "udhcpc failed: {text}");
    text.lines()
        .find_map(|l| {
            l.split("lease of ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(String::from)
        })
        .unwrap_or_else(|| panic!("no lease in udhcpc output: {text}"))
}

fn status(dirs: &Dirs) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dirs.path("status/pxe.json")).unwrap()).unwrap()
}

#[test]
fn dhcp_leases_reservations_persistence_and_status() {
    require_root!();
    let dirs = Dirs::new();
    let pair = NetnsPair::new(DEV_MAC);
    start_service(&pair.server, &pair.server_if, settings(&dirs));

    let first = udhcpc(&pair);
    let ip: std::net::Ipv4Addr = first.parse().unwrap();
    assert!(
        (100..=200).contains(&ip.octets()[3]),
        "{ip} outside the lab range"
    );
    assert_eq!(udhcpc(&pair), first, "a client keeps its address");

    // The lease reaches the data partition (write-behind, within ~1 s).
    let leases = eventually(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(dirs.path("state/leases/leases.json")).ok()?;
        text.contains(&first).then_some(text)
    });
    assert!(leases.is_some(), "lease file never showed {first}");

    // Inventory and status.
    let st = eventually(Duration::from_secs(5), || {
        let st = status(&dirs);
        (st["counters"]["dhcp_acks"].as_u64()? >= 2 && st["leases_in_use"].as_u64()? >= 1)
            .then_some(st)
    })
    .unwrap_or_else(|| panic!("status never counted the ACKs: {}", status(&dirs)));
    assert_eq!(st["ready"], true);
    let nodes = std::fs::read_to_string(dirs.path("state/inventory/nodes.json")).unwrap();
    assert!(
        nodes.contains(DEV_MAC) && nodes.contains("discovered"),
        "{nodes}"
    );

    // The reserved node gets its fixed address.
    pair.exec_ok(
        &pair.node,
        &["ip", "link", "set", &pair.node_if, "address", PROD_MAC],
    );
    assert_eq!(udhcpc(&pair), "192.168.100.150");
}

#[test]
fn http_routes_with_curl() {
    require_root!();
    let dirs = Dirs::new();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dirs.path("artifacts/vmlinuz"), &big).unwrap();
    std::fs::write(dirs.path("repo/begin.sh"), "echo repo\n").unwrap();
    let pair = NetnsPair::new(DEV_MAC);
    start_service(&pair.server, &pair.server_if, settings(&dirs));
    // The node's own documents go only to the address holding its lease:
    // take one, as the node would.
    let leased = udhcpc(&pair);
    pair.node_static(&format!("{leased}/24"));

    let curl = |args: &[&str]| -> (String, String) {
        let mut argv = vec![
            "curl",
            "-sS",
            "--path-as-is",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ];
        argv.extend_from_slice(args);
        let out = pair.exec(&pair.node, &argv);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        (body.to_string(), code.to_string())
    };
    let base = "http://192.168.100.1";

    let (script, code) = curl(&[&format!("{base}/boot/{DEV_MAC}.ipxe")]);
    assert_eq!(code, "200");
    assert!(
        script.contains("kernel http://192.168.100.1/artifacts/vmlinuz initrd=lab-node.cpio.zst"),
        "{script}"
    );
    assert!(
        script.contains(&format!("kindling.mac={DEV_MAC}")),
        "{script}"
    );

    // Full file with Content-Length, ranges, unsatisfiable range.
    let head = pair.exec_ok(
        &pair.node,
        &["curl", "-sSI", &format!("{base}/artifacts/vmlinuz")],
    );
    let head = String::from_utf8_lossy(&head.stdout).to_lowercase();
    assert!(head.contains("content-length: 300000"), "{head}");
    assert!(!head.contains("chunked"), "{head}");
    let out = pair.exec_ok(
        &pair.node,
        &[
            "curl",
            "-sS",
            "-r",
            "1000-1009",
            &format!("{base}/artifacts/vmlinuz"),
        ],
    );
    assert_eq!(out.stdout, big[1000..1010].to_vec());
    let (_, code) = curl(&["-r", "999999-", &format!("{base}/artifacts/vmlinuz")]);
    assert_eq!(code, "416");
    let whole = pair.exec_ok(
        &pair.node,
        &["curl", "-sS", &format!("{base}/artifacts/vmlinuz")],
    );
    assert_eq!(whole.stdout.len(), big.len());
    assert!(whole.stdout == big);
    // The bytes sent are counted (`/metrics`: kindling_pxe_http_sent_bytes_total):
    // at least the whole file and the ten-byte range.
    let sent = eventually(Duration::from_secs(4), || {
        let n = status(&dirs)["counters"]["http_sent_bytes"].as_u64()?;
        (n >= 300_010).then_some(n)
    });
    assert!(sent.is_some(), "http_sent_bytes: {}", status(&dirs));

    // Bad input is answered, not fatal.
    assert_eq!(
        curl(&[&format!("{base}/artifacts/../../etc/passwd")]).1,
        "400"
    );
    assert_eq!(curl(&[&format!("{base}/artifacts/%2e%2e/x")]).1, "400");
    assert_eq!(curl(&[&format!("{base}/boot/zz:zz.ipxe")]).1, "400");
    assert_eq!(curl(&[&format!("{base}/artifacts/missing")]).1, "404");
    assert_eq!(curl(&[&format!("{base}/nope")]).1, "404");

    // Unknown MAC gets the default profile (lab: default_profile = dev).
    let (script, code) = curl(&[&format!("{base}/boot/02:00:00:00:00:99.ipxe")]);
    assert_eq!(code, "200");
    assert!(script.contains("kindling.profile=dev"), "{script}");

    // NoCloud, begin.sh, repo tarball, preseed.
    let (ud, code) = curl(&[&format!("{base}/nocloud/{DEV_MAC}/user-data")]);
    assert_eq!(code, "200");
    assert!(
        ud.starts_with("#cloud-config\nhostname: \"node-dev-1\""),
        "{ud}"
    );
    assert_eq!(
        curl(&[&format!("{base}/nocloud/{DEV_MAC}/meta-data")]).1,
        "200"
    );
    assert!(curl(&[&format!("{base}/begin.sh")])
        .0
        .starts_with("#!/bin/sh"));
    let tar = pair.exec_ok(
        &pair.node,
        &[
            "sh",
            "-c",
            &format!("curl -sS {base}/repo.tar.gz | tar -tzf -"),
        ],
    );
    assert!(String::from_utf8_lossy(&tar.stdout).contains("begin.sh"));

    // Phone home moves the inventory state.
    let (reply, code) = curl(&[
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"event":"installed"}"#,
        &format!("{base}/nodes/{DEV_MAC}/events"),
    ]);
    assert_eq!(code, "200", "{reply}");
    assert!(reply.contains("installed"), "{reply}");
    assert_eq!(
        curl(&[
            "--data",
            "not json",
            &format!("{base}/nodes/{DEV_MAC}/events")
        ])
        .1,
        "400"
    );
    assert_eq!(
        curl(&[
            "--data",
            r#"{"event":"exploded"}"#,
            &format!("{base}/nodes/{DEV_MAC}/events")
        ])
        .1,
        "400"
    );

    // Another address on the same wire, with the same MAC but no lease,
    // gets none of the node's documents and cannot post its events.
    pair.node_static("192.168.100.50/24");
    let hostile = ["--interface", "192.168.100.50"];
    for path in [
        "nocloud/{MAC}/user-data",
        "nocloud/{MAC}/meta-data",
        "preseed/{MAC}.cfg",
    ] {
        let url = format!("{base}/{}", path.replace("{MAC}", DEV_MAC));
        let (body, code) = curl(&[hostile[0], hostile[1], &url]);
        assert_eq!(code, "403", "{url}: {body}");
    }
    let (body, code) = curl(&[
        hostile[0],
        hostile[1],
        "--data",
        r#"{"event":"joined"}"#,
        &format!("{base}/nodes/{DEV_MAC}/events"),
    ]);
    assert_eq!(code, "403", "{body}");
    assert_eq!(
        curl(&[
            hostile[0],
            hostile[1],
            &format!("{base}/boot/{DEV_MAC}.ipxe")
        ])
        .1,
        "200",
        "boot scripts stay anonymous"
    );
    let node = inventory_node_eventually(&dirs, DEV_MAC, "installed");
    assert_eq!(
        node["state"], "installed",
        "the hostile host changed nothing: {node}"
    );
}

/// `mac`'s inventory record once it reached `state` on disk (write-behind).
fn inventory_node_eventually(dirs: &Dirs, mac: &str, state: &str) -> serde_json::Value {
    eventually(Duration::from_secs(5), || {
        let text = std::fs::read(dirs.path("state/inventory/nodes.json")).ok()?;
        let nodes: serde_json::Value = serde_json::from_slice(&text).ok()?;
        let node = nodes["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["mac"] == mac)?;
        (node["state"] == state).then(|| node.clone())
    })
    .unwrap_or_else(|| inventory_node(dirs, mac))
}

#[test]
fn tftp_serves_ipxe_and_refuses_traversal() {
    require_root!();
    let dirs = Dirs::new();
    let pair = NetnsPair::new(DEV_MAC);
    start_service(&pair.server, &pair.server_if, settings(&dirs));
    pair.node_static("192.168.100.51/24");
    let local = dirs.path("got.kpxe");
    let local_s = local.to_string_lossy().to_string();
    pair.exec_ok(
        &pair.node,
        &[
            "busybox",
            "tftp",
            "-g",
            "-b",
            "1428",
            "-r",
            "undionly.kpxe",
            "-l",
            &local_s,
            "192.168.100.1",
        ],
    );
    assert_eq!(
        std::fs::read(&local).unwrap(),
        std::fs::read(Path::new(IPXE_DIR).join("undionly.kpxe")).unwrap()
    );
    let bad = pair.exec(
        &pair.node,
        &[
            "busybox",
            "tftp",
            "-g",
            "-r",
            "../../etc/passwd",
            "-l",
            "/dev/null",
            "192.168.100.1",
        ],
    );
    assert!(!bad.status.success(), "traversal must fail");
    let put = pair.exec(
        &pair.node,
        &[
            "busybox",
            "tftp",
            "-p",
            "-r",
            "x",
            "-l",
            &local_s,
            "192.168.100.1",
        ],
    );
    assert!(!put.status.success(), "writes must be refused");
    let st = eventually(Duration::from_secs(4), || {
        let st = status(&dirs);
        (st["counters"]["tftp_refused"].as_u64()? >= 2).then_some(st)
    });
    assert!(st.is_some(), "refusals counted: {}", status(&dirs));
    // One whole transfer: the bytes counted are the file's, exactly.
    let size = std::fs::metadata(Path::new(IPXE_DIR).join("undionly.kpxe"))
        .unwrap()
        .len();
    let sent = eventually(Duration::from_secs(4), || {
        let n = status(&dirs)["counters"]["tftp_sent_bytes"].as_u64()?;
        (n == size).then_some(n)
    });
    assert!(
        sent.is_some(),
        "tftp_sent_bytes != {size}: {}",
        status(&dirs)
    );
}

#[test]
fn rogue_dhcp_server_is_reported() {
    require_root!();
    let dirs = Dirs::new();
    let mut pair = NetnsPair::new(DEV_MAC);
    pair.node_static("192.168.100.254/24");
    let node_if = pair.node_if.clone();
    let node = pair.node.clone();
    let pidfile = dirs.path("dnsmasq.pid");
    pair.spawn(
        &node,
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--no-daemon",
            "--port=0",
            "--no-resolv",
            "--no-hosts",
            &format!("--interface={node_if}"),
            "--bind-interfaces",
            "--dhcp-range=192.168.100.20,192.168.100.30,1h",
            &format!("--pid-file={}", pidfile.display()),
            &format!("--dhcp-leasefile={}", dirs.path("dnsmasq.leases").display()),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    start_service(&pair.server, &pair.server_if, settings(&dirs));
    let st = eventually(Duration::from_secs(8), || {
        let st = status(&dirs);
        let rogues = st["rogue_dhcp_servers"].as_array()?.clone();
        (!rogues.is_empty()).then_some(rogues)
    })
    .unwrap_or_else(|| panic!("rogue server not reported: {}", status(&dirs)));
    assert_eq!(st[0]["server_id"], "192.168.100.254");
}
