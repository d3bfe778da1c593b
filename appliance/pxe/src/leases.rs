//! `LeaseStore`: which address each MAC holds, until when; address selection
//! for DHCP offers; persistence under `leases/` on the data partition.
//!
//! Owns the address pool and nothing else: it never decides boot options or
//! touches sockets. Persistence is write-behind (the DHCP thread marks the
//! store dirty, `flush_if_dirty` writes it atomically, at most once a second)
//! so a burst of clients does not cost one fsync per ACK; a crash loses at
//! most the last second of changes, and clients then re-request the address
//! they hold, which the store grants again if nobody took it.

use kindling_atomic_write::write_atomic;
use kindling_site::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// How long an offered (not yet requested) address is held for its client.
pub const OFFER_HOLD_SECS: u64 = 30;
/// How long a declined address (in use by someone we do not know) is avoided.
pub const DECLINE_QUARANTINE_SECS: u64 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    Offered,
    Bound,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// Unix seconds.
    pub expires: u64,
    pub state: LeaseState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("read lease file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parse lease file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("write lease file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize, Default)]
struct LeaseFile {
    leases: Vec<Lease>,
}

/// The pool of one range plus fixed reservations.
#[derive(Debug)]
pub struct LeaseStore {
    start: u32,
    end: u32,
    by_mac: HashMap<MacAddr, Lease>,
    by_ip: HashMap<Ipv4Addr, MacAddr>,
    quarantined: HashMap<Ipv4Addr, u64>,
    /// Addresses reserved for particular MACs (never handed to others).
    reserved: HashMap<Ipv4Addr, MacAddr>,
    path: Option<PathBuf>,
    dirty: bool,
}

impl LeaseStore {
    pub fn new(
        start: Ipv4Addr,
        end: Ipv4Addr,
        reserved: impl IntoIterator<Item = (MacAddr, Ipv4Addr)>,
    ) -> Self {
        Self {
            start: u32::from(start),
            end: u32::from(end),
            by_mac: HashMap::new(),
            by_ip: HashMap::new(),
            quarantined: HashMap::new(),
            reserved: reserved.into_iter().map(|(mac, ip)| (ip, mac)).collect(),
            path: None,
            dirty: false,
        }
    }

    /// Loads leases persisted at `path` (a missing file is an empty store) and
    /// remembers the path for `flush_if_dirty`. Leases whose address now
    /// conflicts with a reservation or lies outside every pool are dropped.
    pub fn load(mut self, path: PathBuf, now: u64) -> Result<Self, LeaseError> {
        match std::fs::read(&path) {
            Ok(bytes) => {
                let file: LeaseFile =
                    serde_json::from_slice(&bytes).map_err(|source| LeaseError::Parse {
                        path: path.clone(),
                        source,
                    })?;
                for lease in file.leases {
                    let reserved_for_other = self
                        .reserved
                        .get(&lease.ip)
                        .is_some_and(|m| *m != lease.mac);
                    let usable =
                        self.in_pool(lease.ip) || self.reserved.get(&lease.ip) == Some(&lease.mac);
                    if lease.state == LeaseState::Bound
                        && lease.expires > now
                        && usable
                        && !reserved_for_other
                    {
                        self.insert(lease);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(LeaseError::Read { path, source }),
        }
        self.path = Some(path);
        Ok(self)
    }

    pub fn in_pool(&self, ip: Ipv4Addr) -> bool {
        (self.start..=self.end).contains(&u32::from(ip))
    }

    pub fn lease_of(&self, mac: &MacAddr) -> Option<&Lease> {
        self.by_mac.get(mac)
    }

    /// Bound, unexpired leases.
    pub fn active(&self, now: u64) -> impl Iterator<Item = &Lease> {
        self.by_mac
            .values()
            .filter(move |l| l.state == LeaseState::Bound && l.expires > now)
    }

    fn insert(&mut self, lease: Lease) {
        if let Some(old) = self.by_mac.remove(&lease.mac) {
            self.by_ip.remove(&old.ip);
        }
        if let Some(other) = self.by_ip.insert(lease.ip, lease.mac) {
            if other != lease.mac {
                self.by_mac.remove(&other);
            }
        }
        self.by_mac.insert(lease.mac, lease);
        self.dirty = true;
    }

    /// Whether `mac` may use `ip` right now.
    pub fn available_for(&self, ip: Ipv4Addr, mac: &MacAddr, now: u64) -> bool {
        if let Some(owner) = self.reserved.get(&ip) {
            return owner == mac;
        }
        if !self.in_pool(ip) {
            return false;
        }
        if self.quarantined.get(&ip).is_some_and(|until| *until > now) {
            return false;
        }
        match self.by_ip.get(&ip) {
            None => true,
            Some(owner) if owner == mac => true,
            Some(owner) => self.by_mac.get(owner).is_none_or(|l| l.expires <= now),
        }
    }

    /// Chooses the address to offer: the reservation, else the client's current
    /// lease, else the address it asks for, else the first free one. Starting
    /// the free search at a hash of the MAC keeps a client's address stable
    /// across lost lease files. `None` when the pool is exhausted.
    pub fn choose(
        &self,
        mac: &MacAddr,
        reserved: Option<Ipv4Addr>,
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Option<Ipv4Addr> {
        if let Some(ip) = reserved {
            return Some(ip);
        }
        if let Some(lease) = self.by_mac.get(mac) {
            if self.available_for(lease.ip, mac, now) {
                return Some(lease.ip);
            }
        }
        if let Some(ip) = requested {
            if self.available_for(ip, mac, now) {
                return Some(ip);
            }
        }
        let size = u64::from(self.end - self.start) + 1;
        let seed = mac
            .0
            .iter()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
        (0..size)
            .map(|i| Ipv4Addr::from(self.start + ((seed + i) % size) as u32))
            .find(|ip| self.available_for(*ip, mac, now))
    }

    pub fn hold_offer(&mut self, mac: MacAddr, ip: Ipv4Addr, now: u64) {
        let keep_bound = self
            .by_mac
            .get(&mac)
            .is_some_and(|l| l.ip == ip && l.state == LeaseState::Bound && l.expires > now);
        if keep_bound {
            return;
        }
        self.insert(Lease {
            mac,
            ip,
            expires: now + OFFER_HOLD_SECS,
            state: LeaseState::Offered,
            hostname: None,
        });
    }

    pub fn bind(
        &mut self,
        mac: MacAddr,
        ip: Ipv4Addr,
        lease_secs: u32,
        hostname: Option<String>,
        now: u64,
    ) {
        self.insert(Lease {
            mac,
            ip,
            expires: now + u64::from(lease_secs),
            state: LeaseState::Bound,
            hostname,
        });
    }

    /// Forgets the client's lease if it holds `ip`.
    pub fn release(&mut self, mac: &MacAddr, ip: Ipv4Addr) -> bool {
        if self.by_mac.get(mac).is_some_and(|l| l.ip == ip) {
            self.by_mac.remove(mac);
            self.by_ip.remove(&ip);
            self.dirty = true;
            return true;
        }
        false
    }

    /// The client found `ip` in use by someone else: drop its lease and avoid
    /// the address for a while.
    pub fn decline(&mut self, mac: &MacAddr, ip: Ipv4Addr, now: u64) {
        self.release(mac, ip);
        if self.in_pool(ip) {
            self.quarantined.insert(ip, now + DECLINE_QUARANTINE_SECS);
        }
    }

    /// The bound leases to persist, if anything changed since the last
    /// snapshot. Cheap (a copy of the leases): callers take it under their
    /// lock and write it outside, so an fsync never stalls DHCP. Offers are
    /// not persisted: they are worthless after a restart.
    pub fn snapshot_if_dirty(&mut self, now: u64) -> Option<LeaseSnapshot> {
        let path = self.path.clone().filter(|_| self.dirty)?;
        self.quarantined.retain(|_, until| *until > now);
        self.dirty = false;
        Some(LeaseSnapshot {
            path,
            leases: self.active(now).cloned().collect(),
        })
    }

    /// Marks the store changed (e.g. after a snapshot failed to write).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Snapshot and write in one step (tests, shutdown).
    pub fn flush_if_dirty(&mut self, now: u64) -> Result<bool, LeaseError> {
        match self.snapshot_if_dirty(now) {
            Some(snapshot) => snapshot
                .write()
                .map(|()| true)
                .inspect_err(|_| self.dirty = true),
            None => Ok(false),
        }
    }
}

/// Leases to be written to the lease file.
pub struct LeaseSnapshot {
    path: PathBuf,
    leases: Vec<Lease>,
}

impl LeaseSnapshot {
    /// Writes atomically and durably (fsync), sorted by address.
    pub fn write(mut self) -> Result<(), LeaseError> {
        self.leases.sort_by_key(|l| u32::from(l.ip));
        let path = self.path;
        let bytes = serde_json::to_vec(&LeaseFile {
            leases: self.leases,
        })
        .map_err(|source| LeaseError::Parse {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes, true).map_err(|source| LeaseError::Write { path, source })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr([0x52, 0x54, 0, 0, 0, n])
    }
    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }

    #[test]
    fn pool_exhausts_then_reuses_expired() {
        let mut store = LeaseStore::new(ip(10), ip(12), []);
        for n in 0..3 {
            let a = store.choose(&mac(n), None, None, 100).unwrap();
            store.bind(mac(n), a, 60, None, 100);
        }
        assert_eq!(
            store.choose(&mac(9), None, None, 100),
            None,
            "pool of 3 is exhausted"
        );
        assert!(
            store.choose(&mac(9), None, None, 161).is_some(),
            "expired leases are reusable"
        );
    }

    #[test]
    fn reservation_is_never_given_to_others() {
        let store = LeaseStore::new(ip(10), ip(10), [(mac(1), ip(10))]);
        assert_eq!(store.choose(&mac(2), None, Some(ip(10)), 0), None);
        assert_eq!(store.choose(&mac(1), Some(ip(10)), None, 0), Some(ip(10)));
    }

    #[test]
    fn client_keeps_its_address() {
        let mut store = LeaseStore::new(ip(10), ip(200), []);
        let first = store.choose(&mac(1), None, None, 0).unwrap();
        store.bind(mac(1), first, 60, None, 0);
        assert_eq!(store.choose(&mac(1), None, Some(ip(99)), 10), Some(first));
    }

    #[test]
    fn declined_address_is_quarantined() {
        let mut store = LeaseStore::new(ip(10), ip(11), []);
        store.bind(mac(1), ip(10), 60, None, 0);
        store.decline(&mac(1), ip(10), 0);
        assert!(!store.available_for(ip(10), &mac(2), 1));
        assert!(store.available_for(ip(10), &mac(2), DECLINE_QUARANTINE_SECS + 1));
    }

    #[test]
    fn persists_and_reloads_bound_leases_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases").join("leases.json");
        let mut store = LeaseStore::new(ip(10), ip(20), [])
            .load(path.clone(), 0)
            .unwrap();
        store.bind(mac(1), ip(15), 3600, Some("n1".into()), 0);
        store.hold_offer(mac(2), ip(16), 0);
        assert!(store.flush_if_dirty(0).unwrap());
        assert!(
            !store.flush_if_dirty(0).unwrap(),
            "clean store is not rewritten"
        );
        let again = LeaseStore::new(ip(10), ip(20), []).load(path, 10).unwrap();
        assert_eq!(again.lease_of(&mac(1)).map(|l| l.ip), Some(ip(15)));
        assert!(again.lease_of(&mac(2)).is_none());
    }

    #[test]
    fn corrupt_lease_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = LeaseStore::new(ip(10), ip(20), [])
            .load(path, 0)
            .unwrap_err();
        assert!(err.to_string().contains("leases.json"), "{err}");
    }
}
