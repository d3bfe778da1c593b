//! `LeaseStore`: which address each client holds, until when; the offers
//! outstanding (`offers`); address selection for DHCP offers; the lease
//! file (`file`).
//!
//! Owns the address pool and nothing else: it never decides boot options,
//! whether a message comes from a lease's holder (`dhcp::holder`) or when
//! the file is written (`dhcp::commit`), and never touches sockets.
//! Only ACKs change what is persisted: offers live in memory, so a flood of
//! DISCOVERs writes nothing.
//!
//! Memory is bounded by the pool: bound leases and quarantined addresses are
//! keyed by pool (or reserved) addresses, offers by a bounded book.

pub mod file;
pub mod offers;

pub use file::{LeaseError, LeaseSnapshot};
pub use offers::{Offer, OfferBook};

use kindling_site::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// How long an offer waits for the client's REQUEST.
pub const OFFER_HOLD_SECS: u64 = 30;
/// How long a declined address (in use by someone we do not know) is avoided.
pub const DECLINE_QUARANTINE_SECS: u64 = 600;

/// A DHCP client identifier (option 61) as the client sent it. Stored with
/// the lease so only the same client can release, decline or renew it; in
/// the lease file as lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(Vec<u8>);

impl ClientId {
    pub fn new(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for ClientId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let digits = text.as_bytes();
        if digits.len() % 2 != 0 {
            return Err(serde::de::Error::custom(
                "client_id: odd number of hex digits",
            ));
        }
        digits
            .chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("client_id: not hex"))
            })
            .collect::<Result<Vec<u8>, _>>()
            .map(ClientId)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Written by earlier versions for offers; never persisted now, and
    /// skipped when a file holding one is loaded.
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
    /// The client identifier of the REQUEST that bound it, if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
}

/// The pool of one range plus fixed reservations.
#[derive(Debug)]
pub struct LeaseStore {
    start: u32,
    end: u32,
    /// Bound leases (also expired ones, until their address is reused).
    by_mac: HashMap<MacAddr, Lease>,
    by_ip: HashMap<Ipv4Addr, MacAddr>,
    offers: OfferBook,
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
            offers: OfferBook::default(),
            quarantined: HashMap::new(),
            reserved: reserved.into_iter().map(|(mac, ip)| (ip, mac)).collect(),
            path: None,
            dirty: false,
        }
    }

    pub fn in_pool(&self, ip: Ipv4Addr) -> bool {
        (self.start..=self.end).contains(&u32::from(ip))
    }

    /// The client's bound lease (possibly expired), if it has one.
    pub fn lease_of(&self, mac: &MacAddr) -> Option<&Lease> {
        self.by_mac.get(mac)
    }

    /// The client's outstanding offer (possibly expired), if any.
    pub fn offer_of(&self, mac: &MacAddr) -> Option<&Offer> {
        self.offers.of(mac)
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

    /// Whether `mac` may be bound to `ip` right now: in the pool (or reserved
    /// for it), not quarantined, not bound to another client. Offers to
    /// others do not count: they are soft (see `offers`).
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

    /// Chooses the address to offer: the reservation, else the client's
    /// current lease or offer, else the address it asks for, else a free
    /// one nobody else was offered, else a free one offered to someone else
    /// (offers are soft). Starting the free search at a hash of the MAC keeps
    /// a client's address stable across lost lease files. `None` when every
    /// address is bound or quarantined.
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
        let own = self.by_mac.get(mac).map(|l| l.ip);
        let offered = self.offers.of(mac).map(|o| o.ip);
        let free = |ip: &Ipv4Addr| self.available_for(*ip, mac, now);
        let unclaimed = |ip: &Ipv4Addr| free(ip) && !self.offers.offered_to_other(*ip, mac, now);
        // The client's own offer stays stable even if a flood was offered
        // the same address since: a client that repeats its DISCOVER and
        // then REQUESTs the first OFFER still matches.
        if let Some(ip) = own.filter(free).or_else(|| offered.filter(free)) {
            return Some(ip);
        }
        if let Some(ip) = requested.filter(unclaimed) {
            return Some(ip);
        }
        let size = u64::from(self.end - self.start) + 1;
        let seed = mac
            .0
            .iter()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
        let pool =
            || (0..size).map(move |i| Ipv4Addr::from(self.start + ((seed + i) % size) as u32));
        pool().find(unclaimed).or_else(|| pool().find(free))
    }

    /// Remembers an offer of `ip` to `mac` (in memory only).
    pub fn offer(&mut self, mac: MacAddr, client_id: Option<ClientId>, ip: Ipv4Addr, now: u64) {
        self.offers.record(
            mac,
            Offer {
                ip,
                client_id,
                expires: now + OFFER_HOLD_SECS,
            },
        );
    }

    /// Forgets `mac`'s offer (it chose another server).
    pub fn forget_offer(&mut self, mac: &MacAddr) {
        self.offers.forget(mac);
    }

    pub fn bind(
        &mut self,
        mac: MacAddr,
        client_id: Option<ClientId>,
        ip: Ipv4Addr,
        lease_secs: u32,
        hostname: Option<String>,
        now: u64,
    ) {
        self.offers.forget(&mac);
        self.insert(Lease {
            mac,
            ip,
            expires: now + u64::from(lease_secs),
            state: LeaseState::Bound,
            hostname,
            client_id,
        });
    }

    /// Forgets the client's lease if it holds `ip`. Whether the message
    /// came from the holder is `dhcp::holder`'s decision, made before.
    pub fn release(&mut self, mac: &MacAddr, ip: Ipv4Addr) -> bool {
        if self.by_mac.get(mac).is_some_and(|l| l.ip == ip) {
            self.by_mac.remove(mac);
            self.by_ip.remove(&ip);
            self.dirty = true;
            return true;
        }
        false
    }

    /// The holder found `ip` in use by someone else: drop its lease and
    /// avoid the address for a while.
    pub fn decline(&mut self, mac: &MacAddr, ip: Ipv4Addr, now: u64) {
        self.release(mac, ip);
        if self.in_pool(ip) {
            self.quarantined.insert(ip, now + DECLINE_QUARANTINE_SECS);
        }
    }

    /// Drops expired offers and quarantines (about once a second).
    pub fn prune(&mut self, now: u64) {
        self.offers.prune(now);
        self.quarantined.retain(|_, until| *until > now);
    }

    /// Outstanding offers remembered (for status).
    pub fn offers_outstanding(&self) -> usize {
        self.offers.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    pub(crate) fn mac(n: u8) -> MacAddr {
        MacAddr([0x52, 0x54, 0, 0, 0, n])
    }
    pub(crate) fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }

    #[test]
    fn pool_exhausts_by_bound_leases_then_reuses_expired() {
        let mut store = LeaseStore::new(ip(10), ip(12), []);
        for n in 0..3 {
            let a = store.choose(&mac(n), None, None, 100).unwrap();
            store.bind(mac(n), None, a, 60, None, 100);
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
    fn offers_do_not_exhaust_the_pool_but_are_avoided_while_possible() {
        let mut store = LeaseStore::new(ip(10), ip(11), []);
        let first = store.choose(&mac(1), None, None, 0).unwrap();
        store.offer(mac(1), None, first, 0);
        let second = store.choose(&mac(2), None, None, 0).unwrap();
        assert_ne!(first, second, "a free, unoffered address comes first");
        store.offer(mac(2), None, second, 0);
        assert_eq!(
            store.choose(&mac(1), None, None, 1),
            Some(first),
            "a repeated DISCOVER gets the same offer"
        );
        for n in 3..50 {
            let ip = store.choose(&mac(n), None, None, 1);
            assert!(ip.is_some(), "offers never exhaust the pool");
            store.offer(mac(n), None, ip.unwrap(), 1);
        }
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
        store.bind(mac(1), None, first, 60, None, 0);
        assert_eq!(store.choose(&mac(1), None, Some(ip(99)), 10), Some(first));
    }

    #[test]
    fn declined_address_is_quarantined() {
        let mut store = LeaseStore::new(ip(10), ip(11), []);
        store.bind(mac(1), None, ip(10), 60, None, 0);
        store.decline(&mac(1), ip(10), 0);
        assert!(!store.available_for(ip(10), &mac(2), 1));
        store.prune(DECLINE_QUARANTINE_SECS + 1);
        assert!(store.available_for(ip(10), &mac(2), DECLINE_QUARANTINE_SECS + 1));
    }

    #[test]
    fn client_id_round_trips_as_hex_and_refuses_junk() {
        let id: ClientId = serde_json::from_str("\"01ff00\"").unwrap();
        assert_eq!(id.as_bytes(), &[1, 0xff, 0]);
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"01ff00\"");
        assert!(serde_json::from_str::<ClientId>("\"0\"").is_err());
        assert!(serde_json::from_str::<ClientId>("\"zz\"").is_err());
    }
}
