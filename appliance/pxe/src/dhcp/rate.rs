//! `MacRateLimit`: a token bucket per client MAC (chaddr), checked on the
//! raw datagram before it is decoded, so a client that floods costs one
//! hash lookup per packet and nothing else (no decoding, no lease or
//! inventory work, no reply).
//!
//! The table of buckets is a `BoundedMap`: forgetting a bucket only ever
//! gives a MAC a fresh, full bucket, so a flood of random MACs cannot grow
//! memory and cannot make a legitimate client wait. Random MACs are not
//! limited by this (each is new); what keeps them cheap is that nothing on
//! their path writes to disk or holds an address (see `leases::offers`).
//!
//! Owns the rate decision only; time comes from the caller.

use crate::bounded::BoundedMap;
use kindling_site::MacAddr;

/// Packets a MAC may send at once. A PXE boot (firmware, iPXE, the
/// installer's kernel, each DISCOVER + REQUEST, with retries) sends about
/// a dozen within seconds.
pub const BURST: f64 = 16.0;
/// Packets per second a MAC earns back.
pub const PER_SEC: f64 = 2.0;
/// Buckets remembered.
pub const MACS_KEPT: usize = 8192;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// Milliseconds (caller's monotonic clock).
    at: u64,
}

#[derive(Debug)]
pub struct MacRateLimit {
    buckets: BoundedMap<MacAddr, Bucket>,
}

impl Default for MacRateLimit {
    fn default() -> Self {
        Self {
            buckets: BoundedMap::new(MACS_KEPT),
        }
    }
}

/// The client MAC of a raw BOOTP datagram, without decoding it: htype 1
/// (Ethernet), hlen 6, chaddr at offset 28. `None` for anything else (the
/// decoder refuses those anyway).
pub fn raw_chaddr(datagram: &[u8]) -> Option<MacAddr> {
    if datagram.get(1) != Some(&1) || datagram.get(2) != Some(&6) {
        return None;
    }
    MacAddr::from_slice(datagram.get(28..34)?)
}

impl MacRateLimit {
    /// Whether `mac` may send one more packet at `now_ms`.
    pub fn allow(&mut self, mac: MacAddr, now_ms: u64) -> bool {
        let Some(bucket) = self.buckets.get_mut(&mac) else {
            self.buckets.insert(
                mac,
                Bucket {
                    tokens: BURST - 1.0,
                    at: now_ms,
                },
            );
            return true;
        };
        // Lossless enough: milliseconds since the last packet of one MAC.
        let earned = now_ms.saturating_sub(bucket.at) as f64 / 1000.0 * PER_SEC;
        bucket.tokens = (bucket.tokens + earned).min(BURST);
        bucket.at = now_ms;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    #[test]
    fn burst_then_steady_rate() {
        let mut limit = MacRateLimit::default();
        let allowed = (0..100).filter(|_| limit.allow(A, 1000)).count();
        assert_eq!(allowed, BURST as usize);
        assert!(!limit.allow(A, 1000));
        assert!(limit.allow(A, 1500), "one token back after 0.5 s");
        assert!(!limit.allow(A, 1500));
        let later = (0..100).filter(|_| limit.allow(A, 60_000)).count();
        assert_eq!(later, BURST as usize, "refills to the burst, not beyond");
    }

    #[test]
    fn other_macs_are_not_affected_and_the_table_stays_bounded() {
        let mut limit = MacRateLimit::default();
        while limit.allow(A, 0) {}
        for n in 0..50_000u32 {
            let b = n.to_be_bytes();
            assert!(limit.allow(MacAddr([2, 1, b[0], b[1], b[2], b[3]]), 0));
        }
        assert!(limit.buckets.len() <= MACS_KEPT);
    }

    #[test]
    fn reads_chaddr_only_from_ethernet_headers() {
        let mut p = vec![0u8; 300];
        p[1] = 1;
        p[2] = 6;
        p[28..34].copy_from_slice(&A.0);
        assert_eq!(raw_chaddr(&p), Some(A));
        p[2] = 16;
        assert_eq!(raw_chaddr(&p), None);
        assert_eq!(raw_chaddr(&[0, 1, 6]), None);
    }
}
