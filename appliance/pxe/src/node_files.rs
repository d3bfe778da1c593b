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
//!
//! The agent (small) is hashed before the service is ready. The client
//! binaries are hashed on a thread of their own started with the service,
//! so readiness never waits for tens of megabytes to be read: no node needs
//! them before its user-data, which names them. Until that thread is done,
//! `/by-hash` knows only the agent, and a user-data render that would name
//! the clients waits for it ([`NodeFiles::client_binaries`], bounded by the
//! caller). If the wait runs out, the caller answers 503 before any grant
//! is minted, with a warning in the log, so cloud-init retries and the node
//! never boots with the clients silently left out. A file that cannot be
//! hashed is not offered, said once in the log, exactly as a missing one.
//! This module must never serve a file it has not hashed.

use crate::settings::{NodeStack, PxePaths};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

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

/// The client binaries were still being hashed when the wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Consul/Nomad client binaries are still being hashed after {0:?}")]
pub struct StillHashing(pub Duration);

/// The table: the agent, hashed at load, and the clients, hashed in the
/// background and published once, whole.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    agent: Option<NodeFile>,
    clients: Arc<Clients>,
}

/// `None` until the hashing thread publishes; then the clients offered.
#[derive(Debug, Default)]
struct Clients {
    table: Mutex<Option<Vec<NodeFile>>>,
    published: Condvar,
}

impl Clients {
    fn ready(list: Vec<NodeFile>) -> Self {
        Self {
            table: Mutex::new(Some(list)),
            published: Condvar::new(),
        }
    }

    /// Nothing panics while holding the lock, and the data is a plain
    /// `Option` either way: a poisoned lock is still consistent.
    fn lock(&self) -> MutexGuard<'_, Option<Vec<NodeFile>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first publication wins; waiters wake.
    fn publish(&self, list: Vec<NodeFile>) {
        let mut table = self.lock();
        if table.is_none() {
            *table = Some(list);
        }
        drop(table);
        self.published.notify_all();
    }
}

/// Publishes an empty client list if the hashing thread ends without
/// publishing (it panicked), so waiters are not left to time out on every
/// request.
struct PublishOnExit(Arc<Clients>);

impl Drop for PublishOnExit {
    fn drop(&mut self) {
        if self.0.lock().is_none() {
            tracing::error!("pxe: hashing the client binaries failed; nodes are not offered them");
            self.0.publish(Vec::new());
        }
    }
}

impl NodeFiles {
    /// The agent, and the stack's client binaries only where `stack` says
    /// nodes run them (hashed on a thread started here). A missing file is
    /// not offered (said once).
    pub fn load(paths: &PxePaths, stack: Option<&NodeStack>) -> Self {
        let agent = load_one(AGENT, &paths.node_agent);
        let mut wanted = Vec::new();
        if let Some(stack) = stack {
            wanted.push(("consul", paths.consul_binary.clone()));
            if stack.runs_nomad() {
                wanted.push(("nomad", paths.nomad_binary.clone()));
            }
        }
        if wanted.is_empty() {
            return Self {
                agent,
                clients: Arc::new(Clients::ready(Vec::new())),
            };
        }
        Self::hashing_clients(agent, move || {
            wanted
                .iter()
                .filter_map(|(name, path)| load_one(name, path))
                .collect()
        })
    }

    /// The table with `agent` known and the clients published by `hash`,
    /// run on its own thread (or here, if no thread can be started).
    fn hashing_clients(
        agent: Option<NodeFile>,
        hash: impl Fn() -> Vec<NodeFile> + Send + Sync + 'static,
    ) -> Self {
        let clients = Arc::new(Clients::default());
        let hash = Arc::new(hash);
        let run = {
            let clients = Arc::clone(&clients);
            let hash = Arc::clone(&hash);
            move || {
                let _publish_on_exit = PublishOnExit(Arc::clone(&clients));
                clients.publish(hash());
            }
        };
        let spawned = std::thread::Builder::new()
            .name("pxe-node-files".into())
            .spawn(run);
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "pxe: no thread for hashing the client binaries; hashing them now");
            clients.publish(hash());
        }
        Self { agent, clients }
    }

    /// The file whose content hashes to `sha256` (lowercase hex), among
    /// those hashed so far: never waits.
    pub fn by_hash(&self, sha256: &str) -> Option<NodeFile> {
        if let Some(agent) = self.agent.as_ref().filter(|a| a.sha256 == sha256) {
            return Some(agent.clone());
        }
        self.clients
            .lock()
            .as_ref()?
            .iter()
            .find(|f| f.sha256 == sha256)
            .cloned()
    }

    /// The node agent, if this image has one.
    pub fn agent(&self) -> Option<&NodeFile> {
        self.agent.as_ref()
    }

    /// Whether the client binaries have been hashed (or given up on).
    pub fn clients_ready(&self) -> bool {
        self.clients.lock().is_some()
    }

    /// The Consul and Nomad clients offered, as (name, sha256), waiting
    /// up to `wait` for the hashing thread.
    pub fn client_binaries(
        &self,
        wait: Duration,
    ) -> Result<Vec<(&'static str, String)>, StillHashing> {
        let deadline = Instant::now() + wait;
        let mut table = self.clients.lock();
        loop {
            if let Some(list) = table.as_ref() {
                return Ok(list.iter().map(|f| (f.name, f.sha256.clone())).collect());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StillHashing(wait));
            }
            table = self
                .clients
                .published
                .wait_timeout(table, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
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

    const WAIT: Duration = Duration::from_secs(30);

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
        assert_eq!(files.agent().unwrap().sha256, abc);
        assert_eq!(files.by_hash(abc).unwrap().name, AGENT);
        assert_eq!(files.by_hash(&"0".repeat(64)), None);

        let empty = tempfile::tempdir().unwrap();
        let none = NodeFiles::load(&paths(empty.path()), Some(&stack(true)));
        assert_eq!(none.agent(), None);
        assert_eq!(none.client_binaries(WAIT).unwrap(), []);
    }

    #[test]
    fn clients_are_offered_only_where_the_site_runs_them() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["kindling-node", "consul", "nomad"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let names = |files: &NodeFiles| {
            let list = files.client_binaries(WAIT).unwrap();
            list.into_iter().map(|(n, _)| n).collect::<Vec<_>>()
        };
        let p = paths(dir.path());
        assert!(names(&NodeFiles::load(&p, None)).is_empty(), "no stack");
        assert_eq!(names(&NodeFiles::load(&p, Some(&stack(false)))), ["consul"]);
        let all = NodeFiles::load(&p, Some(&stack(true)));
        assert_eq!(names(&all), ["consul", "nomad"]);
        let nomad = format!("{:x}", Sha256::digest(b"nomad"));
        let served = all.by_hash(&nomad).unwrap();
        assert_eq!(
            (served.name, served.path),
            ("nomad", dir.path().join("nomad"))
        );
    }

    fn file(name: &'static str, sha256: &str) -> NodeFile {
        NodeFile {
            name,
            path: PathBuf::from(format!("/bin/{name}")),
            sha256: sha256.into(),
        }
    }

    /// The client hashing held until the test lets it go: stands in for a
    /// 68 MB read.
    fn held_hashing() -> (NodeFiles, std::sync::mpsc::Sender<()>) {
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        let files = NodeFiles::hashing_clients(Some(file(AGENT, &"a".repeat(64))), move || {
            let _ = wait.lock().unwrap().recv();
            vec![file("consul", &"c".repeat(64))]
        });
        (files, go)
    }

    #[test]
    fn the_agent_is_served_while_the_clients_are_still_being_hashed() {
        let (files, go) = held_hashing();
        assert_eq!(files.by_hash(&"a".repeat(64)).unwrap().name, AGENT);
        assert_eq!(files.agent().unwrap().name, AGENT);
        assert!(!files.clients_ready());
        assert_eq!(
            files.by_hash(&"c".repeat(64)),
            None,
            "not hashed yet: not served"
        );
        let short = Duration::from_millis(50);
        assert_eq!(files.client_binaries(short), Err(StillHashing(short)));

        go.send(()).unwrap();
        let list = files.client_binaries(WAIT).unwrap();
        assert_eq!(list, [("consul", "c".repeat(64))]);
        assert!(files.clients_ready());
        assert_eq!(files.by_hash(&"c".repeat(64)).unwrap().name, "consul");
    }

    #[test]
    fn a_waiter_gets_the_hashes_once_they_are_published() {
        let (files, go) = held_hashing();
        let waiter = {
            let files = files.clone();
            std::thread::spawn(move || files.client_binaries(WAIT))
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !waiter.is_finished(),
            "the waiter waits for the hashing thread"
        );
        go.send(()).unwrap();
        assert_eq!(
            waiter.join().unwrap().unwrap(),
            [("consul", "c".repeat(64))]
        );
    }

    #[test]
    fn a_hashing_thread_that_dies_publishes_nothing_rather_than_hang_waiters() {
        let files = NodeFiles::hashing_clients(None, || panic!("hashing failed"));
        assert_eq!(files.client_binaries(WAIT).unwrap(), []);
    }

    #[test]
    fn a_large_client_does_not_hold_up_the_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kindling-node"), b"agent").unwrap();
        let big = vec![7u8; 16 * 1024 * 1024];
        std::fs::write(dir.path().join("consul"), &big).unwrap();
        let p = paths(dir.path());

        let started = Instant::now();
        let files = NodeFiles::load(&p, Some(&stack(false)));
        let loaded = started.elapsed();
        let list = files.client_binaries(WAIT).unwrap();
        let hashed = started.elapsed();
        assert_eq!(list, [("consul", format!("{:x}", Sha256::digest(&big)))]);
        // The numbers, for the record (`--nocapture`).
        println!("load returned after {loaded:?}; 16 MiB client hashed after {hashed:?}");
    }
}
