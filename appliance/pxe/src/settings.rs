//! `PxeSettings`: everything the PXE service needs, derived once from the
//! effective `SiteConfig` plus the on-disk locations (overridable for tests).
//!
//! Owns the translation and its validation (LAN CIDR, range inside the LAN,
//! reservations, profile names). It never opens sockets or reads artifacts.

use kindling_inventory::{MembershipRules, ProfilePolicy};
use kindling_site::MacAddr;
use kindling_site::{DhcpMode, Profile, ProfileSelector, SiteConfig, UnknownMacPolicy};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

/// Where the service reads and writes on disk. `Default` is the appliance layout
/// from docs/contracts.md.
#[derive(Debug, Clone)]
pub struct PxePaths {
    /// iPXE binaries served by TFTP and `/boot/NAME` (undionly.kpxe, ipxe.efi, snponly.efi).
    pub boot_dir: PathBuf,
    /// Artifact directories, highest priority first (data partition wins over the image).
    pub artifact_dirs: Vec<PathBuf>,
    /// Data-partition state: `leases/` and `inventory/` live under here.
    pub state_dir: PathBuf,
    /// Directory packed into `/repo.tar.gz`; absent means 404.
    pub repo_dir: Option<PathBuf>,
    /// Where `status/pxe.json` is written.
    pub status_file: PathBuf,
    /// The node agent (`kindling-node`) provisioned nodes fetch by its
    /// sha256 (`/by-hash/sha256/HEX`) and run at first boot; absent means
    /// nodes are not told to run one.
    pub node_agent: PathBuf,
    /// The Consul binary the image carries (`--extra-bin consul=…`), handed
    /// to nodes by its sha256 as their Consul client when the site runs
    /// Consul; absent means not offered.
    pub consul_binary: PathBuf,
    /// The same for Nomad, offered only when the site runs Nomad.
    pub nomad_binary: PathBuf,
}

/// Where the image puts the node agent.
pub const NODE_AGENT_PATH: &str = "/usr/share/kindling/node/kindling-node";
/// Where the image puts extra binaries (`/bin/NAME`), as the stack runs them.
pub const CONSUL_BINARY_PATH: &str = "/bin/consul";
pub const NOMAD_BINARY_PATH: &str = "/bin/nomad";

impl Default for PxePaths {
    fn default() -> Self {
        Self {
            boot_dir: "/usr/share/kindling/boot".into(),
            artifact_dirs: vec![
                "/var/lib/kindling/artifacts".into(),
                "/usr/share/kindling/artifacts".into(),
            ],
            state_dir: "/var/lib/kindling".into(),
            repo_dir: Some("/var/lib/kindling/repo".into()),
            status_file: "/run/kindling/status/pxe.json".into(),
            node_agent: NODE_AGENT_PATH.into(),
            consul_binary: CONSUL_BINARY_PATH.into(),
            nomad_binary: NOMAD_BINARY_PATH.into(),
        }
    }
}

impl PxePaths {
    pub fn leases_file(&self) -> PathBuf {
        self.state_dir.join("leases").join("leases.json")
    }
    pub fn nodes_file(&self) -> PathBuf {
        kindling_inventory::nodes_file(&self.state_dir)
    }
    pub fn assignments_file(&self) -> PathBuf {
        kindling_inventory::assignments_file(&self.state_dir)
    }
}

/// A reservation from `site.nodes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub profile: String,
    pub ip: Option<Ipv4Addr>,
    pub hostname: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PxeSettings {
    pub lan_addr: Ipv4Addr,
    pub lan_prefix: u8,
    pub range_start: Ipv4Addr,
    pub range_end: Ipv4Addr,
    pub lease_secs: u32,
    pub mode: DhcpMode,
    pub domain: String,
    pub dns: Vec<Ipv4Addr>,
    pub ntp: Vec<Ipv4Addr>,
    pub http_port: u16,
    pub default_profile: Option<String>,
    pub unknown: UnknownMacPolicy,
    pub router_advertisements: bool,
    /// `pxe.max_discovered`: discovered-only inventory records kept.
    pub max_discovered: usize,
    pub reservations: BTreeMap<MacAddr, Reservation>,
    /// `[[selectors]]`, validated with the site.
    pub selectors: Vec<ProfileSelector>,
    pub profiles: BTreeMap<String, Profile>,
    /// What a node's Consul catalog entry must be for it to be `joined`.
    pub membership: MembershipRules,
    /// The stack nodes join (node.json's `stack`); `None` when the site
    /// runs no Consul, so there is nothing to join.
    pub stack: Option<NodeStack>,
    pub paths: PxePaths,
}

/// The stack ports nodes dial on the appliance's LAN address. `Default` is
/// the upstream defaults, which the appliance's stack uses; `kindlingd pxe`
/// sets them from the stack's own layout so the two cannot drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinPorts {
    pub consul_serf_lan: u16,
    pub nomad_rpc: u16,
}

impl Default for JoinPorts {
    fn default() -> Self {
        Self {
            consul_serf_lan: 8301,
            nomad_rpc: 4647,
        }
    }
}

/// What a node with a grant is told of the stack it joins: node.json's
/// `stack` block (the agent's `StackFile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStack {
    pub datacenter: String,
    /// Consul's LAN gossip on the appliance.
    pub consul_join: Vec<SocketAddrV4>,
    /// Nomad's server RPC on the appliance; empty when the site runs no
    /// Nomad.
    pub nomad_servers: Vec<SocketAddrV4>,
}

impl NodeStack {
    /// The appliance's own servers, from `[stack]`: `None` without Consul
    /// (nodes join the stack through their Consul client).
    pub fn from_site(site: &SiteConfig, lan_addr: Ipv4Addr, ports: JoinPorts) -> Option<Self> {
        let stack = &site.stack;
        if !stack.consul.enabled {
            return None;
        }
        let nomad_servers = if stack.nomad.enabled {
            vec![SocketAddrV4::new(lan_addr, ports.nomad_rpc)]
        } else {
            Vec::new()
        };
        Some(Self {
            datacenter: stack.datacenter.clone(),
            consul_join: vec![SocketAddrV4::new(lan_addr, ports.consul_serf_lan)],
            nomad_servers,
        })
    }

    /// Whether nodes run a Nomad client (the site runs Nomad's server).
    pub fn runs_nomad(&self) -> bool {
        !self.nomad_servers.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "network.lan.address {0}: the LAN needs a prefix of /30 or shorter to hold any clients"
    )]
    LanAddress(String),
    #[error("pxe.range {start}–{end} is not inside the LAN {lan}/{prefix} or is reversed")]
    RangeOutsideLan {
        start: Ipv4Addr,
        end: Ipv4Addr,
        lan: Ipv4Addr,
        prefix: u8,
    },
    #[error("nodes[{index}] ({mac}): profile {profile:?} is not defined in profiles/")]
    NodeProfile {
        index: usize,
        mac: String,
        profile: String,
    },
    #[error("nodes[{index}] ({mac}): reserved ip {ip} is not inside the LAN")]
    NodeIp {
        index: usize,
        mac: String,
        ip: Ipv4Addr,
    },
    #[error("nodes[{index}]: MAC {mac} is listed twice")]
    DuplicateMac { index: usize, mac: String },
    #[error("pxe.default_profile {0:?} is not defined in profiles/")]
    DefaultProfile(String),
}

pub fn netmask(prefix: u8) -> Ipv4Addr {
    let bits = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    Ipv4Addr::from(bits)
}

impl PxeSettings {
    pub fn from_site(site: &SiteConfig, paths: PxePaths) -> Result<Self, SettingsError> {
        let lan = &site.network.lan.address;
        let (lan_addr, lan_prefix) = (lan.addr(), lan.prefix_len());
        if lan_prefix > 30 {
            return Err(SettingsError::LanAddress(lan.to_string()));
        }
        let pxe = &site.pxe;
        let mut settings = Self {
            lan_addr,
            lan_prefix,
            range_start: pxe.range.start,
            range_end: pxe.range.end,
            lease_secs: pxe.lease_secs.max(60),
            mode: pxe.mode,
            domain: site.site.domain.clone(),
            dns: if site.dns.forwarder {
                vec![lan_addr]
            } else {
                site.dns.upstream.clone()
            },
            ntp: advertised_ntp(site, lan_addr),
            http_port: pxe.http_port,
            default_profile: pxe.default_profile.as_ref().map(|p| p.to_string()),
            unknown: pxe.unknown,
            selectors: site.selectors.clone(),
            router_advertisements: pxe.router_advertisements,
            max_discovered: usize::try_from(pxe.max_discovered).unwrap_or(usize::MAX),
            reservations: BTreeMap::new(),
            profiles: site
                .profiles
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            membership: MembershipRules::from_site(site),
            stack: NodeStack::from_site(site, lan_addr, JoinPorts::default()),
            paths,
        };
        let (start, end) = (pxe.range.start, pxe.range.end);
        if !settings.in_lan(start) || !settings.in_lan(end) || u32::from(start) > u32::from(end) {
            return Err(SettingsError::RangeOutsideLan {
                start,
                end,
                lan: lan_addr,
                prefix: lan_prefix,
            });
        }
        if let Some(name) = &settings.default_profile {
            if !settings.profiles.contains_key(name) {
                return Err(SettingsError::DefaultProfile(name.clone()));
            }
        }
        for (index, node) in site.nodes.iter().enumerate() {
            let mac = node.mac;
            if !settings.profiles.contains_key(node.profile.as_str()) {
                return Err(SettingsError::NodeProfile {
                    index,
                    mac: mac.to_string(),
                    profile: node.profile.to_string(),
                });
            }
            if let Some(ip) = node.ip {
                if !settings.in_lan(ip) || ip == lan_addr {
                    return Err(SettingsError::NodeIp {
                        index,
                        mac: mac.to_string(),
                        ip,
                    });
                }
            }
            let reservation = Reservation {
                profile: node.profile.to_string(),
                ip: node.ip,
                hostname: node.hostname.clone(),
            };
            if settings.reservations.insert(mac, reservation).is_some() {
                return Err(SettingsError::DuplicateMac {
                    index,
                    mac: mac.to_string(),
                });
            }
        }
        Ok(settings)
    }

    /// What the inventory needs to decide a MAC's profile.
    pub fn profile_policy(&self) -> ProfilePolicy {
        ProfilePolicy {
            profiles: self.profiles.keys().cloned().collect(),
            reservations: self
                .reservations
                .iter()
                .map(|(mac, r)| (*mac, r.profile.clone()))
                .collect(),
            selectors: self.selectors.clone(),
            unknown: self.unknown,
            default_profile: self.default_profile.clone(),
        }
    }

    pub fn in_lan(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(netmask(self.lan_prefix));
        u32::from(ip) & mask == u32::from(self.lan_addr) & mask
    }

    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.range_start)..=u32::from(self.range_end)).contains(&u32::from(ip))
    }

    pub fn netmask(&self) -> Ipv4Addr {
        netmask(self.lan_prefix)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.lan_addr) | !u32::from(self.netmask()))
    }

    /// Base URL of the PXE HTTP server as nodes see it, with a trailing `/`.
    pub fn base_url(&self) -> String {
        if self.http_port == 80 {
            format!("http://{}/", self.lan_addr)
        } else {
            format!("http://{}:{}/", self.lan_addr, self.http_port)
        }
    }
}

/// NTP servers told to nodes: the appliance first when it serves time, then
/// the site's own list.
fn advertised_ntp(site: &SiteConfig, lan_addr: Ipv4Addr) -> Vec<Ipv4Addr> {
    let own = site.time.ntp_server.then_some(lan_addr);
    let mut out: Vec<Ipv4Addr> = own.into_iter().collect();
    out.extend(site.pxe.ntp.iter().filter(|a| Some(**a) != own));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    pub(crate) use kindling_inventory::testing::lab_site;

    #[test]
    fn lab_site_translates() {
        let s = PxeSettings::from_site(&lab_site(), PxePaths::default()).unwrap();
        assert_eq!(s.lan_addr, Ipv4Addr::new(192, 168, 100, 1));
        assert_eq!(s.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(s.broadcast(), Ipv4Addr::new(192, 168, 100, 255));
        assert_eq!(s.reservations.len(), 2);
        assert_eq!(s.base_url(), "http://192.168.100.1/");
    }

    #[test]
    fn range_outside_lan_is_refused_with_reason() {
        let mut site = lab_site();
        site.pxe.range.end = Ipv4Addr::new(192, 168, 101, 10);
        let err = PxeSettings::from_site(&site, PxePaths::default()).unwrap_err();
        assert!(err.to_string().contains("not inside the LAN"), "{err}");
    }

    #[test]
    fn the_appliance_is_advertised_for_ntp_only_when_it_serves_it() {
        let mut site = lab_site();
        site.time.ntp_server = false;
        site.pxe.ntp = vec![Ipv4Addr::new(10, 0, 0, 123)];
        let s = PxeSettings::from_site(&site, PxePaths::default()).unwrap();
        assert_eq!(s.ntp, vec![Ipv4Addr::new(10, 0, 0, 123)]);
        site.time.ntp_server = true;
        site.pxe.ntp.push(Ipv4Addr::new(192, 168, 100, 1));
        let s = PxeSettings::from_site(&site, PxePaths::default()).unwrap();
        assert_eq!(
            s.ntp,
            vec![
                Ipv4Addr::new(192, 168, 100, 1),
                Ipv4Addr::new(10, 0, 0, 123)
            ],
            "the appliance first, listed once"
        );
    }

    #[test]
    fn nodes_join_the_stack_only_where_the_site_runs_it() {
        let mut site = lab_site();
        site.stack.consul.enabled = false;
        site.stack.nomad.enabled = true;
        let s = PxeSettings::from_site(&site, PxePaths::default()).unwrap();
        assert_eq!(s.stack, None, "no Consul: nothing to join");

        site.stack.consul.enabled = true;
        site.stack.nomad.enabled = false;
        let lan = Ipv4Addr::new(192, 168, 100, 1);
        let s = PxeSettings::from_site(&site, PxePaths::default()).unwrap();
        let stack = s.stack.unwrap();
        assert_eq!(stack.datacenter, "lab");
        assert_eq!(stack.consul_join, [SocketAddrV4::new(lan, 8301)]);
        assert!(stack.nomad_servers.is_empty() && !stack.runs_nomad());

        site.stack.nomad.enabled = true;
        let ports = JoinPorts {
            consul_serf_lan: 18301,
            nomad_rpc: 14647,
        };
        let stack = NodeStack::from_site(&site, lan, ports).unwrap();
        assert_eq!(stack.consul_join, [SocketAddrV4::new(lan, 18301)]);
        assert_eq!(stack.nomad_servers, [SocketAddrV4::new(lan, 14647)]);
    }

    #[test]
    fn unknown_profile_in_nodes_is_refused() {
        let mut site = lab_site();
        site.nodes[0].profile = "nope".parse().unwrap();
        let err = PxeSettings::from_site(&site, PxePaths::default()).unwrap_err();
        assert!(err.to_string().contains("nodes[0]"), "{err}");
    }
}
