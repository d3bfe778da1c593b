//! The appliance's Consul catalog on its way from the process that may read
//! it to the PXE service, which decides `joined` from it: the file
//! `inventory/catalog.json`, the loop that keeps it current
//! ([`CatalogWatcher`], run by `kindlingd api` with its least-privilege
//! Consul token, which may read node entries and nothing else of the
//! catalog) and the PXE service's cached view of it ([`CatalogWatch`]).
//!
//! The file holds facts only (node name, ID, address, meta of every node
//! listed); matching them to inventory records is `membership`'s. It never
//! holds a token, and a failed read keeps the last listing beside the
//! reason, so a reader can tell "gone" from "cannot see".

use crate::error::InventoryError;
use crate::shared_file::{read_existing, FileWatch, ListingFile, SharedFile, Watched};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One node as `GET /v1/catalog/nodes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogNode {
    pub node: String,
    pub id: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

/// `inventory/catalog.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogFile {
    /// When the catalog was last listed successfully (Unix ms; 0: never).
    pub listed_ms: u64,
    /// Consul's `X-Consul-Index` of that listing.
    pub index: u64,
    pub nodes: Vec<CatalogNode>,
    /// Why the catalog cannot be read now; `nodes` is then the last good
    /// listing, which must not be taken for the present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl CatalogFile {
    /// Node name → entry.
    pub fn by_name(&self) -> BTreeMap<String, CatalogNode> {
        self.nodes
            .iter()
            .map(|n| (n.node.clone(), n.clone()))
            .collect()
    }
}

/// Under the data partition `state_dir`.
pub fn catalog_file(state_dir: &Path) -> PathBuf {
    state_dir.join("inventory").join("catalog.json")
}

impl ListingFile for CatalogFile {
    fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }
}

impl SharedFile for CatalogFile {
    fn path(state_dir: &Path) -> PathBuf {
        catalog_file(state_dir)
    }
}

/// Reads the file; `Ok(None)` when it does not exist (never listed).
pub fn read_catalog(path: &Path) -> Result<Option<CatalogFile>, InventoryError> {
    read_existing(path)
}

/// A listing: the index to wait on next, and every node.
pub type Listing = (u64, Vec<CatalogNode>);

/// Where the catalog comes from.
pub trait CatalogSource: Send + Sync {
    /// Every node, once the catalog changed after `index` (a blocking query
    /// of at most about `wait`); with the new index.
    fn list(&self, index: u64, wait: Duration) -> Result<Listing, String>;
    /// Why there is no catalog to read at all (Consul switched off); the
    /// watcher then removes the file.
    fn not_in_use(&self) -> Option<String> {
        None
    }
}

/// How long one blocking query waits for a change.
pub const WATCH_WAIT: Duration = Duration::from_secs(30);
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Keeps `catalog.json` current.
pub struct CatalogWatcher {
    path: PathBuf,
    source: Arc<dyn CatalogSource>,
}

impl CatalogWatcher {
    pub fn new(state_dir: &Path, source: Arc<dyn CatalogSource>) -> Self {
        Self {
            path: catalog_file(state_dir),
            source,
        }
    }

    /// One round: lists (waiting on `index` with `wait`) and writes the
    /// file when what it holds changed. Returns the index to wait on next
    /// and whether the listing failed.
    pub fn round(&self, index: u64, wait: Duration) -> (u64, bool) {
        let current = read_catalog(&self.path).ok().flatten();
        if let Some(why) = self.source.not_in_use() {
            if current.is_some() {
                let _ = std::fs::remove_file(&self.path);
                tracing::info!(reason = %why, "catalog: not read");
            }
            return (0, true);
        }
        match self.source.list(index, wait) {
            Ok((new_index, mut nodes)) => {
                nodes.sort_by(|a, b| a.node.cmp(&b.node));
                let file = CatalogFile {
                    listed_ms: kindling_clock::unix_ms(),
                    index: new_index,
                    nodes,
                    problem: None,
                };
                // Written only when what it says changed: the PXE service
                // re-judges every node on each new file.
                let changed = current
                    .as_ref()
                    .is_none_or(|c| c.nodes != file.nodes || c.problem.is_some());
                if changed {
                    self.write(&file);
                }
                // An index that went backwards (Consul's data was reset)
                // starts the watch over.
                (if new_index < index { 0 } else { new_index }, false)
            }
            Err(why) => {
                let mut file = current.unwrap_or_default();
                if file.problem.as_deref() != Some(why.as_str()) {
                    tracing::warn!(reason = %why, "catalog: cannot be listed");
                    file.problem = Some(why);
                    self.write(&file);
                }
                (0, true)
            }
        }
    }

    fn write(&self, file: &CatalogFile) {
        if let Err(e) = crate::shared_file::write_json(&self.path, file) {
            tracing::warn!(error = %e, "catalog: file not written");
        }
    }

    /// Runs rounds until `stop`, backing off after failures.
    pub fn run(&self, stop: &AtomicBool) {
        let mut index = 0;
        let mut pause = RETRY_MIN;
        while !stop.load(Ordering::Relaxed) {
            let (next, failed) = self.round(index, WATCH_WAIT);
            index = next;
            if failed {
                std::thread::sleep(pause);
                pause = (pause * 2).min(RETRY_MAX);
            } else {
                pause = RETRY_MIN;
            }
        }
    }
}

/// The PXE service's view of `catalog.json`, re-read when it changed.
pub type CatalogWatch = FileWatch<CatalogFile>;

/// What the PXE service knows of the catalog.
pub type CatalogState = Watched<CatalogFile>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;

    struct Fake {
        answers: Mutex<Vec<Result<Listing, String>>>,
    }

    impl CatalogSource for Fake {
        fn list(&self, _index: u64, _wait: Duration) -> Result<Listing, String> {
            self.answers.lock().unwrap().remove(0)
        }
    }

    fn node(name: &str) -> CatalogNode {
        CatalogNode {
            node: name.into(),
            id: format!("id-{name}"),
            address: String::new(),
            meta: BTreeMap::new(),
        }
    }

    #[test]
    fn a_failed_listing_keeps_the_last_nodes_beside_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake {
            answers: Mutex::new(vec![
                Ok((7, vec![node("b"), node("a")])),
                Err("Consul at http://127.0.0.1:8500 is not reachable".into()),
                Ok((3, vec![node("a")])),
            ]),
        });
        let watcher = CatalogWatcher::new(dir.path(), fake);
        let mut watch = CatalogWatch::new(dir.path());
        assert_eq!(watch.changed(), Some(CatalogState::NotListed));
        assert_eq!(watch.changed(), None);

        assert_eq!(watcher.round(0, Duration::ZERO), (7, false));
        let Some(CatalogState::Listed(file)) = watch.changed() else {
            panic!("listed")
        };
        let names: Vec<&str> = file.nodes.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(names, ["a", "b"], "sorted");

        assert_eq!(watcher.round(7, Duration::ZERO), (0, true));
        let file = read_catalog(&catalog_file(dir.path())).unwrap().unwrap();
        assert!(file.problem.unwrap().contains("not reachable"));
        assert_eq!(file.nodes.len(), 2, "the last listing is kept");

        // Consul came back with a lower index (its data was reset).
        assert_eq!(watcher.round(7, Duration::ZERO), (0, false));
        let file = read_catalog(&catalog_file(dir.path())).unwrap().unwrap();
        assert_eq!((file.problem, file.nodes.len()), (None, 1));
    }
}
