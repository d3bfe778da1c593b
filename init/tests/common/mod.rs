//! Shared helpers: run the real kindling-init binary as PID 1 of a fresh PID +
//! mount + UTS namespace (`unshare`), with a test service table of small
//! `/bin/sh` children, and clean everything up on drop (also on failure).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_kindling-init");

/// True when the namespace tests can run; prints why not otherwise.
pub fn can_run_namespaces(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping {test}: needs root for PID/mount namespaces (CI runs as root)");
        return false;
    }
    if Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("skipping {test}: util-linux unshare not found");
        return false;
    }
    true
}

/// A kindling-init running as PID 1 of its own namespaces.
pub struct NamespacedInit {
    pub dir: PathBuf,
    pub unshare: Child,
    pub init_pid: i32,
    cgroup: String,
}

impl NamespacedInit {
    /// Starts init with `services` (JSON text of the table) and extra init.json keys.
    pub fn start(test: &str, services: &str, extra_config: &str) -> NamespacedInit {
        NamespacedInit::start_in(&std::env::temp_dir(), test, services, extra_config)
    }

    /// Like `start`, with the test directory under `base` (outside /tmp for
    /// tests whose init mounts a fresh /tmp).
    pub fn start_in(base: &Path, test: &str, services: &str, extra_config: &str) -> NamespacedInit {
        let dir = base.join(format!("ki-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let services = services.replace("@DIR@", dir.to_str().unwrap());
        std::fs::write(dir.join("services.json"), services).unwrap();
        let cgroup = format!("ki-{test}-{}", std::process::id());
        let d = dir.display();
        let mut config = serde_json::json!({
            "early_mounts": false, "modules_list": null, "data_label": null,
            "data_mount": format!("{d}/data"), "config_command": null,
            "service_tables": [format!("{d}/services.json")], "log_dir": format!("{d}/log"),
            "control_socket": format!("{d}/init.sock"), "cgroup_root": format!("/sys/fs/cgroup/{cgroup}"),
            "console": null, "services_timeout_ms": 10000, "clock_floor_from": null
        });
        if !extra_config.is_empty() {
            let extra: serde_json::Value = serde_json::from_str(&format!(
                "{{{}}}",
                extra_config.replace("@DIR@", dir.to_str().unwrap())
            ))
            .unwrap();
            for (k, v) in extra.as_object().unwrap() {
                config[k] = v.clone();
            }
        }
        let config = config.to_string();
        std::fs::write(dir.join("init.json"), config).unwrap();
        let console = std::fs::File::create(dir.join("console.log")).unwrap();
        // Own network namespace (loopback only), a private cgroup2 mount over the
        // (v1 or v2) host hierarchy, then exec init so it is PID 1 of the new PID namespace.
        let unshare = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount-proc",
                "--uts",
                "--net",
                "--propagation",
                "private",
                "--",
            ])
            .args([
                "/bin/sh",
                "-c",
                "ip link set lo up; mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null; exec \"$0\"",
                BIN,
            ])
            .env("KINDLING_INIT_CONFIG", dir.join("init.json"))
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .expect("unshare starts");
        let init_pid = wait_for(Duration::from_secs(5), || {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id()))
                    .ok()?;
            children.split_whitespace().next()?.parse().ok()
        })
        .expect("init process appears");
        NamespacedInit {
            dir,
            unshare,
            init_pid,
            cgroup,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn console(&self) -> String {
        std::fs::read_to_string(self.path("console.log")).unwrap_or_default()
    }

    /// Waits until the console has a line containing `needle`.
    pub fn wait_console(&self, needle: &str, timeout: Duration) -> bool {
        wait_for(timeout, || self.console().contains(needle).then_some(())).is_some()
    }

    pub fn client(&self) -> kindling_init_protocol::control::Client {
        kindling_init_protocol::control::Client::new(self.path("init.sock"))
    }

    /// Sends `signal` to init and waits for the namespace to end; returns the
    /// signal that ended it (reboot(2) in a PID namespace: SIGHUP reboot, SIGINT power off).
    pub fn signal_and_wait(
        &mut self,
        signal: nix::sys::signal::Signal,
        timeout: Duration,
    ) -> Option<i32> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.init_pid), signal).unwrap();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.unshare.try_wait().unwrap() {
                use std::os::unix::process::ExitStatusExt;
                return status.signal().or(status.code().map(|c| 1000 + c));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for NamespacedInit {
    fn drop(&mut self) {
        // Killing PID 1 of the namespace kills every process in it.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.init_pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        remove_cgroup_tree(&self.cgroup);
        if std::env::var_os("KI_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Removes `/sys/fs/cgroup/<name>` and its children in the cgroup2 hierarchy,
/// mounted privately for the purpose.
fn remove_cgroup_tree(name: &str) {
    let script = format!(
        "d=$(mktemp -d /tmp/ki-cgclean.XXXXXX) && mount -t cgroup2 none \"$d\" && \
         for i in 1 2 3 4 5 6 7 8 9 10; do \
           rmdir \"$d/{name}\"/* \"$d/{name}\" 2>/dev/null; [ -d \"$d/{name}\" ] || break; sleep 0.1; done; \
         umount \"$d\"; rmdir \"$d\""
    );
    let _ = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            &script,
        ])
        .status();
}

/// Polls `f` every 10 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Lines of a file children append to (empty if absent).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `(ppid, state)` of a host pid from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let mut parts = after.split_whitespace();
    let state = parts.next()?.chars().next()?;
    let ppid = parts.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Host pids with a command-line argument equal to `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|&b| b == 0).any(|arg| arg == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Host pids of zombie children of `parent`.
pub fn zombie_children(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| proc_stat(*pid).is_some_and(|(ppid, state)| ppid == parent && state == 'Z'))
        .collect()
}

/// Waits until a file children write has at least `n` timestamps.
pub fn wait_timestamps(path: &Path, n: usize) -> Vec<f64> {
    wait_for(Duration::from_secs(5), || {
        let t = timestamps(path);
        (t.len() >= n).then_some(t)
    })
    .unwrap_or_else(|| panic!("{} never got {n} timestamps", path.display()))
}

/// Seconds as f64 from `date +%s.%N` lines.
pub fn timestamps(path: &Path) -> Vec<f64> {
    lines(path)
        .iter()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}
