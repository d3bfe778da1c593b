//! Who may receive a MAC's node documents (user-data, meta-data, preseed,
//! events): the address that holds that MAC's DHCP lease right now, as this
//! appliance's own DHCP server recorded it. Looked up in-process, per
//! request: the PXE process owns both the leases and the HTTP server.
//!
//! In proxy DHCP mode the appliance hands out no leases; there the binding
//! is the kernel's neighbour (ARP) table: the requester's address must
//! resolve to the MAC it asks for. Both are as strong as the LAN's MAC
//! addresses: a host that spoofs the victim's MAC and wins its lease (or its
//! ARP entry) passes. docs/security/enrollment.md says so.
//!
//! Owns the check only; never changes a lease.

use crate::dhcp::DhcpResponder;
use crate::leases::LeaseState;
use kindling_site::MacAddr;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Why a requester may not act for a MAC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotHolder {
    #[error("{mac} holds no DHCP lease from this appliance")]
    NoLease { mac: MacAddr },
    #[error("{peer} does not hold {mac}'s DHCP lease")]
    OtherAddress { mac: MacAddr, peer: IpAddr },
    #[error("{peer} is not an IPv4 address on the bootstrap LAN")]
    NotIpv4 { peer: IpAddr },
    #[error("{peer} is not {mac} by the neighbour table (proxy DHCP mode){}", .found.map(|m| format!(": it is {m}")).unwrap_or_default())]
    NotNeighbour {
        mac: MacAddr,
        peer: IpAddr,
        found: Option<MacAddr>,
    },
}

/// Answers "may `peer` act for `mac` now?".
pub trait LeaseHolders: Send + Sync {
    /// The address the requester holds for `mac`, or why it holds none.
    fn check(&self, mac: &MacAddr, peer: IpAddr, now: u64) -> Result<Ipv4Addr, NotHolder>;
}

fn ipv4(peer: IpAddr) -> Result<Ipv4Addr, NotHolder> {
    match peer.to_canonical() {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(_) => Err(NotHolder::NotIpv4 { peer }),
    }
}

/// Authoritative mode: the appliance's own lease store. Only a bound,
/// unexpired lease counts (an offer does not).
pub struct OwnLeases {
    responder: Arc<Mutex<DhcpResponder>>,
}

impl OwnLeases {
    pub fn new(responder: Arc<Mutex<DhcpResponder>>) -> Self {
        Self { responder }
    }
}

impl LeaseHolders for OwnLeases {
    fn check(&self, mac: &MacAddr, peer: IpAddr, now: u64) -> Result<Ipv4Addr, NotHolder> {
        let held = {
            let responder = self
                .responder
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            responder
                .leases()
                .lease_of(mac)
                .filter(|l| l.state == LeaseState::Bound && l.expires > now)
                .map(|l| l.ip)
        };
        let held = held.ok_or(NotHolder::NoLease { mac: *mac })?;
        if ipv4(peer)? == held {
            Ok(held)
        } else {
            Err(NotHolder::OtherAddress { mac: *mac, peer })
        }
    }
}

/// Proxy mode: the kernel's neighbour table (`/proc/net/arp`).
pub struct Neighbours {
    table: PathBuf,
}

impl Default for Neighbours {
    /// The calling thread's network namespace's table (`thread-self`: a
    /// thread that entered another namespace, as the tests' services do,
    /// sees that one; `/proc/net` follows the process's main thread).
    fn default() -> Self {
        Self {
            table: "/proc/thread-self/net/arp".into(),
        }
    }
}

impl Neighbours {
    /// Reads another table file (tests).
    pub fn at(table: PathBuf) -> Self {
        Self { table }
    }
}

/// The MAC of `ip` in `/proc/net/arp`'s text, if the entry is complete.
pub fn neighbour_mac(table: &str, ip: Ipv4Addr) -> Option<MacAddr> {
    const COMPLETE: u32 = 0x2;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (addr, flags, hw) = (f.first()?, f.get(2)?, f.get(3)?);
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
        (addr.parse::<Ipv4Addr>().ok()? == ip && flags & COMPLETE != 0)
            .then(|| hw.parse().ok())
            .flatten()
    })
}

impl LeaseHolders for Neighbours {
    fn check(&self, mac: &MacAddr, peer: IpAddr, _now: u64) -> Result<Ipv4Addr, NotHolder> {
        let ip = ipv4(peer)?;
        let found = std::fs::read_to_string(&self.table)
            .ok()
            .and_then(|t| neighbour_mac(&t, ip));
        if found == Some(*mac) {
            Ok(ip)
        } else {
            Err(NotHolder::NotNeighbour {
                mac: *mac,
                peer,
                found,
            })
        }
    }
}

/// A fixed table of who holds which MAC's lease: for tests and tools that
/// serve node documents without running DHCP.
#[derive(Debug, Clone, Default)]
pub struct FixedHolders(pub Vec<(MacAddr, Ipv4Addr)>);

impl LeaseHolders for FixedHolders {
    fn check(&self, mac: &MacAddr, peer: IpAddr, _now: u64) -> Result<Ipv4Addr, NotHolder> {
        let held = self
            .0
            .iter()
            .find(|(m, _)| m == mac)
            .map(|(_, ip)| *ip)
            .ok_or(NotHolder::NoLease { mac: *mac })?;
        if ipv4(peer)? == held {
            Ok(held)
        } else {
            Err(NotHolder::OtherAddress { mac: *mac, peer })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);
    const TABLE: &str =
        "IP address       HW type     Flags       HW address            Mask     Device
192.168.100.50   0x1         0x2         52:54:00:6b:00:10     *        br0
192.168.100.51   0x1         0x0         52:54:00:6b:00:10     *        br0
192.168.100.52   0x1         0x2         52:54:00:6b:00:99     *        br0
";

    #[test]
    fn neighbour_table_binds_complete_entries_only() {
        let ip = |n| Ipv4Addr::new(192, 168, 100, n);
        assert_eq!(neighbour_mac(TABLE, ip(50)), Some(MAC));
        assert_eq!(neighbour_mac(TABLE, ip(51)), None, "incomplete entry");
        assert_eq!(neighbour_mac(TABLE, ip(53)), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("arp");
        std::fs::write(&path, TABLE).unwrap();
        let n = Neighbours::at(path);
        assert_eq!(n.check(&MAC, ip(50).into(), 0), Ok(ip(50)));
        let e = n.check(&MAC, ip(52).into(), 0).unwrap_err();
        assert!(e.to_string().ends_with("it is 52:54:00:6b:00:99"), "{e}");
        assert!(matches!(
            n.check(&MAC, "::1".parse().unwrap(), 0),
            Err(NotHolder::NotIpv4 { .. })
        ));
    }

    #[test]
    fn own_leases_answer_only_the_bound_holder() {
        use crate::leases::LeaseStore;
        let ip = |n| Ipv4Addr::new(192, 168, 100, n);
        let settings = crate::settings::PxeSettings::from_site(
            &kindling_inventory::testing::lab_site(),
            Default::default(),
        )
        .unwrap();
        let mut leases = LeaseStore::new(ip(100), ip(200), []);
        leases.offer(MAC, None, ip(101), 10);
        let responder = Arc::new(Mutex::new(DhcpResponder::new(
            settings,
            crate::dhcp::boot::BootFiles::default(),
            leases,
        )));
        let own = OwnLeases::new(responder.clone());
        assert_eq!(
            own.check(&MAC, ip(101).into(), 11),
            Err(NotHolder::NoLease { mac: MAC }),
            "an offer is not a lease"
        );
        responder
            .lock()
            .unwrap()
            .leases_mut()
            .bind(MAC, None, ip(101), 3600, None, 12);
        assert_eq!(own.check(&MAC, ip(101).into(), 13), Ok(ip(101)));
        let v4_mapped: IpAddr = "::ffff:192.168.100.101".parse().unwrap();
        assert_eq!(own.check(&MAC, v4_mapped, 13), Ok(ip(101)));
        assert!(matches!(
            own.check(&MAC, ip(102).into(), 13),
            Err(NotHolder::OtherAddress { .. })
        ));
        assert_eq!(
            own.check(&MAC, ip(101).into(), 3613),
            Err(NotHolder::NoLease { mac: MAC }),
            "an expired lease is no lease"
        );
    }
}
