//! The control API against a hostile LAN host, on loopback: a real
//! `kindlingd api` (TLS, the lab's TEST-ONLY operators) and clients that
//! have no token, a wrong one, the digest from the overlay, or only the
//! read role; plain HTTP; bodies sent before any credential; and 100
//! slow-loris connections while an operator works.
//!
//! Every refusal is checked against the state: the data partition, /run and
//! what the admin reads are byte for byte the same afterwards, and the same
//! request with the admin token does change them (so the refusals mattered).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::appliance::{apply, lab_v4_push_body, start_api, Root, Server};
use common::raw::tls_config;
use common::{call, lab_tokens, SERVER_NAME};
use kindling_api_client::Token;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every endpoint that changes the appliance or hands out secret material,
/// with a body the admin would have accepted or that reaches the handler.
fn admin_endpoints() -> Vec<(&'static str, &'static str, Option<Vec<u8>>)> {
    vec![
        ("POST", "/v1/overlays", Some(lab_v4_push_body())),
        (
            "PUT",
            "/v1/nodes/52:54:00:6b:00:99/profile",
            Some(br#"{"profile": "prod"}"#.to_vec()),
        ),
        (
            "POST",
            "/v1/nodes/52:54:00:6b:00:99/tags",
            Some(br#"{"set": {"rack": "r12"}}"#.to_vec()),
        ),
        ("POST", "/v1/services/pxe/restart", None),
        (
            "POST",
            "/v1/vault/unseal",
            Some(br#"{"key": "AAAA"}"#.to_vec()),
        ),
        ("GET", "/v1/vault/init-secrets", None),
    ]
}

/// Every read, and what an unknown path looks like.
const READS: &[&str] = &[
    "/v1/status",
    "/metrics",
    "/v1/whoami",
    "/v1/services",
    "/v1/config/report",
    "/v1/config/effective",
    "/v1/overlays",
    "/v1/nodes",
    "/v1/stack",
    "/v1/logs",
    "/v1/logs/api",
    "/v1/logs/api?follow=1",
    "/v1/nope",
    "/",
    "/ui/fragment",
];

/// Every file under the appliance's data partition and /run, by path.
fn files(root: &Root) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.path("var/lib/kindling"), root.path("run/kindling")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    out
}

/// The files once the API's own start-up writes are done: its first
/// assignments sync round records the KV status in `assignments.json`
/// (here: no Consul), whatever any request does.
fn settled_files(root: &Root) -> BTreeMap<PathBuf, Vec<u8>> {
    let assignments = root.path("var/lib/kindling/inventory/assignments.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = files(root);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = files(root);
        if (now == last && assignments.exists()) || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// What the admin reads of the state (status is left out: it counts refusals).
fn reads(api: &Server) -> Vec<serde_json::Value> {
    ["/v1/nodes", "/v1/overlays", "/v1/config/effective"]
        .iter()
        .map(|p| api.call("GET", p, None).1)
        .collect()
}

#[test]
fn no_wrong_or_read_only_credentials_change_nothing() {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    let tokens = lab_tokens();
    let files_before = settled_files(&root);
    let reads_before = reads(&api);

    let anonymous = api.client_with(None);
    let wrong = api.client_with(Some(Token::from_random([0x5a; 32])));
    // Someone who read the signed overlay has the digest, not the token.
    let digest = api.client_with(Some(
        Token::parse(&tokens.admin.sha256().to_string()).unwrap(),
    ));
    let read_only = api.client_with(Some(tokens.read.clone()));
    let mut refused = 0;
    for (method, path, body) in admin_endpoints() {
        for (who, client) in [
            ("no token", &anonymous),
            ("a wrong token", &wrong),
            ("the admin token's digest", &digest),
        ] {
            let reply = client.request(method, path, body.as_deref()).unwrap();
            assert_eq!(reply.status, 401, "{who}: {method} {path}");
            assert!(
                reply
                    .www_authenticate
                    .as_deref()
                    .is_some_and(|c| c.starts_with("Bearer realm=\"kindling\"")),
                "{who}: {method} {path}: a 401 carries its challenge"
            );
            refused += 1;
        }
        let (status, body) = call(&read_only, method, path, body.as_deref());
        assert_eq!(status, 403, "read role: {method} {path}: {body}");
        assert_eq!(body["kind"], "forbidden", "{body}");
    }
    for path in READS {
        let (status, body) = call(&anonymous, "GET", path, None);
        assert_eq!(status, 401, "GET {path} without a token: {body}");
        assert_eq!(body["kind"], "unauthenticated", "{body}");
        assert_eq!(call(&wrong, "GET", path, None).0, 401, "GET {path}");
        refused += 2;
    }
    let (status, body) = call(&anonymous, "GET", "/healthz", None);
    assert_eq!((status, body), (200, serde_json::json!({"status": "ok"})));

    let files_after = files(&root);
    let changed: Vec<_> = files_after
        .keys()
        .chain(files_before.keys())
        .filter(|path| files_after.get(*path) != files_before.get(*path))
        .collect();
    assert!(changed.is_empty(), "a refused request changed {changed:?}");
    assert_eq!(
        reads(&api),
        reads_before,
        "a refused request changed the state"
    );

    // The refusals are counted where an operator looks.
    let (_, status) = api.call("GET", "/v1/status", None);
    let counters = &status["api"]["counters"];
    assert!(
        counters["requests_unauthenticated"].as_u64() >= Some(refused),
        "{counters}"
    );
    assert!(
        counters["requests_forbidden"].as_u64() >= Some(6),
        "{counters}"
    );
    assert!(
        status["api"]["ca_fingerprint"]
            .as_str()
            .is_some_and(|f| f.starts_with("sha256:")),
        "{status}"
    );

    // The same push with the admin token is accepted: the refusals mattered.
    let (status, reply) = api.call("POST", "/v1/overlays", Some(&lab_v4_push_body()));
    assert_eq!(status, 200, "{reply}");
    assert_ne!(files(&root), files_before);
    eprintln!("hostile host: {refused} requests refused with 401, 6 with 403, state unchanged");
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_session(addr: &str, config: &Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = rustls_pki_types::ServerName::try_from(SERVER_NAME).unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// Reads what the server answers until it closes (or `limit` passes).
fn answer_of(tls: &mut Tls, limit: Duration) -> String {
    tls.sock.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = tls.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The API answers an unauthenticated upload at once, from its head: it
/// neither invites the body (`100 Continue`) nor waits for it.
#[test]
fn an_unauthenticated_body_is_never_read() {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    let config = tls_config(&api.run_dir);
    let head = "POST /v1/overlays HTTP/1.1\r\nHost: kindling\r\nContent-Type: application/json\r\n\
                Content-Length: 60000000\r\n";
    for (what, extra) in [
        ("Expect: 100-continue", "Expect: 100-continue\r\n\r\n"),
        ("1 KiB of a 60 MB body", "\r\n"),
    ] {
        let mut tls = tls_session(&api.addr, &config);
        let started = Instant::now();
        tls.write_all(format!("{head}{extra}").as_bytes()).unwrap();
        if extra == "\r\n" {
            tls.write_all(&[b'{'; 1024]).unwrap();
        }
        tls.flush().unwrap();
        let answer = answer_of(&mut tls, Duration::from_secs(5));
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "{what}: answered {answer:?}"
        );
        assert!(!answer.contains("100 Continue"), "{what}: {answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: the 401 waited for the body ({:?})",
            started.elapsed()
        );
    }
}

/// Plain HTTP to the API's port gets no HTTP answer: at most a TLS alert,
/// then the connection is closed.
#[test]
fn plain_http_gets_no_service() {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    for request in [
        "GET /healthz HTTP/1.1\r\nHost: 192.168.100.1\r\n\r\n",
        "GET /v1/nodes HTTP/1.1\r\nHost: 192.168.100.1\r\n\r\n",
        "PUT /v1/nodes/52:54:00:6b:00:99/profile HTTP/1.1\r\nContent-Length: 19\r\n\r\n{\"profile\": \"prod\"}",
    ] {
        let mut tcp = TcpStream::connect(&api.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        let mut got = Vec::new();
        let closed = match tcp.read_to_end(&mut got) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(closed, "the connection stayed open: {got:?}");
        assert!(!got.starts_with(b"HTTP/"), "answered over plain HTTP: {got:?}");
        // Nothing, or one TLS alert record (content type 21).
        assert!(got.is_empty() || got[0] == 0x15, "{got:?}");
    }
    let (_, status) = api.call("GET", "/v1/status", None);
    assert!(
        status["api"]["counters"]["tls_handshakes_failed"].as_u64() >= Some(3),
        "{status}"
    );
}

/// The first bytes of a real ClientHello: a handshake that never finishes.
fn partial_client_hello(config: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let name = rustls_pki_types::ServerName::try_from(SERVER_NAME).unwrap();
    let mut conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello.truncate(hello.len() / 2);
    hello
}

/// Whether the server has closed `tcp` (EOF or reset) rather than waiting.
fn closed_by_server(tcp: &mut TcpStream) -> bool {
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 512];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

/// 50 TLS handshakes that never finish and 50 TLS sessions that send a
/// request head one byte every 250 ms: an operator's requests (each a new
/// TLS connection) are not delayed by more than 2 s, and the server cuts
/// every slow connection at its limit (10 s).
#[test]
fn slow_loris_does_not_delay_an_operator() {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    let config = tls_config(&api.run_dir);
    let time_operator = |n: usize| -> Vec<Duration> {
        (0..n)
            .map(|_| {
                let started = Instant::now();
                let (status, body) = api.call("GET", "/v1/status", None);
                assert_eq!(status, 200, "{body}");
                let took = started.elapsed();
                std::thread::sleep(Duration::from_millis(200));
                took
            })
            .collect()
    };
    let idle = time_operator(5);

    let attack_started = Instant::now();
    let hello = partial_client_hello(&config);
    let mut handshakes: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut tcp = TcpStream::connect(&api.addr).unwrap();
            tcp.write_all(&hello).unwrap();
            tcp
        })
        .collect();
    let sessions: Vec<Tls> = (0..50).map(|_| tls_session(&api.addr, &config)).collect();
    let head = format!(
        "GET /v1/status HTTP/1.1\r\nHost: kindling\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(400)
    )
    .into_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sessions: Vec<Option<Tls>> = sessions.into_iter().map(Some).collect();
            let mut cut_after = Vec::new();
            let started = Instant::now();
            for byte in head.iter().cycle() {
                if stop.load(Ordering::Relaxed) || sessions.iter().all(Option::is_none) {
                    break;
                }
                for slot in sessions.iter_mut() {
                    let Some(tls) = slot else { continue };
                    let sent = tls.write_all(&[*byte]).and_then(|()| tls.flush());
                    if sent.is_err() {
                        cut_after.push(started.elapsed());
                        *slot = None;
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            let open = sessions.iter().filter(|s| s.is_some()).count();
            (cut_after, open)
        })
    };

    std::thread::sleep(Duration::from_secs(1));
    let loaded = time_operator(10);
    let worst = loaded.iter().max().copied().unwrap_or_default();
    let mut sorted = loaded.clone();
    sorted.sort();
    eprintln!(
        "slow-loris: operator GET /v1/status (new TLS connection each): idle max {:?}; \
         under 100 slow connections max {worst:?}, median {:?} over {}",
        idle.iter().max().copied().unwrap_or_default(),
        sorted[sorted.len() / 2],
        loaded.len()
    );
    assert!(
        worst < Duration::from_secs(2),
        "an operator request took {worst:?} under slow-loris: {loaded:?}"
    );

    // The server cuts them: handshakes after 10 s, trickled heads after 10 s.
    while attack_started.elapsed() < Duration::from_secs(14) {
        std::thread::sleep(Duration::from_millis(250));
    }
    let handshakes_closed = handshakes
        .iter_mut()
        .map(closed_by_server)
        .filter(|closed| *closed)
        .count();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let (cut_after, still_open) = trickle.join().unwrap();
    eprintln!(
        "slow-loris: {handshakes_closed}/50 unfinished handshakes closed by the server within 14 s; \
         {}/50 byte-by-byte heads cut (latest after {:?}), {still_open} still open",
        cut_after.len(),
        cut_after.iter().max()
    );
    assert_eq!(handshakes_closed, 50, "unfinished handshakes left open");
    assert_eq!(still_open, 0, "slow heads left open");
}
