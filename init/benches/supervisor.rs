//! Benchmark: kindling-init's size, memory and supervision overhead, with a
//! baseline measured in the same run. Prints one table.
//!
//! Run: `cargo bench -p kindling-init --bench supervisor`
//!
//! - binary size: the release `kindling-init` (profile strips symbols);
//! - RSS: VmRSS/VmHWM of the release binary (run as an ordinary process, not
//!   PID 1) supervising 8 children once it reports ready;
//! - spawn → ready: the supervisor starting a notify child until its readiness
//!   line arrives, against `std::process::Command` spawning the same shell and
//!   reading the same line from a pipe.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kindling_init::events;
use kindling_init::supervisor::cgroup::Cgroups;
use kindling_init::supervisor::service_logs::{Placement, ServiceLogs};
use kindling_init::supervisor::Supervisor;
use kindling_init_protocol::control::{Client, LogStorage};
use kindling_init_protocol::table::{OutputLogLimits, Readiness, ServiceSpec};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_kindling-init");
const ROUNDS: usize = 60;

#[path = "../../tests/bench-record.rs"]
mod bench_record;
use bench_record::record;

fn main() {
    let dir = std::env::temp_dir().join(format!("ki-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let size = std::fs::metadata(BIN).unwrap().len();
    let (rss, hwm) = rss_with_children(&dir, 8);
    let supervised = supervisor_spawn_to_ready(&dir, ROUNDS);
    let plain = plain_spawn_to_ready(ROUNDS);
    for v in &supervised {
        record("init_spawn_ready", "kindling", *v);
    }
    for v in &plain {
        record("init_spawn_ready", "baseline", *v);
    }
    record("init_rss_kib", "kindling", hwm as f64);

    println!();
    println!("kindling-init benchmark ({ROUNDS} rounds for spawn -> ready; child: /bin/sh printing one line)");
    println!("| metric                               | kindling-init        | baseline                        | target  |");
    println!("|--------------------------------------|----------------------|---------------------------------|---------|");
    println!(
        "| binary size (release, stripped)      | {:>9.0} KiB        | -                               | < 2 MiB |",
        size as f64 / 1024.0
    );
    println!(
        "| RSS with 8 supervised children       | {:>9} KiB (peak {} KiB) | -                     | < 4 MiB |",
        rss, hwm
    );
    println!(
        "| spawn -> ready, median               | {:>9.3} ms         | fork/exec + pipe: {:>7.3} ms    | < 5 ms  |",
        median(&supervised),
        median(&plain)
    );
    println!(
        "| spawn -> ready, p90                  | {:>9.3} ms         | fork/exec + pipe: {:>7.3} ms    |         |",
        percentile(&supervised, 0.9),
        percentile(&plain, 0.9)
    );
    println!("binary: {BIN}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts the release binary with `n` sleeping children and reads its memory once ready.
fn rss_with_children(dir: &Path, n: usize) -> (u64, u64) {
    let services: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "name": format!("child{i}"),
                "argv": ["/bin/sh", "-c", format!("echo child {i} up; echo ready >&3; exec sleep 1000")],
                "readiness": {"kind": "notify"}
            })
        })
        .collect();
    std::fs::write(
        dir.join("services.json"),
        serde_json::json!({ "services": services }).to_string(),
    )
    .unwrap();
    let socket = dir.join("init.sock");
    let config = serde_json::json!({
        "early_mounts": false, "modules_list": null, "data_label": null,
        "data_mount": dir.join("data"), "config_command": null,
        "service_tables": [dir.join("services.json")], "log_dir": dir.join("log"),
        "control_socket": socket, "cgroup_root": dir.join("no-cgroup/kindling"),
        "console": null, "set_hostname": false
    });
    std::fs::write(dir.join("init.json"), config.to_string()).unwrap();
    let console = std::fs::File::create(dir.join("console.log")).unwrap();
    let mut init = Command::new(BIN)
        .env("KINDLING_INIT_CONFIG", dir.join("init.json"))
        .stdout(console.try_clone().unwrap())
        .stderr(console)
        .spawn()
        .unwrap();
    let client = Client::new(&socket);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(list) = client.list() {
            // Every child ready is what is measured; the appliance as a
            // whole stays "degraded" here (no /etc/kindling/version on a
            // build host for the clock floor).
            if list.services.iter().filter(|s| s.ready).count() == n {
                break;
            }
        }
        if Instant::now() >= deadline {
            let _ = init.kill();
            let console = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
            panic!("kindling-init's {n} children were not ready in 20 s; its console:\n{console}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the console/log writes of start-up settle before measuring.
    std::thread::sleep(Duration::from_millis(300));
    let status = std::fs::read_to_string(format!("/proc/{}/status", init.id())).unwrap();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let (rss, hwm) = (kib("VmRSS:"), kib("VmHWM:"));
    kill(Pid::from_raw(init.id() as i32), Signal::SIGTERM).unwrap();
    let _ = init.wait();
    (rss, hwm)
}

fn wait_readable(fds: &[i32], timeout_ms: u16) -> Vec<i32> {
    // SAFETY: the fds belong to the supervisor, which outlives this call.
    let borrowed: Vec<BorrowedFd<'_>> = fds
        .iter()
        .map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) })
        .collect();
    let mut polls: Vec<PollFd<'_>> = borrowed
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let _ = nix::poll::poll(&mut polls, PollTimeout::from(timeout_ms));
    polls
        .iter()
        .zip(fds)
        .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
        .map(|(_, fd)| *fd)
        .collect()
}

/// The library's supervisor (same code as PID 1) starting a notify child: from
/// the start decision (`tick`) to the readiness line being read.
fn supervisor_spawn_to_ready(dir: &Path, rounds: usize) -> Vec<f64> {
    kindling_init::supervisor::spawn::reserve_notify_fd().unwrap();
    // init's own console lines would only clutter the table; the write still happens.
    kindling_init::console::open(Some(Path::new("/dev/null")));
    let (sender, _queue) = events::channel().unwrap();
    let logs = ServiceLogs::new(
        Placement {
            dir: dir.join("log"),
            storage: LogStorage::Ram,
            reason: Some("benchmark".into()),
        },
        &dir.join("log"),
        OutputLogLimits {
            file_bytes: 1 << 20,
            files: 2,
        },
    );
    let mut supervisor = Supervisor::new(Cgroups::disabled(), logs, sender);
    let mut times = Vec::new();
    for round in 0..rounds {
        let name = format!("trivial{round}");
        let mut spec =
            ServiceSpec::new(&name, &["/bin/sh", "-c", "echo ready >&3; exec sleep 1000"]);
        spec.readiness = Readiness::Notify;
        supervisor.add(spec, false);
        let start = Instant::now();
        supervisor.enable(&name);
        supervisor.tick(start);
        let ready = |s: &Supervisor| {
            s.statuses(Instant::now())
                .iter()
                .any(|st| st.name == name && st.ready)
        };
        while !ready(&supervisor) {
            for fd in wait_readable(&supervisor.poll_fds(), 1000) {
                supervisor.on_readable(fd, Instant::now());
            }
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        supervisor.stop(&name, Instant::now());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !supervisor.all_stopped() && Instant::now() < deadline {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    supervisor.on_exit(pid.as_raw(), status, Instant::now());
                }
            }
            Err(_) => break,
        }
    }
    times
}

/// Baseline: fork/exec the same shell and read its line from a pipe.
fn plain_spawn_to_ready(rounds: usize) -> Vec<f64> {
    let mut times = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let mut child = Command::new("/bin/sh")
            .args(["-c", "echo ready; exec sleep 1000"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        let _ = child.kill();
        let _ = child.wait();
        let _ = line;
    }
    times
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[((s.len() - 1) as f64 * p).round() as usize]
}
