//! A one-packet SNTP client (RFC 4330) run inside a lab namespace: what a
//! node on the LAN sees when it asks the appliance for the time.
//!
//! Owns nothing but its socket; it never sets a clock.

use crate::error::{LabError, Result};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from 1900 (NTP's era 0) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What the server said.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SntpReply {
    /// 0 no warning … 3 unsynchronised.
    pub leap_indicator: u8,
    /// 1 reference clock, 2.. synchronised through others, 16 unsynchronised.
    pub stratum: u8,
    /// The server's transmit time minus ours when the answer arrived, seconds.
    pub offset_secs: f64,
}

impl SntpReply {
    /// Synchronised: a stratum a client would accept and no alarm.
    pub fn synchronised(&self) -> bool {
        (1..16).contains(&self.stratum) && self.leap_indicator != 3
    }
}

/// Parses a server's 48-byte answer received at `now`.
pub fn parse(packet: &[u8], now: SystemTime) -> Option<SntpReply> {
    if packet.len() < 48 || packet[0] & 0x7 != 4 {
        return None;
    }
    let secs = u32::from_be_bytes(packet[40..44].try_into().ok()?);
    let frac = u32::from_be_bytes(packet[44..48].try_into().ok()?);
    let server = f64::from(secs) - NTP_UNIX_OFFSET as f64 + f64::from(frac) / 4_294_967_296.0;
    let ours = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    Some(SntpReply {
        leap_indicator: packet[0] >> 6,
        stratum: packet[1],
        offset_secs: server - ours,
    })
}

/// Asks `server`:123 from inside network namespace `ns`.
pub fn query_in_netns(ns: &str, server: Ipv4Addr) -> Result<SntpReply> {
    let ns_path = format!("/run/netns/{ns}");
    let ns_owned = ns.to_string();
    // A thread of its own enters the namespace, so the caller's stays as it was.
    let handle = std::thread::spawn(move || -> Result<SntpReply> {
        let fail = |stderr: String| LabError::CommandFailed {
            command: format!("SNTP query to {server} in netns {ns_owned}"),
            status: "failed".into(),
            stderr,
        };
        let file = std::fs::File::open(&ns_path).map_err(|e| fail(format!("{ns_path}: {e}")))?;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| fail(format!("setns: {e}")))?;
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| fail(e.to_string()))?;
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| fail(e.to_string()))?;
        let mut request = [0u8; 48];
        request[0] = 0x23; // LI 0, version 4, mode 3 (client)
        socket
            .send_to(&request, SocketAddr::from((server, 123)))
            .map_err(|e| fail(e.to_string()))?;
        let mut answer = [0u8; 96];
        let (len, _) = socket
            .recv_from(&mut answer)
            .map_err(|e| fail(format!("no answer: {e}")))?;
        parse(&answer[..len], SystemTime::now())
            .ok_or_else(|| fail(format!("not an NTP server answer ({len} bytes)")))
    });
    handle.join().unwrap_or_else(|_| {
        Err(LabError::CommandFailed {
            command: format!("SNTP query to {server}"),
            status: "the query thread panicked".into(),
            stderr: String::new(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stratum_leap_and_offset() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut p = [0u8; 48];
        p[0] = 0x24; // LI 0, v4, server
        p[1] = 2;
        let ntp_secs = (1_800_000_003 + NTP_UNIX_OFFSET) as u32;
        p[40..44].copy_from_slice(&ntp_secs.to_be_bytes());
        let reply = parse(&p, now).unwrap_or_else(|| panic!("a valid answer"));
        assert_eq!(reply.stratum, 2);
        assert!(reply.synchronised());
        assert!((reply.offset_secs - 3.0).abs() < 1e-6, "{reply:?}");
        p[0] = 0xe4; // LI 3: unsynchronised
        assert!(!parse(&p, now).is_some_and(|r| r.synchronised()));
        p[0] = 0x23; // a client packet is no answer
        assert_eq!(parse(&p, now), None);
        assert_eq!(parse(&p[..20], now), None);
    }
}
