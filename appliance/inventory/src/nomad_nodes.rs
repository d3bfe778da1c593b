//! Nomad's client node list on its way from the process that may read it
//! (`kindlingd nomad-nodes`, as the bootstrap's account: listing nodes
//! needs Nomad's management token) to the PXE service, which checks
//! `joined` against it where Nomad runs: the file
//! `inventory/nomad-nodes.json`.
//!
//! Like `catalog`: facts only (name, ID, datacenter, status of every client
//! node), never a token, and a failed read keeps the last listing beside
//! the reason, so a reader can tell "down" from "cannot see".

use crate::error::InventoryError;
use crate::shared_file::{read_existing, write_json, FileWatch, ListingFile, SharedFile, Watched};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One client node as `GET /v1/nodes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NomadNode {
    pub name: String,
    pub id: String,
    #[serde(default)]
    pub datacenter: String,
    /// `initializing`, `ready` or `down`.
    pub status: String,
}

/// The status of a node that can run work.
pub const READY: &str = "ready";

/// `inventory/nomad-nodes.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NomadNodesFile {
    /// When the list was last read successfully (Unix ms; 0: never).
    pub listed_ms: u64,
    pub nodes: Vec<NomadNode>,
    /// Why the list cannot be read now; `nodes` is then the last good
    /// listing, which must not be taken for the present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl NomadNodesFile {
    /// Node name → entry.
    pub fn by_name(&self) -> BTreeMap<String, NomadNode> {
        self.nodes
            .iter()
            .map(|n| (n.name.clone(), n.clone()))
            .collect()
    }
}

impl ListingFile for NomadNodesFile {
    fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }
}

impl SharedFile for NomadNodesFile {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("inventory").join("nomad-nodes.json")
    }
}

/// The PXE service's view of `nomad-nodes.json`.
pub type NomadNodesWatch = FileWatch<NomadNodesFile>;
pub type NomadNodesState = Watched<NomadNodesFile>;

/// Records one reading of Nomad's list: the nodes (sorted by name), or why
/// they could not be read (the last listing is kept beside it). Writes only
/// when what the file says changed, since every change re-judges every
/// node. Returns whether it wrote.
pub fn record(
    state_dir: &Path,
    reading: Result<Vec<NomadNode>, String>,
) -> Result<bool, InventoryError> {
    let path = NomadNodesFile::path(state_dir);
    let current: Option<NomadNodesFile> = read_existing(&path).ok().flatten();
    let file = match reading {
        Ok(mut nodes) => {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            if current
                .as_ref()
                .is_some_and(|c| c.nodes == nodes && c.problem.is_none())
            {
                return Ok(false);
            }
            NomadNodesFile {
                listed_ms: kindling_clock::unix_ms(),
                nodes,
                problem: None,
            }
        }
        Err(why) => {
            let mut file = current.unwrap_or_default();
            if file.problem.as_deref() == Some(why.as_str()) {
                return Ok(false);
            }
            file.problem = Some(why);
            file
        }
    };
    write_json(&path, &file)?;
    Ok(true)
}

/// Removes the file (Nomad is not run: there is no list to judge from).
pub fn remove(state_dir: &Path) -> Result<(), InventoryError> {
    let path = NomadNodesFile::path(state_dir);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(InventoryError::Write { path, source: e })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn node(name: &str, status: &str) -> NomadNode {
        NomadNode {
            name: name.into(),
            id: format!("id-{name}"),
            datacenter: "dc1".into(),
            status: status.into(),
        }
    }

    #[test]
    fn a_failed_reading_keeps_the_last_nodes_and_unchanged_readings_do_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = NomadNodesWatch::new(dir.path());
        assert_eq!(watch.changed(), Some(Watched::NotListed));
        assert_eq!(watch.changed(), None);

        let nodes = vec![node("b", READY), node("a", "down")];
        assert!(record(dir.path(), Ok(nodes.clone())).unwrap());
        let Some(Watched::Listed(file)) = watch.changed() else {
            panic!("listed")
        };
        let names: Vec<&str> = file.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b"], "sorted");
        assert!(
            !record(dir.path(), Ok(nodes)).unwrap(),
            "same list, no write"
        );

        let why = "Nomad at https://127.0.0.1:4646 is not reachable".to_string();
        assert!(record(dir.path(), Err(why.clone())).unwrap());
        assert!(!record(dir.path(), Err(why)).unwrap());
        let file: NomadNodesFile = read_existing(&NomadNodesFile::path(dir.path()))
            .unwrap()
            .unwrap();
        assert!(file.problem.unwrap().contains("not reachable"));
        assert_eq!(file.nodes.len(), 2, "the last listing is kept");

        remove(dir.path()).unwrap();
        remove(dir.path()).unwrap();
        assert!(!NomadNodesFile::path(dir.path()).exists());
    }

    #[test]
    fn a_file_that_does_not_parse_is_unreadable_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = NomadNodesFile::path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        let Some(Watched::Unreadable(why)) = NomadNodesWatch::new(dir.path()).changed() else {
            panic!("unreadable")
        };
        assert!(why.contains("nomad-nodes.json"), "{why}");
    }
}
