//! `OfferBook`: the offers this server has made and not yet seen answered.
//!
//! An offer is soft: it does not take its address out of the pool. Two
//! clients may be offered the same address, and the first REQUEST binds it
//! (the other is NAKed and starts over), as dnsmasq does. Holding offered
//! addresses exclusively let a flood of DISCOVERs from random MACs empty a
//! LAN-sized pool for the whole hold time (measured: a 101-address pool, a
//! 2,000-MAC flood, the legitimate client without a lease for 30 s).
//!
//! The book remembers an offer only to check that a REQUEST in SELECTING
//! state answers it (RFC 2131 4.3.2). It is bounded (`BoundedMap`): a flood
//! forgets the oldest offers, which costs a legitimate client at worst a
//! NAK and a new DISCOVER. Owns that memory; it never decides an answer.

use super::ClientId;
use crate::bounded::BoundedMap;
use kindling_site::MacAddr;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// How many outstanding offers are remembered. At the 2,000 DISCOVERs/s a
/// single LAN host manages here, an offer survives ~2 s of flood, far more
/// than a client's DISCOVER → REQUEST round trip (milliseconds).
pub const OFFERS_KEPT: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub ip: Ipv4Addr,
    pub client_id: Option<ClientId>,
    /// Unix seconds.
    pub expires: u64,
}

#[derive(Debug)]
pub struct OfferBook {
    by_mac: BoundedMap<MacAddr, Offer>,
    /// The last MAC offered each address: lets address selection prefer
    /// addresses nobody was offered. Keys are pool or reserved addresses,
    /// so this is bounded by the pool.
    last_offered: HashMap<Ipv4Addr, MacAddr>,
}

impl Default for OfferBook {
    fn default() -> Self {
        Self {
            by_mac: BoundedMap::new(OFFERS_KEPT),
            last_offered: HashMap::new(),
        }
    }
}

impl OfferBook {
    pub fn record(&mut self, mac: MacAddr, offer: Offer) {
        self.last_offered.insert(offer.ip, mac);
        self.by_mac.insert(mac, offer);
    }

    /// `mac`'s outstanding offer, expired or not (the caller checks).
    pub fn of(&self, mac: &MacAddr) -> Option<&Offer> {
        self.by_mac.get(mac)
    }

    pub fn forget(&mut self, mac: &MacAddr) {
        self.by_mac.remove(mac);
    }

    /// Whether someone other than `mac` holds an unexpired offer of `ip`.
    pub fn offered_to_other(&self, ip: Ipv4Addr, mac: &MacAddr, now: u64) -> bool {
        self.last_offered.get(&ip).is_some_and(|other| {
            other != mac
                && self
                    .by_mac
                    .get(other)
                    .is_some_and(|o| o.ip == ip && o.expires > now)
        })
    }

    /// Drops expired offers (called about once a second, not per packet).
    pub fn prune(&mut self, now: u64) {
        self.by_mac.retain(|_, o| o.expires > now);
        let by_mac = &self.by_mac;
        self.last_offered
            .retain(|ip, mac| by_mac.get(mac).is_some_and(|o| o.ip == *ip));
    }

    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mac(n: u16) -> MacAddr {
        let [a, b] = n.to_be_bytes();
        MacAddr([2, 0, 0, 0, a, b])
    }

    #[test]
    fn offers_are_bounded_and_soft() {
        let mut book = OfferBook::default();
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        for n in 0..20_000u16 {
            book.record(
                mac(n),
                Offer {
                    ip,
                    client_id: None,
                    expires: 30,
                },
            );
        }
        assert!(book.len() <= OFFERS_KEPT);
        assert!(book.of(&mac(19_999)).is_some());
        assert!(book.offered_to_other(ip, &mac(1), 0));
        assert!(!book.offered_to_other(ip, &mac(19_999), 0));
        assert!(!book.offered_to_other(ip, &mac(1), 30), "expired");
        book.prune(30);
        assert!(book.is_empty());
    }
}
