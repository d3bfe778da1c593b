//! Shared helpers for the PXE integration tests: a network-namespace pair
//! (server + node) joined by a veth, a namespace with a bridge and a tap for
//! a QEMU node, both torn down on drop (also when a test fails), the QEMU
//! node command line, and an in-process PXE service running inside a
//! namespace.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kindling_pxe::enroll::NoEnrollment;
use kindling_pxe::holder::FixedHolders;
use kindling_pxe::http::connection::Limits;
use kindling_pxe::http::handler::{NodeGate, PxeHttp};
use kindling_pxe::service::{self, ServiceOptions};
use kindling_pxe::status::Stats;
use kindling_pxe::{Inventory, PxePaths, PxeSettings};
use kindling_site::MacAddr;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Skips the calling test (returns) when not root: netns needs CAP_SYS_ADMIN.
#[macro_export]
macro_rules! require_root {
    () => {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: needs root to create network namespaces (CI runs as root)");
            return;
        }
    };
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kp-<pid>-<n>-srv` and `…-node`, veth `kp<n>s` (192.168.100.1/24) ↔ `kp<n>n`.
pub struct NetnsPair {
    pub server: String,
    pub node: String,
    pub server_if: String,
    pub node_if: String,
    children: Vec<Child>,
}

impl NetnsPair {
    pub fn new(node_mac: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}{}", std::process::id() % 100000, n);
        let pair = Self {
            server: format!("kp-{tag}-srv"),
            node: format!("kp-{tag}-node"),
            server_if: format!("kp{tag}s"),
            node_if: format!("kp{tag}n"),
            children: Vec::new(),
        };
        ip(&["netns", "add", &pair.server]);
        ip(&["netns", "add", &pair.node]);
        ip(&[
            "link",
            "add",
            &pair.server_if,
            "netns",
            &pair.server,
            "type",
            "veth",
            "peer",
            "name",
            &pair.node_if,
            "netns",
            &pair.node,
        ]);
        pair.exec_ok(
            &pair.server,
            &[
                "ip",
                "addr",
                "add",
                "192.168.100.1/24",
                "dev",
                &pair.server_if,
            ],
        );
        pair.exec_ok(&pair.server, &["ip", "link", "set", &pair.server_if, "up"]);
        pair.exec_ok(&pair.server, &["ip", "link", "set", "lo", "up"]);
        pair.exec_ok(
            &pair.node,
            &["ip", "link", "set", &pair.node_if, "address", node_mac],
        );
        pair.exec_ok(&pair.node, &["ip", "link", "set", &pair.node_if, "up"]);
        pair.exec_ok(&pair.node, &["ip", "link", "set", "lo", "up"]);
        pair
    }

    pub fn exec(&self, ns: &str, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .output()
            .expect("ip netns exec")
    }

    pub fn exec_ok(&self, ns: &str, argv: &[&str]) -> Output {
        let out = self.exec(ns, argv);
        assert!(
            out.status.success(),
            "{argv:?} in {ns}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A background process in `ns`, killed on drop.
    pub fn spawn(&mut self, ns: &str, argv: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .spawn()
            .expect("spawn");
        self.children.push(child);
    }

    /// Gives the node a static address (for HTTP/TFTP tests).
    pub fn node_static(&self, addr: &str) {
        self.exec_ok(
            &self.node,
            &["ip", "addr", "add", addr, "dev", &self.node_if],
        );
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.server])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.node])
            .status();
    }
}

/// Calls `f` with a label and a render context (node `52:54:00:6b:00:10`,
/// hostname `node-1`) for every profile of every overlay shipped in
/// `overlays/`; returns how many.
pub fn each_shipped_profile(
    mut f: impl FnMut(&str, kindling_pxe::render::NodeContext<'_>),
) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../overlays");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("site.toml").is_file())
        .collect();
    dirs.sort();
    let mut count = 0;
    for dir in dirs {
        let site = kindling_site::SiteTree::read_dir(&dir)
            .unwrap()
            .to_config("test")
            .unwrap()
            .config;
        for (name, profile) in &site.profiles {
            let ctx = kindling_pxe::render::NodeContext {
                mac: kindling_pxe::MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]),
                hostname: "node-1".into(),
                domain: site.site.domain.clone(),
                profile_name: name.as_str(),
                profile,
                base_url: "http://192.168.100.1/",
                enrollment: None,
                agent_sha256: Some("5e".repeat(32)),
                // Rendered only for a node with a grant.
                stack: Some(kindling_pxe::settings::NodeStack {
                    datacenter: site.stack.datacenter.clone(),
                    consul_join: vec!["192.168.100.1:8301".parse().unwrap()],
                    nomad_servers: vec!["192.168.100.1:4647".parse().unwrap()],
                }),
                client_binaries: [
                    ("consul".to_string(), "c0".repeat(32)),
                    ("nomad".to_string(), "70".repeat(32)),
                ]
                .into(),
            };
            f(&format!("{}: profile {name}", dir.display()), ctx);
            count += 1;
        }
    }
    count
}

/// The service's inventory record of `mac` (`state/inventory/nodes.json`).
pub fn inventory_node(dirs: &Dirs, mac: &str) -> serde_json::Value {
    let path = dirs.path("state/inventory/nodes.json");
    let nodes: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    nodes["nodes"]
        .as_array()
        .and_then(|all| all.iter().find(|n| n["mac"] == mac))
        .cloned()
        .unwrap_or_else(|| panic!("{mac} not in the inventory: {nodes}"))
}

// Not every test binary that includes this module reads the lab site.
#[allow(unused_imports)]
pub use kindling_inventory::testing::lab_site;

pub struct Dirs {
    pub root: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        for d in ["state", "artifacts", "repo", "boot"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        Self { root }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p)
    }
    pub fn paths(&self, boot_dir: &Path) -> PxePaths {
        PxePaths {
            boot_dir: boot_dir.into(),
            artifact_dirs: vec![self.path("artifacts")],
            state_dir: self.path("state"),
            repo_dir: Some(self.path("repo")),
            status_file: self.path("status/pxe.json"),
            node_agent: self.path("node/kindling-node"),
            consul_binary: self.path("node/consul"),
            nomad_binary: self.path("node/nomad"),
        }
    }
}

/// Starts the PXE service on a thread that entered `netns` first, so every
/// socket it opens lives there. Returns once it reported ready.
pub fn start_service(netns: &str, interface: &str, settings: PxeSettings) {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns_path = format!("/var/run/netns/{netns}");
    let interface = interface.to_string();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&ns_path).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let options = ServiceOptions {
            interface: Some(interface),
            ..ServiceOptions::default()
        };
        let ready_tx = tx.clone();
        let result = service::run(settings, options, move || {
            let _ = ready_tx.send(Ok(()));
        });
        let _ = tx.send(Err(format!("service ended: {result:?}")));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}"),
        Err(e) => panic!("service not ready in 20 s: {e}"),
    }
}

/// Polls `f` until it returns Some, for up to `limit`.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process (a node VM, dnsmasq) killed and reaped on drop, so a
/// failing test leaves nothing running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `sh -ec cmd` inside network namespace `ns`; panics if it fails.
pub fn sh(ns: &str, cmd: &str) {
    let ok = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-ec", cmd])
        .status()
        .unwrap()
        .success();
    assert!(ok, "{cmd}");
}

/// Runs `f` on a thread that entered network namespace `ns` first (sockets
/// it opens live there) and returns its result.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns_path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&ns_path).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// A namespace `kp-q<tag>` for QEMU node tests: bridge `kpqbr<tag>`
/// (192.168.100.1/24, where the PXE service listens) with one tap
/// `kpqtap<tag>` for the node VM; nothing on the host network. Deleted on
/// drop (a VM must be dropped first: its tap lives in the namespace).
pub struct BridgeLan {
    pub ns: String,
    pub bridge: String,
    pub tap: String,
    /// Namespaces of LAN hosts joined by `host` (deleted on drop).
    hosts: Vec<String>,
}

impl BridgeLan {
    pub fn new() -> Self {
        // Unique per test: the tests of one binary run in parallel threads.
        static NEXT_LAN: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{}{}",
            std::process::id() % 10000,
            NEXT_LAN.fetch_add(1, Ordering::SeqCst)
        );
        let lan = Self {
            ns: format!("kp-q{tag}"),
            bridge: format!("kpqbr{tag}"),
            tap: format!("kpqtap{tag}"),
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &lan.ns]);
        let (br, tap) = (&lan.bridge, &lan.tap);
        sh(&lan.ns, &format!(
            "ip link set lo up; ip link add {br} type bridge; sysctl -qw net.ipv6.conf.{br}.accept_dad=0; \
             ip addr add 192.168.100.1/24 dev {br}; ip tuntap add {tap} mode tap; ip link set {tap} master {br}; \
             ip link set {tap} up; ip link set {br} up"
        ));
        lan
    }
}

impl BridgeLan {
    /// Another host on the LAN: namespace `<ns>-<name>` whose `eth0` (MAC
    /// `mac`, up, no address) is a veth port of the bridge. Returns the
    /// namespace's name.
    pub fn host(&mut self, name: &str, mac: &str) -> String {
        let ns = format!("{}-{name}", self.ns);
        let port = format!("{}{name}", self.bridge.replace("kpqbr", "kpq"));
        ip(&["netns", "add", &ns]);
        self.hosts.push(ns.clone());
        ip(&[
            "link", "add", &port, "netns", &self.ns, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ]);
        sh(
            &self.ns,
            &format!("ip link set {port} master {} up", self.bridge),
        );
        sh(
            &ns,
            &format!("ip link set lo up; ip link set eth0 address {mac} up"),
        );
        ns
    }
}

impl Drop for BridgeLan {
    fn drop(&mut self) {
        for ns in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// True when QEMU and the iPXE NIC ROMs are installed; otherwise says the
/// test is skipped.
pub fn qemu_available() -> bool {
    let ok = Path::new("/usr/lib/ipxe/qemu/efi-e1000.rom").exists()
        && Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_ok();
    if !ok {
        eprintln!("skipping: qemu-system-x86 / ipxe-qemu not installed");
    }
    ok
}

/// A node VM on `lan`'s tap (netdev `n0`), run in its namespace: TCG,
/// network boot first, no reboot (a reboot ends the VM), serial console to
/// `serial`, no monitor, no display. The caller adds the NIC
/// (`-device …,netdev=n0,mac=…`) and any firmware drives.
pub fn node_vm_command(lan: &BridgeLan, memory_mib: u32, serial: &Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lan.ns, "qemu-system-x86_64"])
        .args(["-machine", "pc,accel=tcg", "-m", &memory_mib.to_string()])
        .args(["-nographic", "-no-reboot", "-boot", "n", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args([
            "-netdev",
            &format!("tap,id=n0,ifname={},script=no,downscript=no", lan.tap),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The service's `status/pxe.json`; `Null` while it is absent or half
/// written.
pub fn read_status(path: &Path) -> serde_json::Value {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}
pub mod tftp_client;

/// The lab site's PXE HTTP service (no enrollment) on 127.0.0.1 over
/// `dirs`, with `holders` holding leases: its address and counters.
pub fn serve_lab_http(
    dirs: &Dirs,
    holders: Vec<(MacAddr, Ipv4Addr)>,
    max_connections: usize,
    limits: Limits,
) -> (SocketAddr, Arc<Stats>) {
    serve_lab_http_paths(
        dirs.paths(&dirs.path("boot")),
        holders,
        max_connections,
        limits,
    )
}

/// `serve_lab_http` over the given paths.
pub fn serve_lab_http_paths(
    paths: PxePaths,
    holders: Vec<(MacAddr, Ipv4Addr)>,
    max_connections: usize,
    limits: Limits,
) -> (SocketAddr, Arc<Stats>) {
    let settings = Arc::new(PxeSettings::from_site(&lab_site(), paths).unwrap());
    let (inventory, problem) =
        Inventory::open(&settings.paths.state_dir, settings.profile_policy());
    assert!(problem.is_none(), "{problem:?}");
    let stats = Arc::new(Stats::default());
    let inventory = Arc::new(inventory);
    let grants = service::grant_keeper(
        &settings,
        inventory.clone(),
        Arc::new(NoEnrollment),
        stats.clone(),
    );
    let gate = NodeGate {
        holders: Arc::new(FixedHolders(holders)),
        grants: Arc::new(grants),
    };
    let http = Arc::new(PxeHttp::new(settings, inventory, gate, stats.clone()));
    let listener = kindling_pxe::http::listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let e = kindling_pxe::http::listener::serve(listener, http, max_connections, limits);
        panic!("listener ended: {e}");
    });
    (addr, stats)
}

/// A whole HTTP/1.0 reply as read to the end: (status, head, body bytes).
pub fn split_reply(raw: &[u8]) -> (u16, String, Vec<u8>) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}
