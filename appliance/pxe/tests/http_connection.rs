//! The PXE HTTP listener on the wire, over loopback (no root needed): keep-
//! alive and pipelining, HEAD, Range and whole files by sendfile, phone-home
//! bodies with `Expect: 100-continue`, and every kind of bad client: broken,
//! oversized or smuggling heads, oversized bodies, heads that trickle in,
//! idle connections, and more connections than the limit. Each gets the
//! status the listener promises and the service keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Dirs;
use kindling_pxe::http::connection::Limits;
use kindling_pxe::status::Stats;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEV_MAC: &str = "52:54:00:6b:00:10";
const LIMITS: Limits = Limits {
    idle: Duration::from_millis(800),
    request: Duration::from_millis(500),
    send: Duration::from_secs(5),
};

struct Server {
    addr: SocketAddr,
    stats: Arc<Stats>,
    dirs: Dirs,
}

/// The lab site's PXE HTTP service on 127.0.0.1, with a 3 MiB artifact.
fn server(max_connections: usize) -> Server {
    let dirs = Dirs::new();
    let artifact: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i: usize| (i * 31 + i / 997) as u8)
        .collect();
    std::fs::write(dirs.path("artifacts/initrd"), &artifact).unwrap();
    // The test client on loopback holds the dev node's lease.
    let holders = vec![(DEV_MAC.parse().unwrap(), [127, 0, 0, 1].into())];
    let (addr, stats) = common::serve_lab_http(&dirs, holders, max_connections, LIMITS);
    Server { addr, stats, dirs }
}

impl Server {
    fn artifact(&self) -> Vec<u8> {
        std::fs::read(self.dirs.path("artifacts/initrd")).unwrap()
    }
    fn connect(&self) -> BufReader<TcpStream> {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        BufReader::new(s)
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response; the body by its Content-Length unless `head_only`.
fn read_reply(conn: &mut BufReader<TcpStream>, head_only: bool) -> Reply {
    let mut line = String::new();
    conn.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no status line: {line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        conn.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.to_string(), v.trim().to_string()));
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    if !head_only && status >= 200 {
        let len: usize = reply.header("Content-Length").unwrap().parse().unwrap();
        reply.body = vec![0; len];
        conn.read_exact(&mut reply.body).unwrap();
    }
    reply
}

fn send(conn: &mut BufReader<TcpStream>, text: &[u8]) {
    conn.get_mut().write_all(text).unwrap();
}

/// True once the server closed the connection (EOF), within a few seconds.
fn closed(conn: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).is_ok() && rest.is_empty()
}

#[test]
fn kept_connection_serves_pipelined_requests_in_order() {
    let srv = server(16);
    let mut c = srv.connect();
    send(
        &mut c,
        format!(
            "GET /boot/{DEV_MAC}.ipxe HTTP/1.1\r\nHost: t\r\n\r\n\
             HEAD /artifacts/initrd HTTP/1.1\r\nHost: t\r\n\r\n\
             GET /artifacts/initrd HTTP/1.1\r\nHost: t\r\nRange: bytes=1000-1999\r\n\r\n"
        )
        .as_bytes(),
    );
    let script = read_reply(&mut c, false);
    assert_eq!(script.status, 200);
    assert!(String::from_utf8_lossy(&script.body).starts_with("#!ipxe"));
    let head = read_reply(&mut c, true);
    assert_eq!(head.status, 200);
    let full = srv.artifact();
    assert_eq!(
        head.header("Content-Length"),
        Some(&*full.len().to_string())
    );
    assert_eq!(head.header("Accept-Ranges"), Some("bytes"));
    let part = read_reply(&mut c, false);
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("Content-Range"),
        Some(&*format!("bytes 1000-1999/{}", full.len()))
    );
    assert_eq!(part.body, &full[1000..2000]);
    // Still open: a fourth request on the same connection, the whole file.
    send(&mut c, b"GET /artifacts/initrd HTTP/1.1\r\nHost: t\r\n\r\n");
    let whole = read_reply(&mut c, false);
    assert_eq!(whole.status, 200);
    assert!(whole.body == full, "whole file differs");
    assert!(whole.header("Date").is_some());
}

#[test]
fn http10_client_gets_its_reply_then_the_connection_closes() {
    let srv = server(16);
    let mut c = srv.connect();
    send(&mut c, b"GET /begin.sh HTTP/1.0\r\n\r\n");
    let r = read_reply(&mut c, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(closed(&mut c));
}

#[test]
fn phone_home_with_expect_continue_gets_100_then_the_answer() {
    let srv = server(16);
    let mut c = srv.connect();
    let body = br#"{"event":"booted"}"#;
    send(
        &mut c,
        format!(
            "POST /nodes/{DEV_MAC}/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let interim = read_reply(&mut c, true);
    assert_eq!(interim.status, 100);
    send(&mut c, body);
    let r = read_reply(&mut c, false);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("\"ok\":true"));
    // A body the handler refuses is still consumed: the next request works.
    send(
        &mut c,
        format!("POST /nodes/{DEV_MAC}/events HTTP/1.1\r\nContent-Length: 5\r\n\r\nnope!GET /begin.sh HTTP/1.1\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(read_reply(&mut c, false).status, 400);
    assert_eq!(read_reply(&mut c, false).status, 200);
}

#[test]
fn bad_heads_get_their_status_and_the_connection_closes() {
    let srv = server(16);
    let mut long = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    long.resize(9000, b'a');
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (b"GET /begin.sh HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(), 400),
        (long, 431),
        (
            b"POST /nodes/52:54:00:6b:00:10/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
            411,
        ),
        (
            b"POST /nodes/52:54:00:6b:00:10/events HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n".to_vec(),
            413,
        ),
        (b"GET / HTTP/2.0\r\n\r\n".to_vec(), 505),
    ];
    for (request, status) in cases {
        let mut c = srv.connect();
        send(&mut c, &request);
        let r = read_reply(&mut c, false);
        assert_eq!(
            r.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&request[..request.len().min(60)])
        );
        assert_eq!(r.header("Connection"), Some("close"));
        assert!(
            String::from_utf8_lossy(&r.body).contains("\"error\""),
            "the reason is given"
        );
        assert!(closed(&mut c));
    }
    // Refusals are counted, and the service still answers.
    assert!(srv.stats.get("http_refused_malformed") >= 3);
    assert_eq!(srv.stats.get("http_refused_large_head"), 1);
    assert_eq!(srv.stats.get("http_refused_transfer_encoding"), 1);
    assert_eq!(srv.stats.get("http_refused_large_body"), 1);
    let mut c = srv.connect();
    send(&mut c, b"GET /begin.sh HTTP/1.1\r\n\r\n");
    assert_eq!(read_reply(&mut c, false).status, 200);
}

#[test]
fn a_head_that_trickles_in_gets_408_and_an_idle_connection_is_closed() {
    let srv = server(16);
    let mut slow = srv.connect();
    let start = Instant::now();
    send(&mut slow, b"GET /begin.sh HTTP/1.1\r\n");
    let r = read_reply(&mut slow, false);
    assert_eq!(r.status, 408);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(srv.stats.get("http_refused_slow_head"), 1);

    let mut idle = srv.connect();
    send(&mut idle, b"GET /begin.sh HTTP/1.1\r\n\r\n");
    assert_eq!(read_reply(&mut idle, false).status, 200);
    let waited = Instant::now();
    assert!(closed(&mut idle), "idle kept connection not closed");
    assert!(waited.elapsed() < Duration::from_secs(5));
}

#[test]
fn connections_past_the_limit_get_503_and_capacity_comes_back() {
    let srv = server(2);
    let mut held: Vec<_> = (0..2).map(|_| srv.connect()).collect();
    // Both are being served (a request answered on each) before the third.
    for c in &mut held {
        send(c, b"GET /begin.sh HTTP/1.1\r\n\r\n");
        assert_eq!(read_reply(c, false).status, 200);
    }
    let mut third = srv.connect();
    let r = read_reply(&mut third, false);
    assert_eq!(r.status, 503);
    assert!(closed(&mut third));
    assert_eq!(srv.stats.get("http_refused_busy"), 1);
    drop(held);
    // Capacity returns once the held connections are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = srv.connect();
        send(&mut c, b"GET /begin.sh HTTP/1.1\r\n\r\n");
        if read_reply(&mut c, false).status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "capacity never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn many_concurrent_downloads_all_get_the_whole_file() {
    let srv = server(64);
    let full = Arc::new(srv.artifact());
    let clients: Vec<_> = (0..24)
        .map(|_| {
            let mut c = srv.connect();
            let full = full.clone();
            std::thread::spawn(move || {
                send(&mut c, b"GET /artifacts/initrd HTTP/1.1\r\n\r\n");
                let r = read_reply(&mut c, false);
                r.status == 200 && r.body == *full
            })
        })
        .collect();
    for c in clients {
        assert!(c.join().unwrap(), "a client got a wrong or short body");
    }
    assert!(Path::new(&srv.dirs.path("artifacts/initrd")).exists());
}
