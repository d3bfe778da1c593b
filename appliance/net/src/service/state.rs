//! The running service's state: the plan, the NICs in their roles, the
//! current lease, the degraded reasons and the spawned tasks.
//!
//! Owns the data the bring-up steps share, and the degraded-reason book
//! keeping. Must never talk to the kernel or the network itself: the steps in
//! the sibling modules do.

use super::options::NetOptions;
use crate::dhcp::{DhcpCounters, LeaseEvent};
use crate::dns::DnsCounters;
use crate::link::Device;
use crate::nic::Nic;
use crate::plan::NetPlan;
use crate::status::LeaseStatus;
use rtnetlink::Handle;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Degraded reasons by topic, so a reason can be cleared when it resolves.
#[derive(Default)]
pub(super) struct Degraded(BTreeMap<String, String>);

impl Degraded {
    pub(super) fn set(&mut self, topic: &str, reason: String) {
        if self.0.get(topic) != Some(&reason) {
            tracing::error!("{reason}");
            self.0.insert(topic.into(), reason);
        }
    }
    pub(super) fn clear(&mut self, topic: &str) {
        if self.0.remove(topic).is_some() {
            tracing::info!("{topic}: recovered");
        }
    }
    pub(super) fn list(&self) -> Vec<String> {
        self.0.values().cloned().collect()
    }
}

pub(super) struct Role {
    pub(super) nic: Nic,
    pub(super) device: Device,
    pub(super) carrier: bool,
    /// Carrier went away after we had it: its return restarts DHCP. The first
    /// carrier-up after bring-up is not a return.
    pub(super) carrier_lost: bool,
}

pub(super) struct Service {
    pub(super) plan: NetPlan,
    pub(super) options: NetOptions,
    pub(super) handle: Handle,
    pub(super) started: Instant,
    pub(super) degraded: Degraded,
    pub(super) lan: Option<Role>,
    pub(super) uplink: Option<Role>,
    pub(super) lease: Option<LeaseStatus>,
    pub(super) firewall_installed: bool,
    /// The stack's bootstrap finished: its TLS ports are open.
    pub(super) stack_open: bool,
    pub(super) lan_ready: Option<Duration>,
    /// Nothing to bring up (no NIC): the status says `failed`, the service
    /// stops without ever being ready.
    pub(super) failed: bool,
    pub(super) dns_upstream: watch::Sender<Vec<Ipv4Addr>>,
    pub(super) dhcp_counters: Option<Arc<DhcpCounters>>,
    pub(super) dns_counters: Option<Arc<DnsCounters>>,
    pub(super) dhcp_task: Option<JoinHandle<()>>,
    pub(super) lease_tx: mpsc::Sender<LeaseEvent>,
    pub(super) tasks: Vec<JoinHandle<()>>,
}
