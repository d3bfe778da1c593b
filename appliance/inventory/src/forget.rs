//! Forget requests (`POST /v1/nodes/MAC/forget`) on their way from the API
//! to the PXE service: `inventory/forget.json`, MAC → when the latest
//! request was made.
//!
//! The API process writes (under the file's lock, atomically); the PXE
//! service, which owns `nodes.json`, drops every record last seen before
//! its MAC's request (`Inventory::apply_forgets`), once a second in its
//! write-behind loop. A time rather than a counter because the record that
//! would remember an applied counter is the one being dropped: a node that
//! PXE-boots after the request is seen later and kept. Activity within the
//! same second as the request counts as before it (`last_seen` is in whole
//! seconds). It never talks to the network.

use crate::error::InventoryError;
use kindling_site::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One MAC's forget requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetRequest {
    /// The latest request, Unix milliseconds.
    pub requested_ms: u64,
    /// Requests made so far (for people reading the file).
    pub count: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ForgetFile {
    #[serde(default)]
    requests: BTreeMap<MacAddr, ForgetRequest>,
}

/// `inventory/forget.json`.
#[derive(Debug, Clone)]
pub struct ForgetStore {
    path: PathBuf,
}

impl ForgetStore {
    /// Under the data partition `state_dir`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("inventory").join("forget.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every request; a missing file is none.
    pub fn load(&self) -> Result<BTreeMap<MacAddr, ForgetRequest>, InventoryError> {
        crate::shared_file::read_json::<ForgetFile>(&self.path).map(|f| f.requests)
    }

    /// Records a request for `mac` made at `now_ms`; returns it.
    pub fn request(&self, mac: MacAddr, now_ms: u64) -> Result<ForgetRequest, InventoryError> {
        crate::shared_file::with_lock(&self.path, || {
            let mut file = ForgetFile {
                requests: self.load()?,
            };
            let entry = file.requests.entry(mac).or_default();
            entry.count += 1;
            // A clock stepped back never un-forgets: keep the later time.
            entry.requested_ms = entry.requested_ms.max(now_ms);
            let request = *entry;
            crate::shared_file::write_json(&self.path, &file)?;
            Ok(request)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testing::lab_policy;
    use crate::Inventory;
    use kindling_api::nodes::Firmware;

    const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x42]);

    #[test]
    fn a_request_drops_the_record_seen_before_it_and_not_a_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let (inventory, problem) = Inventory::open(dir.path(), lab_policy());
        assert_eq!(problem, None);
        inventory.observe_dhcp(MAC, None, None, Firmware::None, 100);
        assert!(inventory.node(&MAC).is_some());

        let store = ForgetStore::in_state_dir(dir.path());
        assert!(store.load().unwrap().is_empty(), "no file is no request");
        store.request(MAC, 100_500).unwrap();
        let requests = store.load().unwrap();
        assert_eq!(requests[&MAC].count, 1);
        assert_eq!(inventory.apply_forgets(&requests), vec![MAC]);
        assert!(inventory.node(&MAC).is_none());
        assert!(inventory.flush_if_dirty().unwrap(), "the drop is written");
        assert!(crate::read_nodes(&crate::nodes_file(dir.path()))
            .unwrap()
            .iter()
            .all(|n| n.mac != MAC));

        // The node PXE-boots again later: it is kept.
        inventory.observe_dhcp(MAC, None, None, Firmware::None, 101);
        assert!(inventory.apply_forgets(&requests).is_empty());
        assert!(inventory.node(&MAC).is_some());
    }

    #[test]
    fn a_damaged_file_is_an_error_and_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = ForgetStore::in_state_dir(dir.path());
        std::fs::create_dir_all(store.path().parent().unwrap()).unwrap();
        std::fs::write(store.path(), b"{broken").unwrap();
        let e = store.request(MAC, 1).unwrap_err();
        assert!(e.to_string().contains("forget.json"), "{e}");
        assert_eq!(std::fs::read(store.path()).unwrap(), b"{broken");
    }
}
