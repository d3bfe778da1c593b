//! What the network phase will configure, derived from the effective
//! `SiteConfig`: roles, addresses, open ports, resolvers. Also the checks that
//! only the network phase can make (a leased uplink subnet that overlaps the
//! LAN) and the ones it repeats because a bad plan must never reach the kernel.
//!
//! Pure: never touches the system.

use crate::firewall::{OpenPort, L4};
use ipnetwork::Ipv4Network;
use kindling_site::{NicMatch, SiteConfig, UplinkMode};
use std::net::Ipv4Addr;

/// The uplink's addressing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkAddressing {
    Dhcp,
    Static {
        address: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        dns: Vec<Ipv4Addr>,
    },
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPlan {
    pub hostname: String,
    pub lan_match: NicMatch,
    pub lan_address: Ipv4Addr,
    pub lan_subnet: Ipv4Network,
    pub lan_vlan: Option<u16>,
    pub lan_mtu: Option<u32>,
    pub nat: bool,
    pub uplink_match: NicMatch,
    pub uplink: UplinkAddressing,
    pub uplink_mtu: Option<u32>,
    pub lan_open: Vec<OpenPort>,
    pub uplink_open: Vec<OpenPort>,
    /// The stack's TLS ports nodes use: open on the LAN only once the
    /// stack's bootstrap has finished (until then a LAN host could race the
    /// ACL bootstrap or Vault's init).
    pub stack_lan_open: Vec<OpenPort>,
    /// Stack services the site exposes on the uplink: their TLS API port,
    /// open once the stack's bootstrap has finished.
    pub stack_uplink_open: Vec<OpenPort>,
    pub dns_forwarder: bool,
    pub consul_domain: String,
    /// Configured resolvers; empty means the ones learnt from the uplink.
    pub dns_upstream: Vec<Ipv4Addr>,
    /// Problems found while planning; each degrades, none stops the LAN.
    pub problems: Vec<String>,
}

const TCP: L4 = L4::Tcp;
const UDP: L4 = L4::Udp;

fn open(proto: L4, port: u16) -> OpenPort {
    OpenPort { proto, port }
}

/// The port a service listens on for clients on the uplink when the site
/// exposes it: the API, and each stack service's TLS API.
fn exposed_port(name: &str, api_port: u16) -> Option<OpenPort> {
    match name {
        "api" => Some(open(TCP, api_port)),
        "consul" => Some(open(TCP, 8501)),
        "vault" => Some(open(TCP, 8200)),
        "nomad" => Some(open(TCP, 4646)),
        _ => None,
    }
}

/// What nodes on the LAN need of the stack, all TLS or encrypted: Consul's
/// RPC (8300, mutual TLS), LAN gossip (8301 tcp+udp, encrypted) and HTTPS
/// API (8501, client certificates); Vault's TLS listener (8200); Nomad's
/// HTTPS API (4646) and RPC (4647), both mutual TLS. Not: Consul's plain
/// HTTP and DNS (loopback only; the appliance's DNS forwarder answers the
/// LAN), WAN gossip, Vault's cluster port, Nomad's server gossip (one server).
fn stack_ports(site: &SiteConfig) -> Vec<OpenPort> {
    let stack = &site.stack;
    let mut ports = Vec::new();
    if stack.consul.enabled {
        ports.extend([
            open(TCP, 8300),
            open(TCP, 8301),
            open(UDP, 8301),
            open(TCP, 8501),
        ]);
    }
    if stack.vault.enabled {
        ports.push(open(TCP, 8200));
    }
    if stack.nomad.enabled {
        ports.extend([open(TCP, 4646), open(TCP, 4647)]);
    }
    ports
}

fn is_stack(name: &str) -> bool {
    matches!(name, "consul" | "vault" | "nomad")
}

fn stack_enabled(site: &SiteConfig, name: &str) -> bool {
    match name {
        "consul" => site.stack.consul.enabled,
        "vault" => site.stack.vault.enabled,
        "nomad" => site.stack.nomad.enabled,
        _ => false,
    }
}

impl NetPlan {
    pub fn from_site(site: &SiteConfig) -> Self {
        let net = &site.network;
        let mut problems = Vec::new();
        let lan_address = net.lan.address.addr();
        let lan_subnet = Ipv4Network::new(net.lan.address.network(), net.lan.address.prefix_len())
            .unwrap_or_else(|_| fallback_lan());

        let mut uplink = match net.uplink.mode {
            UplinkMode::Dhcp => UplinkAddressing::Dhcp,
            UplinkMode::None => UplinkAddressing::None,
            UplinkMode::Static => match net.uplink.address {
                Some(cidr) => UplinkAddressing::Static {
                    address: cidr.addr(),
                    prefix_len: cidr.prefix_len(),
                    gateway: net.uplink.gateway,
                    dns: net.uplink.dns.clone(),
                },
                None => {
                    problems.push(
                        "uplink: mode static without network.uplink.address: uplink left down"
                            .into(),
                    );
                    UplinkAddressing::None
                }
            },
        };
        if let UplinkAddressing::Static {
            address,
            prefix_len,
            ..
        } = &uplink
        {
            if let Some(reason) = overlap_with_lan(lan_subnet, *address, *prefix_len) {
                problems.push(format!("uplink: static address {address}/{prefix_len} {reason}: uplink left unconfigured"));
                uplink = UplinkAddressing::None;
            }
        }

        // DHCP server (67), TFTP (69), PXE HTTP; 68 lets the PXE service hear
        // other DHCP servers' offers (rogue detection); 4011 is proxyDHCP's
        // boot-server port.
        let mut lan_open = vec![
            open(UDP, 67),
            open(UDP, 68),
            open(UDP, 69),
            open(TCP, site.pxe.http_port),
        ];
        if site.pxe.mode == kindling_site::DhcpMode::Proxy {
            lan_open.push(open(UDP, 4011));
        }
        let dns_forwarder = site.dns.forwarder;
        if dns_forwarder {
            lan_open.extend([open(UDP, 53), open(TCP, 53)]);
        }
        if site.time.ntp_server {
            lan_open.push(open(UDP, 123));
        }
        lan_open.push(open(TCP, site.api.port));
        let stack_lan_open = stack_ports(site);
        let (mut uplink_open, mut stack_uplink_open) = (Vec::new(), Vec::new());
        for name in &net.uplink.expose {
            match exposed_port(name, site.api.port) {
                None => problems.push(format!(
                    "uplink: cannot expose unknown service {name:?}: ignored"
                )),
                Some(_) if is_stack(name) && !stack_enabled(site, name) => problems.push(format!(
                    "uplink: cannot expose {name:?}: stack.{name}.enabled is false"
                )),
                Some(port) if is_stack(name) => stack_uplink_open.push(port),
                Some(port) => uplink_open.push(port),
            }
        }

        NetPlan {
            hostname: site.site.hostname.clone(),
            lan_match: net.lan.nic.clone(),
            lan_address,
            lan_subnet,
            lan_vlan: net.lan.vlan,
            lan_mtu: net.lan.mtu,
            nat: net.lan.nat,
            uplink_match: net.uplink.nic.clone(),
            uplink,
            uplink_mtu: net.uplink.mtu,
            lan_open,
            uplink_open,
            stack_lan_open,
            stack_uplink_open,
            dns_forwarder,
            consul_domain: site
                .dns
                .consul_domain
                .trim_matches('.')
                .to_ascii_lowercase(),
            dns_upstream: site.dns.upstream.clone(),
            problems,
        }
    }

    pub fn uplink_wanted(&self) -> bool {
        self.uplink != UplinkAddressing::None
    }
}

fn fallback_lan() -> Ipv4Network {
    // 192.168.100.0/24 with a valid prefix: `new` cannot fail here.
    Ipv4Network::new(Ipv4Addr::new(192, 168, 100, 0), 24)
        .unwrap_or_else(|_| Ipv4Network::from(Ipv4Addr::UNSPECIFIED))
}

/// `Some(reason)` when an uplink address/prefix collides with the LAN subnet.
pub fn overlap_with_lan(lan: Ipv4Network, address: Ipv4Addr, prefix_len: u8) -> Option<String> {
    if lan.contains(address) {
        return Some(format!("lies inside the LAN subnet {lan}"));
    }
    let uplink = Ipv4Network::new(address, prefix_len).ok()?;
    let uplink_net = Ipv4Network::new(uplink.network(), prefix_len).ok()?;
    if uplink_net.contains(lan.network()) || lan.contains(uplink_net.network()) {
        return Some(format!(
            "is in subnet {uplink_net}, which overlaps the LAN subnet {lan}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn lab() -> SiteConfig {
        let mut site = SiteConfig::default();
        site.site.id = "lab".into();
        site
    }

    #[test]
    fn default_site_plans_dhcp_uplink_and_the_seed_lan() {
        let plan = NetPlan::from_site(&lab());
        assert_eq!(plan.lan_address, Ipv4Addr::new(192, 168, 100, 1));
        assert_eq!(plan.lan_subnet.to_string(), "192.168.100.0/24");
        assert_eq!(plan.uplink, UplinkAddressing::Dhcp);
        assert!(plan.nat);
        assert!(
            plan.uplink_open.is_empty(),
            "nothing is exposed on the uplink by default"
        );
        assert!(plan.lan_open.contains(&open(UDP, 67)));
        assert!(plan.lan_open.contains(&open(UDP, 53)));
        assert!(
            plan.lan_open.contains(&open(UDP, 68)),
            "rogue DHCP offers must reach pxe"
        );
        assert!(
            !plan.lan_open.contains(&open(UDP, 4011)),
            "no proxyDHCP port unless proxy mode"
        );
        assert!(plan.problems.is_empty());
    }

    #[test]
    fn proxy_dhcp_opens_the_boot_server_port() {
        let mut site = lab();
        site.pxe.mode = kindling_site::DhcpMode::Proxy;
        assert!(NetPlan::from_site(&site)
            .lan_open
            .contains(&open(UDP, 4011)));
    }

    #[test]
    fn ntp_port_is_open_on_the_lan_only_when_served() {
        let mut site = lab();
        assert!(!NetPlan::from_site(&site).lan_open.contains(&open(UDP, 123)));
        site.time.ntp_server = true;
        let plan = NetPlan::from_site(&site);
        assert!(plan.lan_open.contains(&open(UDP, 123)));
        assert!(!plan.uplink_open.contains(&open(UDP, 123)));
    }

    #[test]
    fn static_uplink_inside_the_lan_is_refused_and_reported() {
        let mut site = lab();
        site.network.uplink.mode = UplinkMode::Static;
        site.network.uplink.address = Some("192.168.100.7/24".parse().unwrap());
        let plan = NetPlan::from_site(&site);
        assert_eq!(plan.uplink, UplinkAddressing::None);
        assert_eq!(plan.problems.len(), 1);
        assert!(
            plan.problems[0].contains("inside the LAN subnet 192.168.100.0/24"),
            "{:?}",
            plan.problems
        );
    }

    #[test]
    fn static_uplink_whose_subnet_covers_the_lan_is_refused() {
        let mut site = lab();
        site.network.uplink.mode = UplinkMode::Static;
        site.network.uplink.address = Some("192.168.0.2/16".parse().unwrap());
        let plan = NetPlan::from_site(&site);
        assert_eq!(plan.uplink, UplinkAddressing::None);
        assert!(
            plan.problems[0].contains("overlaps the LAN subnet"),
            "{:?}",
            plan.problems
        );
    }

    #[test]
    fn overlap_check_accepts_disjoint_subnets() {
        let lan = Ipv4Network::new(Ipv4Addr::new(192, 168, 100, 0), 24).unwrap();
        assert_eq!(overlap_with_lan(lan, Ipv4Addr::new(10, 0, 2, 15), 24), None);
        assert!(overlap_with_lan(lan, Ipv4Addr::new(192, 168, 100, 200), 25).is_some());
        assert!(overlap_with_lan(lan, Ipv4Addr::new(192, 168, 101, 1), 23).is_some());
    }

    #[test]
    fn exposed_services_open_uplink_ports() {
        let mut site = lab();
        site.stack.vault.enabled = true;
        site.network.uplink.expose = vec!["api".into(), "vault".into(), "nomad".into()];
        let plan = NetPlan::from_site(&site);
        assert_eq!(plan.uplink_open, vec![open(TCP, 9000)]);
        // A stack service opens with the stack's other ports, after bootstrap.
        assert_eq!(plan.stack_uplink_open, vec![open(TCP, 8200)]);
        assert_eq!(
            plan.problems,
            ["uplink: cannot expose \"nomad\": stack.nomad.enabled is false"]
        );
    }

    #[test]
    fn the_stack_is_sealed_off_until_bootstrapped_and_tls_only_after() {
        let mut site = lab();
        site.stack.consul.enabled = true;
        site.stack.vault.enabled = true;
        site.stack.nomad.enabled = true;
        let plan = NetPlan::from_site(&site);
        for port in [8200, 8300, 8301, 8500, 8501, 8600, 4646, 4647, 4648] {
            assert!(
                !plan.lan_open.iter().any(|p| p.port == port),
                "{port} open before the stack's bootstrap"
            );
        }
        let after: Vec<u16> = plan.stack_lan_open.iter().map(|p| p.port).collect();
        assert_eq!(after, [8300, 8301, 8301, 8501, 8200, 4646, 4647]);
        for plain in [8500, 8600, 8302, 8201, 4648] {
            assert!(!after.contains(&plain), "{plain} is not for nodes");
        }
    }
}
