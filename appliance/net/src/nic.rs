//! Physical NIC discovery and role assignment (uplink, LAN) by MAC, PCI path,
//! order, or first-with-carrier.
//!
//! Owns the decision which interface plays which role. It never changes an
//! interface; `discover` only reads netlink and sysfs.

use futures_util::TryStreamExt;
use kindling_site::NicMatch;
use rtnetlink::packet_route::link::{
    LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage,
};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NicDiscoveryError {
    #[error("list network interfaces over netlink: {0}")]
    ListLinks(rtnetlink::Error),
}

/// One candidate interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nic {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    /// PCI address from sysfs (`0000:00:03.0`), when the device sits on PCI.
    pub pci_path: Option<String>,
    pub carrier: bool,
}

impl Nic {
    pub fn mac_string(&self) -> String {
        kindling_site::MacAddr(self.mac).to_string()
    }
}

/// Which interfaces count as NICs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicFilter {
    /// Ethernet devices backed by hardware (`/sys/class/net/X/device` exists).
    Physical,
    /// Every Ethernet-type link except loopback: veth pairs in test namespaces
    /// stand in for NICs. Never the appliance's default.
    AnyEthernet,
}

/// Lists candidate NICs in the current network namespace, in bus order
/// (PCI address, then interface index).
pub async fn discover(
    handle: &rtnetlink::Handle,
    sysfs_net: &Path,
    filter: NicFilter,
) -> Result<Vec<Nic>, NicDiscoveryError> {
    let mut links = handle.link().get().execute();
    let mut nics = Vec::new();
    while let Some(link) = links
        .try_next()
        .await
        .map_err(NicDiscoveryError::ListLinks)?
    {
        if let Some(nic) = candidate(&link, sysfs_net, filter) {
            nics.push(nic);
        }
    }
    sort_bus_order(&mut nics);
    Ok(nics)
}

fn candidate(link: &LinkMessage, sysfs_net: &Path, filter: NicFilter) -> Option<Nic> {
    if link.header.link_layer_type != LinkLayerType::Ether
        || link.header.flags.contains(LinkFlags::Loopback)
    {
        return None;
    }
    let mut name = None;
    let mut mac = None;
    let mut carrier = false;
    let mut has_kind = false;
    for attr in &link.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(bytes);
                mac = Some(m);
            }
            LinkAttribute::Carrier(c) => carrier = *c != 0,
            LinkAttribute::LinkInfo(infos) => {
                has_kind = infos.iter().any(|i| matches!(i, LinkInfo::Kind(_)))
            }
            _ => {}
        }
    }
    let name = name?;
    let device_dir = sysfs_net.join(&name).join("device");
    let physical = !has_kind && device_dir.exists();
    if filter == NicFilter::Physical && !physical {
        return None;
    }
    // Our own VLAN on the LAN NIC is a link with a kind; never a NIC itself.
    if filter == NicFilter::AnyEthernet && has_kind && !is_veth(link) {
        return None;
    }
    Some(Nic {
        pci_path: pci_path(&device_dir),
        name,
        index: link.header.index,
        mac: mac?,
        carrier,
    })
}

fn is_veth(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| {
            matches!(
                i,
                LinkInfo::Kind(rtnetlink::packet_route::link::InfoKind::Veth)
            )
        }),
        _ => false,
    })
}

/// `/sys/class/net/X/device` links to `…/0000:00:03.0` for a PCI NIC, or to
/// `…/0000:00:03.0/virtio0` for virtio; the PCI address is the last path
/// component that looks like one.
fn pci_path(device_dir: &Path) -> Option<String> {
    let target: PathBuf = std::fs::canonicalize(device_dir).ok()?;
    target
        .components()
        .rev()
        .filter_map(|c| c.as_os_str().to_str())
        .find(|part| looks_like_pci_address(part))
        .map(str::to_owned)
}

fn looks_like_pci_address(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == 12 && bytes[4] == b':' && bytes[7] == b':' && bytes[10] == b'.'
}

fn sort_bus_order(nics: &mut [Nic]) {
    nics.sort_by(|a, b| match (&a.pci_path, &b.pci_path) {
        (Some(pa), Some(pb)) => pa.cmp(pb).then(a.index.cmp(&b.index)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.index.cmp(&b.index),
    });
}

/// The one sentence for a machine without any NIC: the service fails with
/// it instead of reporting ready (there is no LAN to serve).
pub const NO_NIC: &str = "no network interface found: nothing to bring up";

/// The outcome of matching roles to NICs; problems are human sentences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleAssignment {
    pub uplink: Option<Nic>,
    pub lan: Option<Nic>,
    pub problems: Vec<String>,
}

impl RoleAssignment {
    /// Why the service must not report ready, whatever else happens: no
    /// interface at all. A missing match with NICs present only degrades
    /// (the operator can see and fix the match; the uplink may still serve).
    pub fn fatal(&self) -> Option<&'static str> {
        (self.lan.is_none() && self.uplink.is_none() && self.problems.iter().any(|p| p == NO_NIC))
            .then_some(NO_NIC)
    }
}

/// Binds the LAN first (it must come up even when the uplink cannot), then the
/// uplink; one NIC never plays both roles. `uplink_wanted` is false for
/// uplink mode `none`.
pub fn assign_roles(
    nics: &[Nic],
    lan: &NicMatch,
    uplink: &NicMatch,
    uplink_wanted: bool,
) -> RoleAssignment {
    let mut out = RoleAssignment::default();
    if nics.is_empty() {
        out.problems.push(NO_NIC.into());
        return out;
    }
    // Order-based roles are resolved against the full list, so "second NIC"
    // means the second NIC even if the first is missing a cable.
    out.lan = pick(nics, lan, None);
    if out.lan.is_none() {
        out.problems.push(format!(
            "LAN: no interface matches {} (found {})",
            describe(lan),
            list(nics)
        ));
    }
    if uplink_wanted {
        out.uplink = pick(nics, uplink, out.lan.as_ref());
        if out.uplink.is_none() {
            out.problems.push(format!(
                "uplink: no interface matches {} (found {}): running without uplink, no NAT",
                describe(uplink),
                list(nics)
            ));
        }
    }
    out
}

fn pick(nics: &[Nic], rule: &NicMatch, taken: Option<&Nic>) -> Option<Nic> {
    let free = |nic: &&Nic| taken.is_none_or(|t| t.index != nic.index);
    match rule {
        NicMatch::Order(n) => {
            let i = usize::try_from(*n).ok()?.checked_sub(1)?;
            nics.get(i).filter(|nic| free(nic)).cloned()
        }
        NicMatch::Mac(mac) => nics
            .iter()
            .filter(free)
            .find(|nic| nic.mac == mac.octets())
            .cloned(),
        NicMatch::PciPath(path) => nics
            .iter()
            .filter(free)
            .find(|nic| nic.pci_path.as_deref() == Some(path.as_str()))
            .cloned(),
        NicMatch::FirstWithCarrier => nics.iter().filter(free).find(|nic| nic.carrier).cloned(),
    }
}

fn describe(rule: &NicMatch) -> String {
    match rule {
        NicMatch::Order(n) => format!("order {n}"),
        NicMatch::Mac(mac) => format!("MAC {mac}"),
        NicMatch::PciPath(path) => format!("PCI path {path}"),
        NicMatch::FirstWithCarrier => "first NIC with carrier".into(),
    }
}

fn list(nics: &[Nic]) -> String {
    let names: Vec<String> = nics
        .iter()
        .map(|n| format!("{} {}", n.name, n.mac_string()))
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn nic(name: &str, index: u32, last: u8, pci: Option<&str>, carrier: bool) -> Nic {
        Nic {
            name: name.into(),
            index,
            mac: [0x52, 0x54, 0, 0x6b, 0, last],
            pci_path: pci.map(str::to_owned),
            carrier,
        }
    }

    fn two() -> Vec<Nic> {
        vec![
            nic("enp0s3", 2, 1, Some("0000:00:03.0"), true),
            nic("enp0s4", 3, 2, Some("0000:00:04.0"), false),
        ]
    }

    #[test]
    fn default_is_first_uplink_second_lan() {
        let got = assign_roles(&two(), &NicMatch::Order(2), &NicMatch::Order(1), true);
        assert_eq!(got.uplink.unwrap().name, "enp0s3");
        assert_eq!(got.lan.unwrap().name, "enp0s4");
        assert!(got.problems.is_empty());
    }

    #[test]
    fn match_by_mac_and_pci_path() {
        let lan_mac = "52:54:00:6b:00:01".parse().unwrap();
        let got = assign_roles(
            &two(),
            &NicMatch::Mac(lan_mac),
            &NicMatch::PciPath("0000:00:04.0".into()),
            true,
        );
        assert_eq!(got.lan.unwrap().name, "enp0s3");
        assert_eq!(got.uplink.unwrap().name, "enp0s4");
    }

    #[test]
    fn first_with_carrier_skips_the_lan_nic() {
        let mut nics = two();
        nics[1].carrier = true;
        let got = assign_roles(
            &nics,
            &NicMatch::Order(1),
            &NicMatch::FirstWithCarrier,
            true,
        );
        assert_eq!(got.lan.unwrap().name, "enp0s3");
        assert_eq!(got.uplink.unwrap().name, "enp0s4");
    }

    #[test]
    fn one_nic_only_keeps_the_lan_and_reports_the_uplink() {
        let nics = vec![two().remove(0)];
        let got = assign_roles(&nics, &NicMatch::Order(1), &NicMatch::Order(2), true);
        assert_eq!(got.lan.unwrap().name, "enp0s3");
        assert!(got.uplink.is_none());
        assert_eq!(got.problems.len(), 1);
        assert!(
            got.problems[0].contains("uplink: no interface matches order 2"),
            "{:?}",
            got.problems
        );
    }

    #[test]
    fn same_nic_never_plays_both_roles() {
        let got = assign_roles(&two(), &NicMatch::Order(1), &NicMatch::Order(1), true);
        assert_eq!(got.lan.unwrap().name, "enp0s3");
        assert!(got.uplink.is_none());
    }

    #[test]
    fn no_nic_is_one_clear_problem() {
        let got = assign_roles(&[], &NicMatch::Order(2), &NicMatch::Order(1), true);
        assert_eq!(
            got.problems,
            vec!["no network interface found: nothing to bring up".to_string()]
        );
        assert_eq!(
            got.fatal(),
            Some("no network interface found: nothing to bring up")
        );
    }

    #[test]
    fn only_no_nic_at_all_is_fatal() {
        let both = assign_roles(&two(), &NicMatch::Order(2), &NicMatch::Order(1), true);
        assert_eq!(both.fatal(), None);
        // No LAN match with NICs present degrades, it does not fail.
        let no_lan = assign_roles(&two(), &NicMatch::Order(5), &NicMatch::Order(1), true);
        assert!(no_lan.lan.is_none() && !no_lan.problems.is_empty());
        assert_eq!(no_lan.fatal(), None);
        let none_at_all = assign_roles(&[], &NicMatch::Order(2), &NicMatch::Order(1), false);
        assert_eq!(none_at_all.fatal(), Some(NO_NIC));
    }

    #[test]
    fn uplink_mode_none_claims_nothing() {
        let got = assign_roles(&two(), &NicMatch::Order(2), &NicMatch::Order(1), false);
        assert!(got.uplink.is_none());
        assert!(got.problems.is_empty());
    }

    #[test]
    fn bus_order_puts_pci_first_then_index() {
        let mut nics = vec![
            nic("veth9", 9, 9, None, true),
            nic("enp0s4", 3, 2, Some("0000:00:04.0"), true),
            nic("enp0s3", 7, 1, Some("0000:00:03.0"), true),
        ];
        sort_bus_order(&mut nics);
        let names: Vec<&str> = nics.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["enp0s3", "enp0s4", "veth9"]);
    }

    #[test]
    fn pci_address_shape() {
        assert!(looks_like_pci_address("0000:00:03.0"));
        assert!(!looks_like_pci_address("virtio0"));
        assert!(!looks_like_pci_address("pci0000:00"));
    }
}
