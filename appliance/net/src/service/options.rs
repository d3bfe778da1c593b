//! How the network service runs: file locations, timings and the NIC
//! filter. The defaults are the appliance's; tests override them.
//!
//! Owns only settings. Must never hold runtime state or touch the system.

use crate::dhcp::DhcpTiming;
use crate::nic::NicFilter;
use std::path::PathBuf;
use std::time::Duration;

/// How the service runs; the defaults are the appliance's.
#[derive(Debug, Clone)]
pub struct NetOptions {
    pub status_path: PathBuf,
    pub nic_filter: NicFilter,
    pub sysfs_net: PathBuf,
    pub dns_port: u16,
    pub dhcp_timing: DhcpTiming,
    pub status_interval: Duration,
    /// How long to wait for carrier when a role is `first_with_carrier`
    /// (autonegotiation takes a few seconds on real NICs).
    pub carrier_wait: Duration,
    /// Remove the nftables table when the service stops (tests only; the
    /// appliance keeps its ruleset across a service restart).
    pub remove_ruleset_on_stop: bool,
    /// The stack bootstrap's status file: the stack's ports open when it
    /// says `ready`.
    pub stack_status_path: PathBuf,
    /// The uid that must own that file (the stack's account); `None`: any.
    pub stack_status_owner: Option<u32>,
    /// How often that file is read until the stack is ready.
    pub stack_poll: Duration,
}

impl Default for NetOptions {
    fn default() -> Self {
        Self {
            status_path: PathBuf::from("/run/kindling/status/net.json"),
            nic_filter: NicFilter::Physical,
            sysfs_net: PathBuf::from("/sys/class/net"),
            dns_port: 53,
            dhcp_timing: DhcpTiming::default(),
            status_interval: Duration::from_secs(5),
            carrier_wait: Duration::from_secs(5),
            remove_ruleset_on_stop: false,
            stack_status_path: PathBuf::from("/run/kindling/status/stack.json"),
            stack_status_owner: None,
            stack_poll: Duration::from_millis(500),
        }
    }
}
