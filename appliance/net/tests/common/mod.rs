//! Shared helpers for the network-namespace tests: namespaces and processes
//! that clean up after themselves (also when a test fails), running code
//! inside a namespace on a dedicated thread, and a root check that skips.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when the test can run; prints why not otherwise.
pub fn running_as_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP {test}: needs root to create network namespaces (CI runs as root)");
    false
}

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn sh_output(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace named `kn-<tag>-<role>`, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str, role: &str) -> Self {
        let name = format!("kn-{tag}-{role}");
        // A leftover from a killed run would make `add` fail.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["ip", "-n", self.name.as_str()];
        full.extend_from_slice(args);
        sh(&full);
    }

    pub fn ip_output(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", self.name.as_str()];
        full.extend_from_slice(args);
        sh_output(&full)
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    /// Runs `f` on a new thread that has entered this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = self.path();
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
    }

    /// Runs `f` inside this namespace and waits for it.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("namespace thread panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter(path: &Path) {
    let file = std::fs::File::open(path).unwrap();
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

/// A veth pair with one end in each namespace, given names and MACs.
pub fn veth(a: &Netns, a_name: &str, a_mac: &str, b: &Netns, b_name: &str) {
    a.ip(&[
        "link", "add", a_name, "address", a_mac, "type", "veth", "peer", "name", b_name, "netns",
        &b.name,
    ]);
    b.ip(&["link", "set", b_name, "up"]);
}

/// A child process killed (by PID) and reaped on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dnsmasq as the upstream DHCP (and DNS) server, inside `ns` only.
pub fn dnsmasq(ns: &Netns, iface: &str, range: &str, extra: &[&str], dir: &Path) -> ChildGuard {
    let lease = dir.join(format!("{}.leases", ns.name));
    let pid = dir.join(format!("{}.pid", ns.name));
    let mut args = vec![
        "netns".to_string(),
        "exec".into(),
        ns.name.clone(),
        "dnsmasq".into(),
        "--no-daemon".into(),
        "--conf-file=/dev/null".into(),
        format!("--interface={iface}"),
        "--bind-interfaces".into(),
        "--user=root".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--no-ping".into(),
        format!("--dhcp-range={range}"),
        format!("--dhcp-leasefile={}", lease.display()),
        format!("--pid-file={}", pid.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let child = Command::new("ip")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    ChildGuard(child)
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The status document, if it exists and parses.
pub fn read_status(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub fn ipv4(value: &serde_json::Value) -> Option<Ipv4Addr> {
    value.as_str()?.parse().ok()
}
