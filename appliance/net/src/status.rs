//! `/run/kindling/status/net.json`: what the network service has done and
//! why it is degraded, read by `kindlingd api`.
//!
//! Owns the document's shape and its atomic replacement (write a temporary
//! file in the same directory, then rename). It never decides the content.

use crate::dhcp::DhcpCounterSnapshot;
use crate::dns::DnsCounterSnapshot;
use crate::firewall::RuleCounter;
use crate::link::RouteEntry;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StatusWriteError {
    #[error("write status file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encode status: {0}")]
    Encode(serde_json::Error),
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NetState {
    Starting,
    Ready,
    Degraded,
    /// The service gave up and exits (no NIC at all); `degraded` says why.
    Failed,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RoleStatus {
    /// The NIC matched for the role.
    pub nic: String,
    pub mac: String,
    pub pci_path: Option<String>,
    /// The device carrying the address (the NIC or its VLAN).
    pub device: String,
    pub carrier: bool,
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeaseStatus {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub server: Ipv4Addr,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_secs: u64,
    pub obtained_unix: u64,
    pub renewals: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetStatus {
    pub state: NetState,
    pub lan: Option<RoleStatus>,
    pub uplink: Option<RoleStatus>,
    pub uplink_mode: String,
    pub lease: Option<LeaseStatus>,
    pub routes: Vec<RouteEntry>,
    pub dns_upstream: Vec<Ipv4Addr>,
    pub firewall_installed: bool,
    /// Packet/byte counters of the tagged nftables rules (NAT, forward, drops).
    pub nat_counters: BTreeMap<String, RuleCounter>,
    pub dhcp_client: Option<DhcpCounterSnapshot>,
    pub dns_forwarder: Option<DnsCounterSnapshot>,
    /// One sentence per reason; empty when nothing is wrong.
    pub degraded: Vec<String>,
    /// Milliseconds from service start until the LAN was configured.
    pub lan_ready_ms: Option<u64>,
    /// The same in microseconds (the benchmark reads it).
    pub lan_ready_us: Option<u64>,
    pub updated_unix: u64,
}

/// Replaces `path` atomically with the JSON of `status`.
pub fn write_atomically(path: &Path, status: &NetStatus) -> Result<(), StatusWriteError> {
    let mut body = serde_json::to_vec_pretty(status).map_err(StatusWriteError::Encode)?;
    body.push(b'\n');
    // /run is tmpfs: no fsync needed to survive anything that matters.
    kindling_atomic_write::write_atomic(path, &body, false).map_err(|source| {
        StatusWriteError::Write {
            path: path.into(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn status_is_replaced_whole_and_parses_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status/net.json");
        let mut status = NetStatus {
            state: NetState::Degraded,
            lan: None,
            uplink: None,
            uplink_mode: "dhcp".into(),
            lease: None,
            routes: Vec::new(),
            dns_upstream: Vec::new(),
            firewall_installed: false,
            nat_counters: BTreeMap::new(),
            dhcp_client: None,
            dns_forwarder: None,
            degraded: vec!["no network interface found".into()],
            lan_ready_ms: None,
            lan_ready_us: None,
            updated_unix: 1,
        };
        write_atomically(&path, &status).unwrap();
        status.degraded.clear();
        status.state = NetState::Ready;
        write_atomically(&path, &status).unwrap();
        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back["state"], "ready");
        assert_eq!(back["degraded"].as_array().unwrap().len(), 0);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }
}
