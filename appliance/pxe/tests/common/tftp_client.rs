//! A minimal TFTP read client with RFC 7440 windowsize, for the tests and
//! the benchmark (busybox, curl and tftp-hpa's client cannot ask for a
//! window). Receiver side of RFC 7440: ACK the last block of each window
//! and the last block of the file; on a gap, ACK the last block received in
//! order once; on silence, ACK it again. Every DATA block the server sends
//! again is counted, so a test can see what was retransmitted.
#![allow(dead_code)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const RRQ: u16 = 1;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

/// What a read request asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub file: String,
    pub blksize: u16,
    /// `None`: no windowsize option (lock-step, RFC 1350).
    pub windowsize: Option<u16>,
    /// How long the client waits in silence before re-ACKing.
    pub silence: Duration,
    /// Gives up after this long without any progress.
    pub give_up: Duration,
    /// The RFC 2349 timeout option: how long the server waits for an ACK.
    pub server_timeout: Option<u8>,
    /// Held before every ACK is sent: a round-trip time added on the ACK
    /// path, for measuring on a veth as on a LAN where lock-step is bound by
    /// the RTT (and for kernels without `sch_netem`).
    pub ack_delay: Duration,
}

/// The outcome of one transfer.
#[derive(Debug, Default)]
pub struct Transfer {
    pub data: Vec<u8>,
    /// The windowsize the server agreed to (1 when it ignored the option).
    pub window: u16,
    pub blksize: u16,
    pub elapsed: Duration,
    pub acks_sent: u64,
    /// DATA packets that carried a block already received.
    pub duplicate_blocks: u64,
    /// Every DATA block that arrived and every ACK sent, in order (block
    /// numbers as a running count): a window resent after a loss shows here.
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Data(u64),
    /// An ACK at the end of a window or of the file.
    Ack(u64),
    /// An ACK of the last block received in order, after a gap or silence.
    ReAck(u64),
}

fn rrq(req: &Request) -> Vec<u8> {
    let mut p = RRQ.to_be_bytes().to_vec();
    let mut opt = |k: &str, v: &str| {
        p.extend_from_slice(k.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    };
    opt(&req.file, "octet");
    opt("blksize", &req.blksize.to_string());
    if let Some(w) = req.windowsize {
        opt("windowsize", &w.to_string());
    }
    if let Some(t) = req.server_timeout {
        opt("timeout", &t.to_string());
    }
    p
}

/// Sends an ACK after the request's added delay.
fn send_ack(sock: &UdpSocket, req: &Request, block: u16, to: SocketAddr) -> io::Result<()> {
    if !req.ack_delay.is_zero() {
        std::thread::sleep(req.ack_delay);
    }
    sock.send_to(&ack(block), to).map(|_| ())
}

fn ack(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    [0, ACK as u8, b[0], b[1]]
}

/// The options of an OACK as (name, value) pairs, names lower-cased.
fn oack_options(body: &[u8]) -> Vec<(String, String)> {
    let parts: Vec<String> = body
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .collect();
    parts
        .chunks(2)
        .filter(|c| c.len() == 2 && !c[0].is_empty())
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

/// Fetches `req.file` from `server` (port 69 or another) and returns it.
pub fn get(server: SocketAddr, req: &Request) -> io::Result<Transfer> {
    let sock = UdpSocket::bind(if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })?;
    sock.set_read_timeout(Some(req.silence))?;
    let started = Instant::now();
    sock.send_to(&rrq(req), server)?;
    let mut out = Transfer {
        window: 1,
        blksize: 512,
        ..Transfer::default()
    };
    let mut peer: Option<SocketAddr> = None;
    // Next block expected, as a running count (wraps at 65536 on the wire).
    let mut expected: u64 = 1;
    // The block a gap was last reported for, so one gap gets one ACK.
    let mut gap_reported: Option<u64> = None;
    let mut block_in_window: u16 = 0;
    let mut last_progress = Instant::now();
    let mut buf = vec![0u8; 65536];
    loop {
        if last_progress.elapsed() > req.give_up {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no progress for {:?} at block {expected}", req.give_up),
            ));
        }
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // Silence: the end of a window (or the OACK's ACK) was lost.
                if let Some(p) = peer {
                    send_ack(&sock, req, (expected - 1) as u16, p)?;
                    out.acks_sent += 1;
                    out.events.push(Event::ReAck(expected - 1));
                    block_in_window = 0;
                } else {
                    sock.send_to(&rrq(req), server)?;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if n < 4 || from.ip() != server.ip() {
            continue;
        }
        if *peer.get_or_insert(from) != from {
            continue;
        }
        let op = u16::from_be_bytes([buf[0], buf[1]]);
        match op {
            OACK => {
                for (k, v) in oack_options(&buf[2..n]) {
                    match k.as_str() {
                        "blksize" => out.blksize = v.parse().unwrap_or(512),
                        "windowsize" => out.window = v.parse().unwrap_or(1),
                        _ => {}
                    }
                }
                if expected == 1 {
                    send_ack(&sock, req, 0, from)?;
                    out.acks_sent += 1;
                }
            }
            DATA => {
                let wire = u16::from_be_bytes([buf[2], buf[3]]);
                let len = n - 4;
                // The running block number this wire number stands for.
                let ahead = i64::from(wire.wrapping_sub(expected as u16) as i16);
                let block = (expected as i64 + ahead).max(0) as u64;
                out.events.push(Event::Data(block));
                if wire != expected as u16 {
                    if block < expected {
                        out.duplicate_blocks += 1;
                    } else if gap_reported != Some(expected) {
                        // A gap: tell the server where to start again.
                        send_ack(&sock, req, (expected - 1) as u16, from)?;
                        out.acks_sent += 1;
                        out.events.push(Event::ReAck(expected - 1));
                        gap_reported = Some(expected);
                        block_in_window = 0;
                    }
                    continue;
                }
                out.data.extend_from_slice(&buf[4..n]);
                expected += 1;
                last_progress = Instant::now();
                block_in_window += 1;
                let last = len < usize::from(out.blksize);
                if last || block_in_window >= out.window {
                    send_ack(&sock, req, wire, from)?;
                    out.acks_sent += 1;
                    out.events.push(Event::Ack(block));
                    block_in_window = 0;
                }
                if last {
                    out.elapsed = started.elapsed();
                    return Ok(out);
                }
            }
            ERROR => {
                return Err(io::Error::other(format!(
                    "server error {}: {}",
                    u16::from_be_bytes([buf[2], buf[3]]),
                    String::from_utf8_lossy(&buf[4..n]).trim_end_matches('\0')
                )))
            }
            _ => {}
        }
    }
}
