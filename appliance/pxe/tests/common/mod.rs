//! Shared helpers for the PXE integration tests: a network-namespace pair
//! (server + node) joined by a veth, torn down on drop (also when a test
//! fails), and an in-process PXE service running inside the server
//! namespace.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kindling_pxe::service::{self, ServiceOptions};
use kindling_pxe::{PxePaths, PxeSettings};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
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
            };
            f(&format!("{}: profile {name}", dir.display()), ctx);
            count += 1;
        }
    }
    count
}

pub fn lab_site() -> kindling_site::SiteConfig {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../overlays/lab");
    kindling_site::SiteTree::read_dir(&dir)
        .unwrap()
        .to_config("lab")
        .unwrap()
        .config
}

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
