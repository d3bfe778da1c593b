//! The appliance's nftables ruleset (`table inet kindling`): input policy per
//! interface role, forwarding LAN→uplink (LAN source addresses only) with
//! established/related back and nothing new inbound, and masquerade of the
//! LAN subnet out of the uplink.
//!
//! Owns the ruleset's shape and its one-transaction replacement over netlink
//! (rustables). It never shells out to `nft`/`iptables` and never touches
//! tables it did not create.

use ipnetwork::Ipv4Network;
use rustables::expr::ct::{ConnTrackState, Conntrack, ConntrackKey};
use rustables::expr::{Bitwise, Cmp, CmpOp, Counter, ExpressionVariant, Meta, MetaType};
use rustables::{
    list_chains_for_table, list_rules_for_chain, Batch, Chain, ChainPolicy, ChainType, Hook,
    HookClass,
};
use rustables::{MsgType, Protocol, ProtocolFamily, Rule, Table};
use serde::Serialize;
use std::collections::BTreeMap;

pub const TABLE_NAME: &str = "kindling";

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("build nftables rule {rule}: {source}")]
    Build {
        rule: &'static str,
        source: rustables::error::BuilderError,
    },
    #[error("commit the nftables ruleset (is nf_tables loaded?): {0}")]
    Commit(rustables::error::QueryError),
    #[error("read nftables counters: {0}")]
    ReadCounters(rustables::error::QueryError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp,
    Udp,
}

/// A port the appliance accepts new connections on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenPort {
    pub proto: L4,
    pub port: u16,
}

/// Everything the ruleset depends on; a change in any field means a new ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesetSpec {
    /// `None`: no LAN NIC; the uplink is still filtered.
    pub lan_device: Option<String>,
    pub lan_subnet: Ipv4Network,
    /// `None`: no uplink (missing NIC or mode none) → no forwarding, no NAT.
    pub uplink_device: Option<String>,
    pub nat: bool,
    pub lan_open: Vec<OpenPort>,
    pub uplink_open: Vec<OpenPort>,
}

/// Packet/byte counters of the named rules.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct RuleCounter {
    pub packets: u64,
    pub bytes: u64,
}

/// Counted rules, found again by their userdata tag when reading counters.
pub const COUNTER_MASQUERADE: &str = "nat_masquerade";
pub const COUNTER_FORWARD_LAN_OUT: &str = "forward_lan_to_uplink";
pub const COUNTER_FORWARD_REPLIES: &str = "forward_established";
pub const COUNTER_FORWARD_INBOUND_DROPPED: &str = "forward_uplink_to_lan_dropped";
pub const COUNTER_FORWARD_LAN_SPOOFED_DROPPED: &str = "forward_lan_spoofed_dropped";
pub const COUNTER_INPUT_UPLINK_DROPPED: &str = "input_uplink_dropped";
pub const COUNTER_INPUT_LAN_DROPPED: &str = "input_lan_dropped";

fn tagged(rule: Rule, tag: &str) -> Rule {
    rule.with_expr(Counter::default())
        .with_userdata(tag.as_bytes().to_vec())
}

fn established_or_related(mut rule: Rule) -> Result<Rule, FirewallError> {
    let states = (ConnTrackState::ESTABLISHED | ConnTrackState::RELATED).bits();
    rule.add_expr(Conntrack::new(ConntrackKey::State));
    rule.add_expr(
        Bitwise::new(states.to_le_bytes(), 0u32.to_be_bytes()).map_err(|source| {
            FirewallError::Build {
                rule: "ct state",
                source,
            }
        })?,
    );
    rule.add_expr(Cmp::new(CmpOp::Neq, 0u32.to_be_bytes()));
    Ok(rule)
}

fn l4proto(mut rule: Rule, proto: u8) -> Rule {
    rule.add_expr(Meta::new(MetaType::L4Proto));
    rule.add_expr(Cmp::new(CmpOp::Eq, [proto]));
    rule
}

fn build<T>(
    rule: &'static str,
    result: Result<T, rustables::error::BuilderError>,
) -> Result<T, FirewallError> {
    result.map_err(|source| FirewallError::Build { rule, source })
}

/// Builds the whole ruleset as one batch: the table is added (a no-op if it
/// exists), deleted and re-created, so the kernel swaps old for new atomically.
pub fn ruleset_batch(spec: &RulesetSpec) -> Result<Batch, FirewallError> {
    let mut batch = Batch::new();
    let table = Table::new(ProtocolFamily::Inet).with_name(TABLE_NAME);
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
    batch.add(&table, MsgType::Add);

    let input = Chain::new(&table)
        .with_name("input")
        .with_hook(Hook::new(HookClass::In, 0))
        .with_type(ChainType::Filter)
        .with_policy(ChainPolicy::Drop)
        .add_to_batch(&mut batch);
    let forward = Chain::new(&table)
        .with_name("forward")
        .with_hook(Hook::new(HookClass::Forward, 0))
        .with_type(ChainType::Filter)
        .with_policy(ChainPolicy::Drop)
        .add_to_batch(&mut batch);

    // input: replies, loopback, ICMP (ND/RA for SLAAC need ICMPv6), then per role.
    established_or_related(Rule::new(&input).map_err(|source| FirewallError::Build {
        rule: "input",
        source,
    })?)?
    .accept()
    .add_to_batch(&mut batch);
    build("input lo", Rule::new(&input).and_then(|r| r.iiface("lo")))?
        .accept()
        .add_to_batch(&mut batch);
    l4proto(
        build("input icmp", Rule::new(&input))?,
        libc::IPPROTO_ICMP as u8,
    )
    .accept()
    .add_to_batch(&mut batch);
    l4proto(
        build("input icmpv6", Rule::new(&input))?,
        libc::IPPROTO_ICMPV6 as u8,
    )
    .accept()
    .add_to_batch(&mut batch);
    if let Some(lan) = &spec.lan_device {
        for open in &spec.lan_open {
            let rule = build(
                "input lan port",
                Rule::new(&input).and_then(|r| r.iiface(lan)),
            )?;
            port_rule(rule, *open).accept().add_to_batch(&mut batch);
        }
        let lan_drop = build(
            "input lan drop",
            Rule::new(&input).and_then(|r| r.iiface(lan)),
        )?;
        tagged(lan_drop, COUNTER_INPUT_LAN_DROPPED)
            .drop()
            .add_to_batch(&mut batch);
    }
    if let Some(uplink) = &spec.uplink_device {
        // DHCP replies before we have an address are broadcasts conntrack
        // cannot relate to our request; the packet socket sees them anyway,
        // this keeps the UDP socket's view consistent.
        let dhcp = build(
            "input uplink dhcp",
            Rule::new(&input).and_then(|r| r.iiface(uplink)),
        )?;
        dhcp.sport(67, Protocol::UDP)
            .dport(68, Protocol::UDP)
            .accept()
            .add_to_batch(&mut batch);
        for open in &spec.uplink_open {
            let rule = build(
                "input uplink port",
                Rule::new(&input).and_then(|r| r.iiface(uplink)),
            )?;
            port_rule(rule, *open).accept().add_to_batch(&mut batch);
        }
        let uplink_drop = build(
            "input uplink drop",
            Rule::new(&input).and_then(|r| r.iiface(uplink)),
        )?;
        tagged(uplink_drop, COUNTER_INPUT_UPLINK_DROPPED)
            .drop()
            .add_to_batch(&mut batch);
    }

    // forward: only LAN→uplink new connections (with NAT on), and their replies.
    let replies = established_or_related(build("forward established", Rule::new(&forward))?)?;
    tagged(replies, COUNTER_FORWARD_REPLIES)
        .accept()
        .add_to_batch(&mut batch);
    let (Some(lan), Some(uplink)) = (&spec.lan_device, &spec.uplink_device) else {
        return Ok(batch);
    };
    if spec.nat {
        // Only the LAN's own addresses leave through the NAT: a LAN host
        // spoofing another source (an uplink address, someone else's
        // network) is dropped by the rule below and counted.
        let out = build(
            "forward lan to uplink",
            Rule::new(&forward)
                .and_then(|r| r.iiface(lan))
                .and_then(|r| r.oiface(uplink))
                .and_then(|r| r.snetwork(spec.lan_subnet.into())),
        )?;
        tagged(out, COUNTER_FORWARD_LAN_OUT)
            .accept()
            .add_to_batch(&mut batch);
        let spoofed = build(
            "forward lan spoofed source",
            Rule::new(&forward).and_then(|r| r.iiface(lan)),
        )?;
        tagged(spoofed, COUNTER_FORWARD_LAN_SPOOFED_DROPPED)
            .drop()
            .add_to_batch(&mut batch);
    }
    let inbound = build(
        "forward uplink to lan",
        Rule::new(&forward)
            .and_then(|r| r.iiface(uplink))
            .and_then(|r| r.oiface(lan)),
    )?;
    tagged(inbound, COUNTER_FORWARD_INBOUND_DROPPED)
        .drop()
        .add_to_batch(&mut batch);

    if spec.nat {
        let postrouting = Chain::new(&table)
            .with_name("postrouting")
            .with_hook(Hook::new(HookClass::PostRouting, 100))
            .with_type(ChainType::Nat)
            .with_policy(ChainPolicy::Accept)
            .add_to_batch(&mut batch);
        let masq = build(
            "masquerade",
            Rule::new(&postrouting)
                .and_then(|r| r.snetwork(spec.lan_subnet.into()))
                .and_then(|r| r.oiface(uplink)),
        )?;
        tagged(masq, COUNTER_MASQUERADE)
            .masquerade()
            .add_to_batch(&mut batch);
    }
    Ok(batch)
}

fn port_rule(rule: Rule, open: OpenPort) -> Rule {
    match open.proto {
        L4::Tcp => rule.dport(open.port, Protocol::TCP),
        L4::Udp => rule.dport(open.port, Protocol::UDP),
    }
}

/// Installs (or atomically replaces) the ruleset.
pub fn apply(spec: &RulesetSpec) -> Result<(), FirewallError> {
    ruleset_batch(spec)?.send().map_err(FirewallError::Commit)
}

/// Removes the table (service shutdown in tests; the appliance keeps it).
pub fn remove() -> Result<(), FirewallError> {
    let mut batch = Batch::new();
    let table = Table::new(ProtocolFamily::Inet).with_name(TABLE_NAME);
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
    batch.send().map_err(FirewallError::Commit)
}

/// Reads the counters of every tagged rule in our table.
pub fn read_counters() -> Result<BTreeMap<String, RuleCounter>, FirewallError> {
    let table = Table::new(ProtocolFamily::Inet).with_name(TABLE_NAME);
    let mut counters = BTreeMap::new();
    for chain in list_chains_for_table(&table).map_err(FirewallError::ReadCounters)? {
        for rule in list_rules_for_chain(&chain).map_err(FirewallError::ReadCounters)? {
            let Some(tag) = rule
                .get_userdata()
                .and_then(|bytes| String::from_utf8(bytes.clone()).ok())
            else {
                continue;
            };
            let counter = rule
                .get_expressions()
                .into_iter()
                .flat_map(|list| list.iter())
                .find_map(|expr| match expr.get_data() {
                    Some(ExpressionVariant::Counter(c)) => Some(RuleCounter {
                        packets: c.get_nb_packets().copied().unwrap_or(0),
                        bytes: c.get_nb_bytes().copied().unwrap_or(0),
                    }),
                    _ => None,
                });
            if let Some(counter) = counter {
                counters.insert(tag, counter);
            }
        }
    }
    Ok(counters)
}
