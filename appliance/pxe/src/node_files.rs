//! The files the appliance hands provisioned nodes, each named on the wire
//! by the sha256 of its bytes (`/by-hash/sha256/HEX`): the node agent
//! (`kindling-node`) and, where the site runs the stack, the Consul and
//! Nomad client binaries the image carries.
//!
//! Each hash is taken once when the service starts (a Consul binary is
//! tens of megabytes: never per request). Nodes are told the hashes (the
//! agent's in `/begin.sh`'s arguments, the clients' in node.json), fetch by
//! hash and check the bytes, so a node runs exactly what this appliance
//! ships or nothing. Only files in this table are served; every other hash
//! is unknown.

use crate::settings::{NodeStack, PxePaths};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// One file handed to nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFile {
    /// `kindling-node`, `consul` or `nomad`: the name in node.json's
    /// `binaries` for the clients.
    pub name: &'static str,
    pub path: PathBuf,
    /// Lowercase hex.
    pub sha256: String,
}

/// The name of the node agent in the table.
pub const AGENT: &str = "kindling-node";

/// The table: the files present at start, with their hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFiles {
    files: Vec<NodeFile>,
}

impl NodeFiles {
    /// The agent, and the stack's client binaries only where `stack` says
    /// nodes run them. A missing file is not offered (said once, here).
    pub fn load(paths: &PxePaths, stack: Option<&NodeStack>) -> Self {
        let mut wanted = vec![(AGENT, paths.node_agent.as_path())];
        if let Some(stack) = stack {
            wanted.push(("consul", paths.consul_binary.as_path()));
            if stack.runs_nomad() {
                wanted.push(("nomad", paths.nomad_binary.as_path()));
            }
        }
        let files = wanted
            .into_iter()
            .filter_map(|(name, path)| load_one(name, path))
            .collect();
        Self { files }
    }

    /// The file whose content hashes to `sha256` (lowercase hex).
    pub fn by_hash(&self, sha256: &str) -> Option<&NodeFile> {
        self.files.iter().find(|f| f.sha256 == sha256)
    }

    pub fn get(&self, name: &str) -> Option<&NodeFile> {
        self.files.iter().find(|f| f.name == name)
    }

    /// The Consul and Nomad clients offered, as (name, sha256).
    pub fn client_binaries(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.files
            .iter()
            .filter(|f| f.name != AGENT)
            .map(|f| (f.name, f.sha256.as_str()))
    }
}

fn load_one(name: &'static str, path: &Path) -> Option<NodeFile> {
    match sha256_of(path) {
        Ok(sha256) => {
            tracing::info!(file = name, path = %path.display(), %sha256, "pxe: handing nodes this file by hash");
            Some(NodeFile {
                name,
                path: path.to_path_buf(),
                sha256,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let what = if name == AGENT {
                "no node agent in this image; nodes run only begin.sh"
            } else {
                "not in this image; nodes are not offered it and use what they have installed"
            };
            tracing::info!(file = name, path = %path.display(), "pxe: {name}: {what}");
            None
        }
        Err(e) => {
            tracing::warn!(file = name, path = %path.display(), error = %e, "pxe: {name} unreadable; not served");
            None
        }
    }
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn paths(dir: &Path) -> PxePaths {
        PxePaths {
            node_agent: dir.join("kindling-node"),
            consul_binary: dir.join("consul"),
            nomad_binary: dir.join("nomad"),
            ..PxePaths::default()
        }
    }

    fn stack(nomad: bool) -> NodeStack {
        let at = |port| SocketAddrV4::new(Ipv4Addr::new(192, 168, 100, 1), port);
        NodeStack {
            datacenter: "lab".into(),
            consul_join: vec![at(8301)],
            nomad_servers: if nomad { vec![at(4647)] } else { Vec::new() },
        }
    }

    #[test]
    fn the_hash_is_of_the_bytes_and_a_missing_file_is_not_offered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kindling-node"), b"abc").unwrap();
        let files = NodeFiles::load(&paths(dir.path()), None);
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(files.get(AGENT).unwrap().sha256, abc);
        assert_eq!(files.by_hash(abc).unwrap().name, AGENT);
        assert_eq!(files.by_hash(&"0".repeat(64)), None);

        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            NodeFiles::load(&paths(empty.path()), Some(&stack(true))),
            NodeFiles::default()
        );
    }

    #[test]
    fn clients_are_offered_only_where_the_site_runs_them() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["kindling-node", "consul", "nomad"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let names = |files: &NodeFiles| files.client_binaries().map(|(n, _)| n).collect::<Vec<_>>();
        let p = paths(dir.path());
        assert!(names(&NodeFiles::load(&p, None)).is_empty(), "no stack");
        assert_eq!(names(&NodeFiles::load(&p, Some(&stack(false)))), ["consul"]);
        let all = NodeFiles::load(&p, Some(&stack(true)));
        assert_eq!(names(&all), ["consul", "nomad"]);
        let nomad = all.get("nomad").unwrap();
        assert_eq!(all.by_hash(&nomad.sha256), Some(nomad));
    }
}
