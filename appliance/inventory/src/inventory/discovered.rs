//! The cap on discovered-but-never-provisioned records: a DHCP packet from
//! any MAC creates a `discovered` record, so without a bound a LAN host
//! inventing MACs grows `nodes.json` (and its write) without end.
//!
//! New records of unprotected MACs join a queue in the order they were
//! first seen; when the queue is longer than the cap, the oldest record
//! still `discovered` is forgotten and counted. Never forgotten: MACs in
//! the site's `[[nodes]]`, MACs assigned a profile at runtime, records
//! holding an enrollment grant, and nodes past discovery (booting,
//! installed, joined, or any later state). Queue
//! entries of records that moved on are dropped when they reach the front,
//! so the queue, and with it the discovered records, stay within the cap.
//!
//! Owns that rule; it never decides a node's state.

use super::{lock, Inventory, NodeRecord};
use kindling_api::nodes::NodeState;
use kindling_site::MacAddr;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The default cap (also `pxe.max_discovered`'s default in the site model).
pub const DEFAULT_MAX_DISCOVERED: usize = 1024;

#[derive(Debug)]
pub(super) struct DiscoveredCap {
    /// MACs of evictable records, oldest first (may hold some that moved on).
    order: VecDeque<MacAddr>,
    cap: usize,
    evicted: u64,
}

impl DiscoveredCap {
    /// The queue for records loaded from `nodes.json`, oldest first.
    pub(super) fn from_records(map: &BTreeMap<MacAddr, NodeRecord>) -> Self {
        let mut found: Vec<(u64, MacAddr)> = map
            .values()
            .filter(|r| r.state == NodeState::Discovered)
            .map(|r| (r.seen.first_seen, r.mac))
            .collect();
        found.sort();
        Self {
            order: found.into_iter().map(|(_, mac)| mac).collect(),
            cap: DEFAULT_MAX_DISCOVERED,
            evicted: 0,
        }
    }

    /// A record was created for `mac`: queue it. True when the queue is now
    /// over the cap (the caller then evicts, outside this lock's caller).
    pub(super) fn created(&mut self, mac: MacAddr, site_node: bool) -> bool {
        if !site_node {
            self.order.push_back(mac);
        }
        self.order.len() > self.cap
    }

    fn enforce(
        &mut self,
        map: &mut BTreeMap<MacAddr, NodeRecord>,
        protected: impl Fn(&MacAddr) -> bool,
    ) {
        while self.order.len() > self.cap {
            let Some(mac) = self.order.pop_front() else {
                break;
            };
            let evictable = map
                .get(&mac)
                .is_some_and(|r| evictable(r) && !protected(&mac));
            if evictable {
                map.remove(&mac);
                self.evicted += 1;
            }
        }
    }
}

/// A record that never got past discovery and holds no enrollment grant:
/// forgetting a grant's record would let its MAC be granted again.
fn evictable(r: &NodeRecord) -> bool {
    r.state == NodeState::Discovered && r.seen.grant.is_none()
}

impl Inventory {
    /// Sets the cap on discovered-but-never-provisioned records
    /// (`pxe.max_discovered`; at least 1) and applies it at once.
    pub fn with_discovered_cap(self, cap: usize) -> Self {
        lock(&self.nodes).discovered.cap = cap.max(1);
        self.evict_excess();
        self
    }

    /// The cap in force.
    pub fn discovered_cap(&self) -> usize {
        lock(&self.nodes).discovered.cap
    }

    /// Records forgotten because of the cap since the service started.
    pub fn evicted(&self) -> u64 {
        lock(&self.nodes).discovered.evicted
    }

    /// Forgets the oldest evictable records beyond the cap. Takes the
    /// assignments and the nodes lock one after the other, never both.
    pub(super) fn evict_excess(&self) {
        let assigned: BTreeSet<MacAddr> = lock(&self.cached).map.keys().copied().collect();
        let site = &self.policy.reservations;
        let mut guard = lock(&self.nodes);
        let nodes = &mut *guard;
        let before = nodes.map.len();
        nodes.discovered.enforce(&mut nodes.map, |mac| {
            site.contains_key(mac) || assigned.contains(mac)
        });
        if nodes.map.len() != before {
            nodes.dirty = true;
        }
    }

    /// Whether `mac` is one of the site's `[[nodes]]` (never queued).
    pub(super) fn is_site_node(&self, mac: &MacAddr) -> bool {
        self.policy.reservations.contains_key(mac)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::testing::lab_policy;
    use kindling_api::nodes::Firmware;

    const DEV: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);

    fn fake(n: u32) -> MacAddr {
        let b = n.to_be_bytes();
        MacAddr([2, 0xfa, b[0], b[1], b[2], b[3]])
    }

    #[test]
    fn a_flood_of_macs_stays_under_the_cap_and_spares_provisioned_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(dir.path(), lab_policy())
            .0
            .with_discovered_cap(100);
        inv.observe_dhcp(DEV, None, Some(0), Firmware::Bios, 1);
        inv.observe_dhcp(fake(0), None, None, Firmware::None, 1);
        inv.observe_boot_script(fake(0), "dev", 2);
        inv.observe_dhcp(fake(1), None, None, Firmware::None, 2);
        inv.assign(fake(1), Some("prod")).unwrap();
        let _ = inv.assignments(); // load the assignment as the service does
                                   // An unknown MAC that fetched user-data without a boot script: its
                                   // grant is counted against its profile's allowance, so it stays.
        let granted = MacAddr([2, 0xfb, 0, 0, 0, 1]);
        inv.observe_dhcp(granted, None, None, Firmware::None, 2);
        let request = crate::ClaimRequest {
            profile: "dev",
            address: std::net::Ipv4Addr::new(192, 168, 100, 120),
            unknown_allowance: Some(1),
        };
        assert_eq!(inv.claim_grant(granted, &request, 2), crate::Claim::Granted);
        for n in 2..10_002 {
            inv.observe_dhcp(fake(n), None, None, Firmware::None, 3);
        }
        let discovered = inv
            .nodes()
            .iter()
            .filter(|r| r.state == NodeState::Discovered)
            .count();
        // DEV (site node), fake(1) (assigned) and `granted` are discovered
        // but protected.
        assert!(discovered <= 100 + 3, "{discovered} discovered records");
        assert!(
            inv.node(&granted).is_some(),
            "a record holding a grant is never forgotten"
        );
        assert!(inv.node(&DEV).is_some(), "site nodes are never forgotten");
        assert!(
            inv.node(&fake(0)).is_some(),
            "booting nodes are never forgotten"
        );
        assert!(
            inv.node(&fake(1)).is_some(),
            "assigned nodes are never forgotten"
        );
        assert!(inv.node(&fake(10_001)).is_some(), "the newest is kept");
        assert!(inv.node(&fake(2)).is_none(), "the oldest is forgotten");
        assert_eq!(inv.evicted() as usize + discovered, 10_000 + 3);
    }

    #[test]
    fn a_lower_cap_applies_to_records_loaded_from_disk_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(dir.path(), lab_policy()).0;
        for n in 0..50 {
            inv.observe_dhcp(fake(n), None, None, Firmware::None, u64::from(n));
        }
        inv.flush_if_dirty().unwrap();
        let inv = Inventory::open(dir.path(), lab_policy())
            .0
            .with_discovered_cap(10);
        assert_eq!(inv.nodes().len(), 10);
        assert_eq!(inv.evicted(), 40);
        assert!(inv.node(&fake(49)).is_some() && inv.node(&fake(39)).is_none());
        assert_eq!(inv.discovered_cap(), 10);
    }
}
