//! Stack bootstrap benchmark (run by `appliance/stack/bench.sh`): on loopback
//! with the real `bao` and `consul` and the Nomad test double, measures
//! - cold: empty data dirs → `stack: ready`, each step's duration;
//! - warm: every service killed and restarted (a reboot) → unseal + checks;
//! - baseline, in the same run: the stock CLIs doing the bare minimum by
//!   hand (`bao operator init`, `bao operator unseal` ×threshold, `consul acl
//!   bootstrap` with its legacy-mode retry) on fresh data dirs;
//! - baseline for the whole cold start: the same `consul` and `bao` binaries
//!   started bare in dev mode (`consul agent -dev`, `bao server -dev`), each
//!   from spawn to ready (a leader; an unsealed, active Vault), against
//!   kindling's process starts plus its cold bootstrap.
//!
//! Process start to API readiness is reported separately: it is the same for
//! kindling and the baseline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use kindling_stack::bootstrap;
use std::process::Command;
use std::time::{Duration, Instant};

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Starts Consul, then Vault, then Nomad when the site enables it (the
/// CLI baseline's site does not: no `nomad.d` is rendered for it).
fn start_all(lab: &mut Lab) -> (u128, u128) {
    let t = Instant::now();
    lab.start("consul");
    let consul = ms(t.elapsed());
    let t = Instant::now();
    lab.start("vault");
    let vault = ms(t.elapsed());
    if lab.site.stack.nomad.enabled {
        lab.start("nomad");
    }
    (consul, vault)
}

fn print_run(label: &str, status: &kindling_stack::status::StackStatus, wall: u128) {
    for s in &status.steps {
        println!(
            "| {label:<5} | {:<18} | {:<12} | {:>7} |",
            s.name,
            serde_json::to_value(s.state)
                .unwrap()
                .as_str()
                .unwrap_or("?")
                .to_string(),
            s.duration_ms
        );
    }
    println!(
        "| {label:<5} | {:<18} | {:<12} | {:>7} |",
        "TOTAL to ready", "", wall
    );
}

fn baseline(tools: &std::path::Path) -> (u128, u128, u128, u128) {
    // Fresh data dirs and ports, same rendered configs as kindling's.
    let identity = new_identity();
    let mut lab = Lab::new(tools, site("manual", false, &identity));
    let (_c, _v) = start_all(&mut lab);
    let vault_addr = lab.layout.vault_local_url();
    let bao = |args: &[&str]| {
        let out = Command::new(tools.join("bao"))
            .args(args)
            .env("BAO_ADDR", &vault_addr)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bao {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let t = Instant::now();
    let init: serde_json::Value = serde_json::from_slice(&bao(&[
        "operator",
        "init",
        "-key-shares=3",
        "-key-threshold=2",
        "-format=json",
    ]))
    .unwrap();
    let init_ms = ms(t.elapsed());
    let t = Instant::now();
    for k in init["unseal_keys_b64"].as_array().unwrap().iter().take(2) {
        bao(&["operator", "unseal", k.as_str().unwrap()]);
    }
    let unseal_ms = ms(t.elapsed());
    let t = Instant::now();
    loop {
        let out = Command::new(tools.join("consul"))
            .args(["acl", "bootstrap"])
            .env("CONSUL_HTTP_ADDR", lab.layout.consul_local_url())
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "consul acl bootstrap: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let acl_ms = ms(t.elapsed());
    (init_ms, unseal_ms, acl_ms, init_ms + unseal_ms + acl_ms)
}

#[path = "../../../tests/bench-record.rs"]
mod bench_record;
use bench_record::record;

/// Status code and body of a plain HTTP GET on loopback.
fn http_get(authority: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(authority).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// Spawns `argv` and polls `ready` every 100 ms (as the lab polls
/// kindling's services); returns the milliseconds to ready and the child.
fn start_until(argv: &[String], mut ready: impl FnMut() -> bool) -> (u128, std::process::Child) {
    let t = Instant::now();
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !ready() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{argv:?} not ready in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (ms(t.elapsed()), child)
}

/// Consul and OpenBao started bare in dev mode, one after the other (as the
/// lab starts kindling's): milliseconds from the first spawn to both ready.
fn dev_mode_start(tools: &std::path::Path) -> u128 {
    let dir = tempfile::tempdir().unwrap();
    let port = || free_port().to_string();
    let consul_http = format!("127.0.0.1:{}", port());
    let consul: Vec<String> = [
        tools.join("consul").to_string_lossy().to_string(),
        "agent".into(),
        "-dev".into(),
        "-bind=127.0.0.1".into(),
        "-client=127.0.0.1".into(),
        format!("-http-port={}", consul_http.rsplit(':').next().unwrap()),
        "-dns-port=-1".into(),
        "-grpc-port=-1".into(),
        format!("-serf-lan-port={}", port()),
        format!("-serf-wan-port={}", port()),
        format!("-server-port={}", port()),
        format!("-data-dir={}", dir.path().join("consul").display()),
    ]
    .into();
    let bao_addr = format!("127.0.0.1:{}", port());
    let bao: Vec<String> = [
        tools.join("bao").to_string_lossy().to_string(),
        "server".into(),
        "-dev".into(),
        format!("-dev-listen-address={bao_addr}"),
        "-dev-root-token-id=bench".into(),
    ]
    .into();
    let (c_ms, mut c) = start_until(
        &consul,
        || matches!(http_get(&consul_http, "/v1/status/leader"), Some((200, b)) if b.trim().len() > 2),
    );
    let (b_ms, mut b) = start_until(&bao, || {
        matches!(http_get(&bao_addr, "/v1/sys/health"), Some((200, _)))
    });
    for child in [&mut c, &mut b] {
        let _ = child.kill();
        let _ = child.wait();
    }
    c_ms + b_ms
}

fn main() {
    let Some(tools) = tools() else {
        std::process::exit(2)
    };
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let rt = rt();
    println!("| run   | step               | state        |      ms |");
    println!("|-------|--------------------|--------------|---------|");
    let mut cold_totals = Vec::new();
    let mut warm_totals = Vec::new();
    let mut starts = Vec::new();
    let mut dev_totals = Vec::new();
    for _ in 0..rounds {
        let identity = new_identity();
        let mut lab = Lab::new(&tools, site("local", true, &identity));
        let mut opts = lab.options();
        opts.console = false;
        starts.push(start_all(&mut lab));
        let t = Instant::now();
        let cold = rt.block_on(bootstrap::run(opts.clone())).unwrap();
        let cold_ms = ms(t.elapsed());
        print_run("cold", &cold, cold_ms);
        let (consul_ms, vault_ms) = *starts.last().unwrap();
        record(
            "stack_cold_start",
            "kindling",
            consul_ms + vault_ms + cold_ms,
        );
        cold_totals.push(cold_ms);

        // Warm reboot: everything killed -9 and started again.
        for name in ["vault", "consul", "nomad"] {
            lab.kill9(name);
        }
        starts.push(start_all(&mut lab));
        let t = Instant::now();
        let warm = rt.block_on(bootstrap::run(opts)).unwrap();
        let warm_ms = ms(t.elapsed());
        print_run("warm", &warm, warm_ms);
        let (consul_ms, vault_ms) = *starts.last().unwrap();
        record(
            "stack_warm_start",
            "kindling",
            consul_ms + vault_ms + warm_ms,
        );
        let dev_ms = dev_mode_start(&tools);
        record("stack_cold_start", "baseline", dev_ms);
        record("stack_warm_start", "baseline", dev_ms);
        dev_totals.push(dev_ms);
        warm_totals.push(warm_ms);
    }
    let (init_ms, unseal_ms, acl_ms, base_total) = baseline(&tools);
    println!("| base  | bao operator init  |              | {init_ms:>7} |");
    println!("| base  | bao operator unseal x2 |          | {unseal_ms:>7} |");
    println!("| base  | consul acl bootstrap |            | {acl_ms:>7} |");
    println!("| base  | TOTAL (init+unseal+acl only) |    | {base_total:>7} |");
    let median = |v: &mut Vec<u128>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let consul_start = starts.iter().map(|s| s.0).max().unwrap_or(0);
    let vault_start = starts.iter().map(|s| s.1).max().unwrap_or(0);
    println!();
    println!("summary ({rounds} round(s), median): cold bootstrap {} ms, warm (unseal + checks) {} ms; baseline CLI init+unseal+ACL bootstrap {} ms", median(&mut cold_totals), median(&mut warm_totals), base_total);
    println!("process start to API ready (max over runs): consul {consul_start} ms, vault {vault_start} ms");
    println!(
        "bare dev-mode start (consul -dev to a leader, then bao -dev to active), median: {} ms",
        median(&mut dev_totals)
    );
}
