//! Applying the API's forget requests (`crate::forget`) to the live
//! inventory.

use super::{lock, Inventory};
use crate::forget::ForgetRequest;
use kindling_site::MacAddr;
use std::collections::BTreeMap;

impl Inventory {
    /// Drops every record last seen before its MAC's forget request; the
    /// MACs dropped. The next flush writes `nodes.json` without them.
    pub fn apply_forgets(&self, requests: &BTreeMap<MacAddr, ForgetRequest>) -> Vec<MacAddr> {
        let mut nodes = lock(&self.nodes);
        let doomed: Vec<MacAddr> = requests
            .iter()
            .filter(|(mac, request)| {
                nodes
                    .map
                    .get(mac)
                    .is_some_and(|r| r.seen.last_seen.saturating_mul(1000) < request.requested_ms)
            })
            .map(|(mac, _)| *mac)
            .collect();
        for mac in &doomed {
            nodes.map.remove(mac);
        }
        if !doomed.is_empty() {
            nodes.dirty = true;
        }
        doomed
    }
}
