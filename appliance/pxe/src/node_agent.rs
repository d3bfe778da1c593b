//! The node agent the appliance hands provisioned nodes: `kindling-node`,
//! from the image, named on the wire by the sha256 of its bytes. The hash
//! is taken once when the service starts; `/begin.sh` is told it, fetches
//! `/by-hash/sha256/HEX`, checks the bytes against it and runs the agent
//! only when they match, so a node runs exactly the agent this appliance
//! ships (or nothing).

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The agent file and its content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAgent {
    pub path: PathBuf,
    /// Lowercase hex.
    pub sha256: String,
}

impl NodeAgent {
    /// The agent at `path`; `None` (said in the log) when there is none to
    /// serve, e.g. an image built without it.
    pub fn load(path: &Path) -> Option<Self> {
        match sha256_of(path) {
            Ok(sha256) => Some(Self {
                path: path.to_path_buf(),
                sha256,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(path = %path.display(), "pxe: no node agent in this image; nodes run only begin.sh");
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "pxe: node agent unreadable; not served");
                None
            }
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

    #[test]
    fn the_hash_is_of_the_bytes_and_a_missing_agent_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kindling-node");
        std::fs::write(&path, b"abc").unwrap();
        let agent = NodeAgent::load(&path).unwrap();
        assert_eq!(
            agent.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(NodeAgent::load(&dir.path().join("none")), None);
    }
}
