//! A DHCP prober run inside a lab namespace: a LAN host asking the
//! appliance's DHCP service for an offer every half second or so (a
//! DISCOVER with a fresh transaction id each time, broadcast on the LAN
//! bridge) and noting which were answered. From the answers: how long the
//! LAN went without DHCP, e.g. across an update's reboot.
//!
//! Owns nothing but its socket; it never takes a lease (no REQUEST) and
//! stops after a bounded number of probes.

use crate::error::{LabError, Result};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The prober's client MAC: no VM of the lab uses it.
pub const PROBE_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x6b, 0x00, 0xd1];
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// A DHCPDISCOVER from `mac` with transaction id `xid`, asking for a
/// broadcast answer (the prober has no address to be answered at).
pub fn discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[10] = 0x80; // the broadcast flag
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&MAGIC_COOKIE);
    p.extend_from_slice(&[53, 1, 1]); // DHCPDISCOVER
    p.push(255);
    p
}

/// The address offered, when `packet` is a DHCPOFFER answering `xid`.
pub fn offer_for(packet: &[u8], xid: u32) -> Option<Ipv4Addr> {
    if packet.len() < 240 || packet[0] != 2 || packet[4..8] != xid.to_be_bytes() {
        return None;
    }
    if packet[236..240] != MAGIC_COOKIE {
        return None;
    }
    let mut options = &packet[240..];
    while let [code, rest @ ..] = options {
        match *code {
            0 => options = rest,
            255 => return None,
            _ => {
                let (&len, rest) = rest.split_first()?;
                let value = rest.get(..usize::from(len))?;
                if *code == 53 {
                    return (value == [2])
                        .then(|| Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]));
                }
                options = &rest[usize::from(len)..];
            }
        }
    }
    None
}

/// What the prober saw: every probe's send time and whether it was
/// answered, as time since the prober started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeLog {
    pub sent: Vec<Duration>,
    pub answered: Vec<Duration>,
}

impl ProbeLog {
    /// The longest stretch without an answer: the last answer before it
    /// and the first after (so only a gap closed by an answer counts).
    pub fn longest_gap(&self) -> Option<(Duration, Duration)> {
        self.answered
            .windows(2)
            .map(|w| (w[0], w[1]))
            .max_by_key(|(a, b)| *b - *a)
    }
}

/// A prober running in its own thread; `stop` ends it and returns its log
/// (dropped, it ends too).
pub struct Prober {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<ProbeLog>>>,
}

impl Prober {
    /// Starts probing from namespace `ns` out of `iface`, every `every`,
    /// at most `max_probes` times.
    pub fn start(ns: &str, iface: &str, every: Duration, max_probes: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, iface, flag) = (ns.to_string(), iface.to_string(), stop.clone());
        let handle = std::thread::spawn(move || probe(&ns, &iface, every, max_probes, &flag));
        Self {
            stop,
            handle: Some(handle),
        }
    }

    pub fn stop(mut self) -> Result<ProbeLog> {
        self.stop.store(true, Ordering::Relaxed);
        let panicked = || LabError::CommandFailed {
            command: "DHCP prober".into(),
            status: "panicked".into(),
            stderr: String::new(),
        };
        match self.handle.take() {
            Some(handle) => handle.join().unwrap_or_else(|_| Err(panicked())),
            None => Err(panicked()),
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn probe(
    ns: &str,
    iface: &str,
    every: Duration,
    max_probes: u32,
    stop: &AtomicBool,
) -> Result<ProbeLog> {
    let fail = |stderr: String| LabError::CommandFailed {
        command: format!("DHCP prober in netns {ns} on {iface}"),
        status: "failed".into(),
        stderr,
    };
    let ns_path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&ns_path).map_err(|e| fail(format!("{ns_path}: {e}")))?;
    // This thread alone enters the namespace.
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| fail(format!("setns: {e}")))?;
    let socket = UdpSocket::bind("0.0.0.0:68").map_err(|e| fail(format!("bind :68: {e}")))?;
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::BindToDevice,
        &std::ffi::OsString::from(iface),
    )
    .map_err(|e| fail(format!("SO_BINDTODEVICE: {e}")))?;
    socket
        .set_broadcast(true)
        .map_err(|e| fail(e.to_string()))?;
    let to = SocketAddr::from((Ipv4Addr::BROADCAST, 67));
    let started = Instant::now();
    let mut log = ProbeLog::default();
    // Fresh ids, not a fixed sequence another run might have left replies to.
    let mut xid = std::process::id().rotate_left(16) ^ started.elapsed().subsec_nanos();
    let mut buf = [0u8; 1500];
    for _ in 0..max_probes {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        xid = xid.wrapping_add(1);
        let sent = Instant::now();
        log.sent.push(sent - started);
        // A send error (the bridge briefly gone) is a probe unanswered.
        let _ = socket.send_to(&discover(PROBE_MAC, xid), to);
        let deadline = sent + every;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket
                .set_read_timeout(Some(left))
                .map_err(|e| fail(e.to_string()))?;
            match socket.recv_from(&mut buf) {
                Ok((len, _)) if offer_for(&buf[..len], xid).is_some() => {
                    log.answered.push(Instant::now() - started);
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn offer(xid: u32, kind: u8) -> Vec<u8> {
        let mut p = discover(PROBE_MAC, xid);
        p[0] = 2;
        p[16..20].copy_from_slice(&[192, 168, 100, 123]);
        p.truncate(240);
        p.extend_from_slice(&[0, 54, 4, 192, 168, 100, 1, 53, 1, kind, 255]);
        p
    }

    #[test]
    fn an_offer_is_told_from_other_answers_and_other_transactions() {
        let d = discover(PROBE_MAC, 7);
        assert_eq!(d.len(), 244);
        assert_eq!(&d[236..240], &MAGIC_COOKIE);
        assert_eq!(offer_for(&d, 7), None, "a request is no offer");
        assert_eq!(
            offer_for(&offer(7, 2), 7),
            Some(Ipv4Addr::new(192, 168, 100, 123))
        );
        assert_eq!(offer_for(&offer(8, 2), 7), None);
        assert_eq!(offer_for(&offer(7, 5), 7), None, "an ACK");
        let mut cut = offer(7, 2);
        cut.truncate(245);
        assert_eq!(offer_for(&cut, 7), None, "a truncated option");
    }

    #[test]
    fn the_longest_gap_is_between_two_answers() {
        let s = Duration::from_secs_f64;
        let log = ProbeLog {
            sent: vec![],
            answered: vec![s(0.0), s(0.5), s(1.0), s(31.5), s(32.0)],
        };
        assert_eq!(log.longest_gap(), Some((s(1.0), s(31.5))));
        assert_eq!(ProbeLog::default().longest_gap(), None);
    }
}
