//! Re-arm requests (`POST /v1/nodes/MAC/reprovision`) on their way from the
//! API to the PXE service: `inventory/reprovision.json`, MAC → a generation
//! counter that only grows.
//!
//! The API process writes (under the file's lock, atomically); the PXE
//! service, which owns the grant state in `nodes.json`, reads and applies
//! every generation newer than the one the node last had. A counter rather
//! than a time, so a clock step cannot lose or repeat a request. It never
//! talks to the network.

use crate::error::InventoryError;
use kindling_site::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// One MAC's re-arm requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rearm {
    /// Requests made so far; the node's grant is re-armed when this is
    /// above the count its record has applied.
    pub generation: u64,
    /// When the latest was made, Unix milliseconds (for people).
    pub requested_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ReprovisionFile {
    #[serde(default)]
    requests: BTreeMap<MacAddr, Rearm>,
}

/// `inventory/reprovision.json`.
#[derive(Debug, Clone)]
pub struct ReprovisionStore {
    path: PathBuf,
}

impl ReprovisionStore {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Under the data partition `state_dir`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Self::new(state_dir.join("inventory").join("reprovision.json"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every request; a missing file is none.
    pub fn load(&self) -> Result<BTreeMap<MacAddr, Rearm>, InventoryError> {
        crate::shared_file::read_json::<ReprovisionFile>(&self.path).map(|f| f.requests)
    }

    /// Records one more request for `mac`; returns it.
    pub fn request(&self, mac: MacAddr, now_ms: u64) -> Result<Rearm, InventoryError> {
        crate::shared_file::with_lock(&self.path, || {
            let mut file = ReprovisionFile {
                requests: self.load()?,
            };
            let entry = file.requests.entry(mac).or_default();
            entry.generation += 1;
            entry.requested_ms = now_ms;
            let rearm = *entry;
            crate::shared_file::write_json(&self.path, &file)?;
            Ok(rearm)
        })
    }
}

/// How often the PXE service may stat the file on its hot path: a re-arm
/// applies within this time.
const RECHECK: Duration = Duration::from_millis(500);

/// The PXE service's cached view of the file, re-read when it changed.
#[derive(Debug)]
pub struct ReprovisionWatch {
    store: ReprovisionStore,
    cached: Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    mtime: Option<SystemTime>,
    looked: Option<Instant>,
    requests: BTreeMap<MacAddr, Rearm>,
    problem: Option<String>,
}

impl ReprovisionWatch {
    pub fn new(store: ReprovisionStore) -> Self {
        Self {
            store,
            cached: Mutex::new(Cached::default()),
        }
    }

    /// The generation requested for `mac` (0: never).
    pub fn generation(&self, mac: &MacAddr) -> u64 {
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.refresh(&mut cached);
        cached.requests.get(mac).map_or(0, |r| r.generation)
    }

    /// Why the file could not be read, if it could not (for status).
    pub fn problem(&self) -> Option<String> {
        self.cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .problem
            .clone()
    }

    fn refresh(&self, cached: &mut Cached) {
        if cached.looked.is_some_and(|t| t.elapsed() < RECHECK) {
            return;
        }
        cached.looked = Some(Instant::now());
        let mtime = std::fs::metadata(self.store.path())
            .and_then(|m| m.modified())
            .ok();
        if mtime == cached.mtime && mtime.is_some() {
            return;
        }
        match self.store.load() {
            Ok(requests) => {
                cached.requests = requests;
                cached.mtime = mtime;
                cached.problem = None;
            }
            // Keep the last good view: a re-arm never un-happens.
            Err(e) => cached.problem = Some(format!("re-arm requests: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);

    #[test]
    fn requests_count_up_and_the_watch_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReprovisionStore::in_state_dir(dir.path());
        let watch = ReprovisionWatch::new(store.clone());
        assert_eq!(watch.generation(&MAC), 0);
        assert_eq!(store.request(MAC, 5).unwrap().generation, 1);
        assert_eq!(store.request(MAC, 6).unwrap().generation, 2);
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(watch.generation(&MAC), 2);
        assert_eq!(store.load().unwrap()[&MAC].requested_ms, 6);
    }

    #[test]
    fn a_damaged_file_keeps_the_last_view_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReprovisionStore::in_state_dir(dir.path());
        store.request(MAC, 1).unwrap();
        let watch = ReprovisionWatch::new(store.clone());
        assert_eq!(watch.generation(&MAC), 1);
        std::fs::write(store.path(), b"{broken").unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(watch.generation(&MAC), 1);
        assert!(watch.problem().unwrap().contains("reprovision.json"));
        assert!(
            store.request(MAC, 2).is_err(),
            "a damaged file is not overwritten"
        );
    }
}
