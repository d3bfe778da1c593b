//! The lab's network, all inside namespaces it creates:
//!
//! ```text
//! netns <p>-up : router0 10.0.2.1/24 (upstream router: dnsmasq DHCP, HTTP target)
//!                  │ veth
//! netns <p>-lan: br-up ── taps for appliance uplinks
//!                br-lan 192.168.100.2/24 ── taps for the appliance LAN NIC and node VMs
//! ```
//!
//! Every QEMU runs in `<p>-lan` (a QEMU process lives in one namespace, so all
//! its taps must be there). This module never touches the host's own
//! interfaces or namespaces other than the two it created; `Drop` deletes them.

use crate::cmd;
use crate::error::{LabError, Result};

pub const UPSTREAM_ROUTER_ADDR: &str = "10.0.2.1";
pub const UPSTREAM_PREFIX: u8 = 24;
pub const UPSTREAM_DHCP_RANGE: (&str, &str) = ("10.0.2.100", "10.0.2.150");
pub const APPLIANCE_LAN_ADDR: &str = "192.168.100.1";
/// The lab's own address on the bootstrap LAN, outside the appliance's DHCP
/// range: the demo and tests reach the appliance's status API from here.
pub const LAB_PROBE_ADDR: &str = "192.168.100.2";

pub const UPLINK_BRIDGE: &str = "br-up";
pub const LAN_BRIDGE: &str = "br-lan";
const ROUTER_IF: &str = "router0";
const UPLINK_VETH: &str = "up-veth";

/// The names of the lab's two namespaces (`kl-up`, `kl-lan` by default; tests
/// use their own prefix so they never collide with a running lab).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNames {
    pub upstream: String,
    pub lan: String,
}

impl LabNames {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            upstream: format!("{prefix}-up"),
            lan: format!("{prefix}-lan"),
        }
    }
}

impl Default for LabNames {
    fn default() -> Self {
        Self::with_prefix("kl")
    }
}

/// Which bridge a tap joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Uplink,
    Lan,
}

impl Segment {
    fn bridge(self) -> &'static str {
        match self {
            Segment::Uplink => UPLINK_BRIDGE,
            Segment::Lan => LAN_BRIDGE,
        }
    }
}

pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// The created namespaces; dropping this deletes them (and with them every
/// interface inside: bridges, veths, taps).
#[derive(Debug)]
pub struct LabNetwork {
    names: LabNames,
    created: Vec<String>,
}

impl LabNetwork {
    pub fn create(names: &LabNames) -> Result<Self> {
        for ns in [&names.upstream, &names.lan] {
            if netns_exists(ns) {
                return Err(LabError::AlreadyUp(ns.clone()));
            }
        }
        let mut net = Self {
            names: names.clone(),
            created: Vec::new(),
        };
        for ns in [&names.upstream, &names.lan] {
            cmd::ip(&["netns", "add", ns])?;
            net.created.push(ns.clone());
            quiet_ipv6(ns)?;
            cmd::ip_in(ns, &["link", "set", "lo", "up"])?;
        }
        let (up, lan) = (names.upstream.as_str(), names.lan.as_str());
        for bridge in [UPLINK_BRIDGE, LAN_BRIDGE] {
            // forward_delay 0: ports forward at once, so a PXE client's first
            // DHCPDISCOVER is not eaten by the listening state.
            cmd::ip_in(
                lan,
                &[
                    "link",
                    "add",
                    bridge,
                    "type",
                    "bridge",
                    "stp_state",
                    "0",
                    "forward_delay",
                    "0",
                    "mcast_snooping",
                    "0",
                ],
            )?;
            cmd::ip_in(lan, &["link", "set", bridge, "up"])?;
        }
        cmd::ip_in(
            lan,
            &[
                "link",
                "add",
                UPLINK_VETH,
                "type",
                "veth",
                "peer",
                "name",
                ROUTER_IF,
                "netns",
                up,
            ],
        )?;
        cmd::ip_in(
            lan,
            &["link", "set", UPLINK_VETH, "master", UPLINK_BRIDGE, "up"],
        )?;
        let router = format!("{UPSTREAM_ROUTER_ADDR}/{UPSTREAM_PREFIX}");
        cmd::ip_in(up, &["addr", "add", &router, "dev", ROUTER_IF])?;
        cmd::ip_in(up, &["link", "set", ROUTER_IF, "up"])?;
        cmd::ip_in(
            lan,
            &[
                "addr",
                "add",
                &format!("{LAB_PROBE_ADDR}/24"),
                "dev",
                LAN_BRIDGE,
            ],
        )?;
        Ok(net)
    }

    /// Refers to the namespaces of a lab another process created (for
    /// `kindling-lab node`); this value does not delete them on drop.
    pub fn attach(names: &LabNames) -> Result<Self> {
        for ns in [&names.upstream, &names.lan] {
            if !netns_exists(ns) {
                return Err(LabError::NotUp(ns.clone()));
            }
        }
        Ok(Self {
            names: names.clone(),
            created: Vec::new(),
        })
    }

    pub fn names(&self) -> &LabNames {
        &self.names
    }

    /// The upstream router's interface (dnsmasq binds to it).
    pub fn router_interface(&self) -> &'static str {
        ROUTER_IF
    }

    /// Creates a tap in the LAN namespace and joins it to `segment`'s bridge.
    pub fn add_tap(&self, tap: &str, segment: Segment) -> Result<()> {
        if tap.len() > 15 {
            return Err(LabError::InvalidOption {
                option: "tap name",
                reason: format!("{tap} is longer than 15 bytes"),
            });
        }
        let lan = self.names.lan.as_str();
        cmd::ip_in(lan, &["tuntap", "add", "dev", tap, "mode", "tap"])?;
        cmd::ip_in(lan, &["link", "set", tap, "master", segment.bridge(), "up"])?;
        Ok(())
    }

    pub fn remove_tap(&self, tap: &str) {
        let _ = cmd::ip_in(&self.names.lan, &["link", "del", tap]);
    }

    /// Deletes the namespaces now (also done on drop).
    pub fn destroy(&mut self) {
        for ns in self.created.drain(..).rev() {
            let _ = cmd::ip(&["netns", "del", &ns]);
        }
    }
}

impl Drop for LabNetwork {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// No IPv6 on the lab's own interfaces: no DAD, router solicitations or MLD
/// noise on the segments. Frames between VMs are still bridged, so the
/// appliance's router advertisements reach the nodes.
fn quiet_ipv6(ns: &str) -> Result<()> {
    cmd::run(cmd::in_netns(ns, "sysctl").args([
        "-q",
        "-w",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ]))?;
    Ok(())
}
