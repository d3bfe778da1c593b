//! Checks that need the whole merged `SiteConfig` (a DHCP range inside the LAN,
//! profile references, duplicate MACs). Field-level checks happen while parsing
//! through the newtypes in `types`. Pure: never reads files.

use crate::keypath::KeyPath;
use crate::{SiteConfig, UnknownMacPolicy, UplinkMode, VaultStorage};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Services the uplink side may reach (`network.uplink.expose`).
pub const EXPOSABLE_SERVICES: &[&str] = &["api", "consul", "vault", "nomad"];

/// One semantic problem: where and why.
pub type Problem = (KeyPath, String);

impl SiteConfig {
    /// Every semantic problem of this config; empty means valid.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        check_identity(self, &mut out);
        check_network(self, &mut out);
        check_pxe(self, &mut out);
        check_nodes(self, &mut out);
        check_selectors(self, &mut out);
        check_profiles(self, &mut out);
        check_stack(self, &mut out);
        check_time(self, &mut out);
        check_logs(self, &mut out);
        check_backup(self, &mut out);
        check_api(self, &mut out);
        for (key, why) in self.update.problems() {
            out.push((at("update").key(key), why));
        }
        out
    }
}

fn at(path: &str) -> KeyPath {
    KeyPath::parse(path)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn check_identity(c: &SiteConfig, out: &mut Vec<Problem>) {
    let id = &c.site.id;
    if id.is_empty() {
        out.push((
            at("site.id"),
            "missing: some overlay must set the site id".into(),
        ));
    } else if !(id.len() <= 63
        && id
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        && !id.starts_with('-'))
    {
        out.push((
            at("site.id"),
            format!("{id:?} is not a valid site id (a-z, 0-9, '-', at most 63)"),
        ));
    }
    if !is_dns_label(&c.site.hostname) {
        out.push((
            at("site.hostname"),
            format!(
                "{:?} is not a valid host name (one DNS label)",
                c.site.hostname
            ),
        ));
    }
    if !is_dns_name(&c.site.domain) {
        out.push((
            at("site.domain"),
            format!("{:?} is not a valid DNS domain", c.site.domain),
        ));
    }
}

fn check_mtu(path: &str, mtu: Option<u32>, out: &mut Vec<Problem>) {
    if let Some(m) = mtu {
        if !(576..=9216).contains(&m) {
            out.push((at(path), format!("MTU {m} is outside 576..=9216")));
        }
    }
}

fn check_network(c: &SiteConfig, out: &mut Vec<Problem>) {
    let lan = &c.network.lan;
    let up = &c.network.uplink;
    if lan.address.prefix_len() > 30 {
        out.push((
            at("network.lan.address"),
            format!("{}: a LAN needs a prefix of /30 or shorter", lan.address),
        ));
    } else if lan.address.addr() == lan.address.network()
        || lan.address.addr() == lan.address.broadcast()
    {
        out.push((
            at("network.lan.address"),
            format!(
                "{} is the network or broadcast address of its subnet, not a host address",
                lan.address
            ),
        ));
    }
    if let Some(vlan) = lan.vlan {
        if !(1..=4094).contains(&vlan) {
            out.push((
                at("network.lan.vlan"),
                format!("VLAN id {vlan} is outside 1..=4094"),
            ));
        }
    }
    check_mtu("network.lan.mtu", lan.mtu, out);
    check_mtu("network.uplink.mtu", up.mtu, out);
    match (up.mode, &up.address) {
        (UplinkMode::Static, None) => {
            out.push((
                at("network.uplink.address"),
                "required when network.uplink.mode = \"static\"".into(),
            ));
        }
        (UplinkMode::Static, Some(addr)) => {
            if addr.overlaps(&lan.address) {
                out.push((
                    at("network.uplink.address"),
                    format!(
                        "uplink subnet {} overlaps the LAN subnet {}",
                        addr.subnet(),
                        lan.address.subnet()
                    ),
                ));
            }
            if let Some(gw) = up.gateway {
                if !addr.contains(gw) {
                    out.push((
                        at("network.uplink.gateway"),
                        format!("{gw} is outside the uplink subnet {}", addr.subnet()),
                    ));
                }
            }
        }
        (_, Some(_)) => {
            out.push((
                at("network.uplink.address"),
                "only used with network.uplink.mode = \"static\"".into(),
            ));
        }
        (_, None) => {}
    }
    if c.network.uplink.nic == c.network.lan.nic {
        out.push((
            at("network.lan.match"),
            "the LAN and the uplink match the same NIC".into(),
        ));
    }
    for (i, svc) in up.expose.iter().enumerate() {
        if !EXPOSABLE_SERVICES.contains(&svc.as_str()) {
            out.push((
                at("network.uplink.expose").index(i),
                format!(
                    "unknown service {svc:?} (one of {})",
                    EXPOSABLE_SERVICES.join(", ")
                ),
            ));
        }
    }
}

fn check_pxe(c: &SiteConfig, out: &mut Vec<Problem>) {
    let pxe = &c.pxe;
    let lan = c.network.lan.address;
    if pxe.enabled && pxe.mode == crate::DhcpMode::Authoritative {
        let r = pxe.range;
        if !lan.contains(r.start) || !lan.contains(r.end) {
            out.push((
                at("pxe.range"),
                format!(
                    "DHCP range {}-{} is outside the LAN {}",
                    r.start,
                    r.end,
                    lan.subnet()
                ),
            ));
        } else if r.contains(lan.network()) || r.contains(lan.broadcast()) {
            out.push((
                at("pxe.range"),
                format!(
                    "DHCP range {}-{} includes the LAN's network or broadcast address",
                    r.start, r.end
                ),
            ));
        } else if r.contains(lan.addr()) {
            out.push((
                at("pxe.range"),
                format!(
                    "DHCP range {}-{} includes the appliance's own LAN address {}",
                    r.start,
                    r.end,
                    lan.addr()
                ),
            ));
        }
    }
    if pxe.lease_secs < 60 {
        out.push((
            at("pxe.lease_secs"),
            format!("{} s is too short (at least 60)", pxe.lease_secs),
        ));
    }
    if let Some(name) = &pxe.default_profile {
        if !c.profiles.contains_key(name.as_str()) {
            out.push((
                at("pxe.default_profile"),
                format!("profile {name:?} does not exist (no profiles/{name}.toml)"),
            ));
        }
    } else if pxe.enabled
        && pxe.unknown == UnknownMacPolicy::DefaultProfile
        && !c.profiles.is_empty()
    {
        out.push((
            at("pxe.default_profile"),
            "required when pxe.unknown = \"default_profile\"".into(),
        ));
    }
    if pxe.max_discovered == 0 {
        out.push((
            at("pxe.max_discovered"),
            "0 would forget every node as soon as it is seen (at least 1)".into(),
        ));
    }
    if pxe.http_port == 0 {
        out.push((at("pxe.http_port"), "port 0 is not a port".into()));
    }
    if c.api.port == 0 {
        out.push((at("api.port"), "port 0 is not a port".into()));
    } else if pxe.enabled && c.api.port == pxe.http_port {
        out.push((
            at("api.port"),
            format!("port {} is already pxe.http_port", c.api.port),
        ));
    }
}

fn check_nodes(c: &SiteConfig, out: &mut Vec<Problem>) {
    let lan = c.network.lan.address;
    let mut macs: BTreeMap<crate::MacAddr, usize> = BTreeMap::new();
    let mut ips: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    let mut hostnames: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, node) in c.nodes.iter().enumerate() {
        let base = at("nodes").index(i);
        if let Some(first) = macs.insert(node.mac, i) {
            out.push((
                base.key("mac"),
                format!("duplicate MAC {} (also nodes[{first}])", node.mac),
            ));
        }
        if !c.profiles.contains_key(node.profile.as_str()) {
            out.push((
                base.key("profile"),
                format!(
                    "profile {:?} does not exist (no profiles/{}.toml)",
                    node.profile.as_str(),
                    node.profile
                ),
            ));
        }
        if let Some(ip) = node.ip {
            if !lan.contains(ip) {
                out.push((
                    base.key("ip"),
                    format!("{ip} is outside the LAN {}", lan.subnet()),
                ));
            } else if ip == lan.addr() || ip == lan.network() || ip == lan.broadcast() {
                out.push((
                    base.key("ip"),
                    format!("{ip} is the appliance's, network or broadcast address"),
                ));
            }
            if let Some(first) = ips.insert(ip, i) {
                out.push((
                    base.key("ip"),
                    format!("duplicate address {ip} (also nodes[{first}])"),
                ));
            }
        }
        if let Some(h) = &node.hostname {
            if !is_dns_label(h) {
                out.push((
                    base.key("hostname"),
                    format!("{h:?} is not a valid host name (one DNS label)"),
                ));
            } else if let Some(first) = hostnames.insert(h.as_str(), i) {
                out.push((
                    base.key("hostname"),
                    format!("duplicate host name {h:?} (also nodes[{first}])"),
                ));
            }
        }
    }
}

/// Each selector names a profile and asks something; two that can match
/// the same node need one to refine the other, or which one decides
/// would depend on their order.
fn check_selectors(c: &SiteConfig, out: &mut Vec<Problem>) {
    for (i, selector) in c.selectors.iter().enumerate() {
        let base = at("selectors").index(i);
        if !c.profiles.contains_key(selector.profile.as_str()) {
            out.push((
                base.key("profile"),
                format!(
                    "profile {:?} does not exist (no profiles/{}.toml)",
                    selector.profile.as_str(),
                    selector.profile
                ),
            ));
        }
        let mut bad_tags = false;
        for (key, value) in &selector.tags {
            let checked =
                crate::tags::check_key(key).and_then(|()| crate::tags::check_value(key, value));
            if let Err(e) = checked {
                bad_tags = true;
                out.push((base.key("tags").key(key), e.to_string()));
            }
        }
        if selector.tags.len() > crate::tags::MAX_TAGS {
            out.push((
                base.key("tags"),
                format!(
                    "{} tags: a selector asks at most {} (a node carries no more)",
                    selector.tags.len(),
                    crate::tags::MAX_TAGS
                ),
            ));
        }
        if !selector.has_criteria() {
            out.push((
                base,
                "a selector needs at least one of mac_prefix, firmware, arch, tags".into(),
            ));
            continue;
        }
        if bad_tags {
            // Told above; its overlaps would only repeat it.
            continue;
        }
        for (j, earlier) in c.selectors.iter().enumerate().take(i) {
            if earlier.has_criteria()
                && selector.overlaps(earlier)
                && !selector.refines(earlier)
                && !earlier.refines(selector)
            {
                out.push((
                    at("selectors").index(i),
                    format!(
                        "ambiguous: selectors[{j}] ({earlier}) and selectors[{i}] ({selector}) can match the same node and neither is narrower; make one refine the other or keep them apart"
                    ),
                ));
            }
        }
    }
}

fn check_profiles(c: &SiteConfig, out: &mut Vec<Problem>) {
    for (name, profile) in &c.profiles {
        if profile.name != *name {
            out.push((
                at("profiles").key(name).key("name"),
                format!(
                    "{:?} does not match its file name profiles/{name}.toml",
                    profile.name.as_str()
                ),
            ));
        }
        for (field, value) in profile.boot.artifact_fields() {
            if let Err(why) = crate::ArtifactRef::parse(value) {
                out.push((
                    at(&format!("profiles.{name}.boot.{field}")),
                    format!("profile {name}, boot.{field}: {why}"),
                ));
            }
        }
    }
}

fn check_stack(c: &SiteConfig, out: &mut Vec<Problem>) {
    let s = &c.stack;
    if !is_dns_label(&s.datacenter) {
        out.push((
            at("stack.datacenter"),
            format!("{:?} is not a valid datacenter name", s.datacenter),
        ));
    }
    let v = &s.vault;
    if v.key_threshold == 0 || v.key_threshold > v.key_shares {
        out.push((
            at("stack.vault.key_threshold"),
            format!(
                "threshold {} must be between 1 and key_shares ({})",
                v.key_threshold, v.key_shares
            ),
        ));
    }
    if v.enabled && v.recipients.is_empty() {
        out.push((
            at("stack.vault.recipients"),
            "required when Vault is enabled: unseal keys are only written encrypted to these"
                .into(),
        ));
    }
    for (i, r) in v.recipients.iter().enumerate() {
        if !r.starts_with("age1") {
            out.push((
                at("stack.vault.recipients").index(i),
                format!("{r:?} is not an age X25519 recipient (age1…)"),
            ));
        }
    }
    if v.enabled && v.storage == VaultStorage::Consul && !s.consul.enabled {
        out.push((
            at("stack.vault.storage"),
            "\"consul\" storage needs stack.consul.enabled = true".into(),
        ));
    }
    if s.consul.connect_vault_ca && !v.enabled {
        out.push((
            at("stack.consul.connect_vault_ca"),
            "needs stack.vault.enabled = true".into(),
        ));
    }
}

fn check_logs(c: &SiteConfig, out: &mut Vec<Problem>) {
    let logs = &c.logs;
    if !(4..=65536).contains(&logs.file_kib) {
        out.push((
            at("logs.file_kib"),
            format!("{} is outside 4 to 65536 (KiB)", logs.file_kib),
        ));
    }
    if !(1..=32).contains(&logs.files_per_service) {
        out.push((
            at("logs.files_per_service"),
            format!("{} is outside 1 to 32", logs.files_per_service),
        ));
    }
    if let Some(server) = &logs.syslog {
        if server.parse::<std::net::SocketAddr>().is_err() {
            out.push((
                at("logs.syslog"),
                format!("{server:?} is not ADDR:PORT (an IP address and a port)"),
            ));
        }
    }
}

fn check_backup(c: &SiteConfig, out: &mut Vec<Problem>) {
    let b = &c.backup;
    if b.every_hours > 8760 {
        out.push((
            at("backup.every_hours"),
            format!(
                "{} is more than 8760 (a year); 0 turns the schedule off",
                b.every_hours
            ),
        ));
    }
    if !(1..=1000).contains(&b.keep) {
        out.push((
            at("backup.keep"),
            format!("{} is outside 1 to 1000", b.keep),
        ));
    }
    if b.max_mib == 0 {
        out.push((at("backup.max_mib"), "0: at least 1 MiB".into()));
    }
}

fn check_time(c: &SiteConfig, out: &mut Vec<Problem>) {
    let time = &c.time;
    for (i, source) in time.sources.iter().enumerate() {
        let (host, port) = match source.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (source.as_str(), None),
        };
        let host_ok = host.parse::<Ipv4Addr>().is_ok() || is_dns_name(host);
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p != 0));
        if host.is_empty() || !host_ok || !port_ok {
            out.push((
                at(&format!("time.sources[{i}]")),
                format!("{source:?} is not an NTP server: expected an IPv4 address or host name, optionally :port"),
            ));
        }
    }
    if time.min_poll > 10 {
        out.push((
            at("time.min_poll"),
            format!(
                "{} is above 10 (log2 seconds: 1024 s is the longest poll)",
                time.min_poll
            ),
        ));
    }
    if let Some(n) = time.minimum_agreeing_sources {
        if n == 0 || usize::from(n) > time.sources.len().max(1) {
            out.push((
                at("time.minimum_agreeing_sources"),
                format!(
                    "{n} cannot be met by the {} configured sources: the clock would never be set",
                    time.sources.len()
                ),
            ));
        }
    }
    let lan = c.network.lan.address.addr();
    if !time.ntp_server && c.pxe.ntp.contains(&lan) {
        out.push((
            at("pxe.ntp"),
            format!("names the appliance ({lan}) but time.ntp_server is off: nodes would be sent to an NTP server nothing answers"),
        ));
    }
}

/// Operator names and token digests are unique: a log line or `whoami` must
/// name one operator, and one token must not carry two roles.
fn check_api(c: &SiteConfig, out: &mut Vec<Problem>) {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut digests: BTreeMap<&crate::TokenSha256, usize> = BTreeMap::new();
    for (i, op) in c.api.operators.iter().enumerate() {
        let base = at("api.operators").index(i);
        if !crate::operator::is_operator_name(&op.name) {
            out.push((
                base.key("name"),
                format!(
                    "{:?} is not an operator name: 1-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
                    op.name
                ),
            ));
        }
        if let Some(first) = names.insert(&op.name, i) {
            out.push((
                base.key("name"),
                format!(
                    "duplicate operator {:?} (also api.operators[{first}])",
                    op.name
                ),
            ));
        }
        if let Some(first) = digests.insert(&op.token_sha256, i) {
            out.push((
                base.key("token_sha256"),
                format!("the same token as api.operators[{first}]: give each operator its own"),
            ));
        }
    }
}
