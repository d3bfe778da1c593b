//! The status API and page under load: 200 concurrent clients on loopback,
//! each on its own keep-alive TLS connection, against a real `kindlingd api`
//! fed by an inventory of 200 nodes. Prints the p50/p99/max latency of
//! `GET /v1/status` (bearer token) and `GET /` (browser session), the API's
//! peak RSS under that load and the page's size. Bounded: 20 requests per
//! client and endpoint, 120 s at most. Ignored by default (it measures, and
//! a debug build measures the debug build); run it with
//!
//!   cargo test --release -p kindlingd --test status_load -- --ignored --nocapture
//!
//! With `BENCH_RECORD=FILE` (as `tests/bench` runs it) the p99s, the peak
//! RSS and the page's size are also appended there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/bench-record.rs"]
mod bench_record;
mod common;

use common::appliance::{apply, start_api, Root};
use common::raw::{login, tls_config};
use common::{lab_tokens, SERVER_NAME};
use kindling_inventory::inventory::Inventory;
use kindling_inventory::policy::ProfilePolicy;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const CLIENTS: usize = 200;
const REQUESTS: usize = 20;
const LIMIT: Duration = Duration::from_secs(120);

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(addr: &str, config: &Arc<rustls::ClientConfig>) -> BufReader<Tls> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let name = rustls_pki_types::ServerName::try_from(SERVER_NAME).unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    BufReader::new(rustls::StreamOwned::new(conn, tcp))
}

/// One keep-alive GET: status and body length.
fn get(stream: &mut BufReader<Tls>, path: &str, credential: &str) -> (u16, usize) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\n{credential}\r\n\r\n");
    stream.get_mut().write_all(request.as_bytes()).unwrap();
    stream.get_mut().flush().unwrap();
    let mut line = String::new();
    stream.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let mut length = 0;
    loop {
        line.clear();
        stream.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    (status, length)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// `CLIENTS` clients, each `REQUESTS` GETs of `path` on one connection:
/// every latency, sorted, and the body size.
fn load(addr: &str, path: &str, credential: &str) -> (Vec<Duration>, usize, Duration) {
    let config = tls_config(&std::path::PathBuf::from(addr.split('|').nth(1).unwrap()));
    let addr = addr.split('|').next().unwrap().to_string();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let stop = Arc::new(AtomicBool::new(false));
    let size = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (config, addr, barrier, stop, size) = (
                config.clone(),
                addr.clone(),
                barrier.clone(),
                stop.clone(),
                size.clone(),
            );
            let (path, credential) = (path.to_string(), credential.to_string());
            std::thread::spawn(move || {
                let mut stream = connect(&addr, &config);
                barrier.wait();
                let mut times = Vec::with_capacity(REQUESTS);
                for _ in 0..REQUESTS {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > LIMIT {
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    let t = Instant::now();
                    let (status, len) = get(&mut stream, &path, &credential);
                    times.push(t.elapsed());
                    assert_eq!(status, 200, "GET {path}");
                    size.store(len as u64, Ordering::Relaxed);
                }
                times
            })
        })
        .collect();
    let mut all: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let took = started.elapsed();
    assert!(
        !stop.load(Ordering::Relaxed),
        "the load did not finish in {LIMIT:?}"
    );
    assert_eq!(all.len(), CLIENTS * REQUESTS);
    all.sort();
    (all, size.load(Ordering::Relaxed) as usize, took)
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn status_and_page_latency_with_200_concurrent_clients() {
    let root = Root::new();
    apply(&root);
    let site = kindling_site::effective::load(&root.path("run/kindling/site.json")).unwrap();
    let (inventory, _) = Inventory::open(
        &root.path("var/lib/kindling"),
        ProfilePolicy::from_site(&site),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for i in 0..200u32 {
        let mac = format!("52:54:00:7a:{:02x}:{:02x}", i / 256, i % 256);
        let mac = mac.parse().unwrap();
        let ip = format!("192.168.100.{}", 1 + i % 250).parse().unwrap();
        inventory.observe_dhcp(
            mac,
            Some(ip),
            None,
            kindling_api::nodes::Firmware::None,
            now,
        );
        inventory.observe_boot_script(mac, "dev", now);
    }
    inventory.flush_if_dirty().unwrap();
    let api = start_api(&root);
    let pid = api.pid();
    let idle_rss = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(idle_rss));
    let overall = AtomicU64::new(idle_rss);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let tls = tls_config(&api.run_dir);
    let (cookie, _) = login(&api.addr, &tls, lab_tokens().read.expose());
    let target = format!("{}|{}", api.addr, api.run_dir.display());
    let bearer = format!("Authorization: Bearer {}", lab_tokens().read.expose());
    let session = format!("Cookie: {cookie}");
    let mut lines = Vec::new();
    for (what, record, path, credential) in [
        (
            "GET /v1/status",
            "api_status_p99_ms",
            "/v1/status",
            bearer.as_str(),
        ),
        ("GET / (page)", "api_page_p99_ms", "/", session.as_str()),
        (
            "GET /ui/fragment",
            "api_fragment_p99_ms",
            "/ui/fragment",
            session.as_str(),
        ),
    ] {
        peak.store(rss_kib(pid), Ordering::Relaxed);
        let (times, size, took) = load(&target, path, credential);
        lines.push(format!(
            "{what}: {} requests from {CLIENTS} concurrent clients in {took:.1?}: \
             p50 {:.1?}, p99 {:.1?}, max {:.1?}; body {size} bytes; RSS peak {} KiB",
            times.len(),
            percentile(&times, 0.50),
            percentile(&times, 0.99),
            times[times.len() - 1],
            peak.load(Ordering::Relaxed),
        ));
        overall.fetch_max(peak.load(Ordering::Relaxed), Ordering::Relaxed);
        let p99_ms = percentile(&times, 0.99).as_secs_f64() * 1000.0;
        bench_record::record(record, "kindling", format!("{p99_ms:.1}"));
        if path == "/" {
            bench_record::record(
                "api_page_kib",
                "kindling",
                format!("{:.1}", size as f64 / 1024.0),
            );
        }
    }
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    lines.push(format!(
        "kindlingd api RSS: {idle_rss} KiB idle, {} KiB peak under load, {} KiB after",
        overall.load(Ordering::Relaxed),
        rss_kib(pid)
    ));
    let peak_mib = overall.load(Ordering::Relaxed) as f64 / 1024.0;
    bench_record::record("api_rss_mib", "kindling", format!("{peak_mib:.1}"));
    for line in lines {
        eprintln!("load: {line}");
    }
}
