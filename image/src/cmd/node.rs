//! `kindling node list|show|assign|unassign|tag|untag|reprovision|forget`:
//! the inventory of PXE nodes on a running appliance, runtime MAC → profile
//! assignments, the operator's node tags, re-arming a node's enrollment
//! grant and forgetting a node, through its API (`GET /v1/nodes`,
//! `GET /v1/nodes/MAC`, `PUT /v1/nodes/MAC/profile`,
//! `POST /v1/nodes/MAC/tags`, `POST /v1/nodes/MAC/reprovision`,
//! `POST /v1/nodes/MAC/forget`).
//!
//! Owns the client side only: it decodes the appliance's answers as the API
//! contract types (`kindling_api::nodes`), prints them, and turns an error
//! reply into one line naming the URL, status and reason.

use super::client::{Session, Target};
use super::exit::{Exit, Failure};
use super::table::{cell, wire_name, Table};
use kindling_api::nodes::{
    AssignReply, AssignRequest, Assignment, ForgetReply, KvStatus, NodeFailure, NodeList, NodeRow,
    ProfileChoice, ReprovisionReply, SeenNode, Stored, TagReply, TagRequest,
};
use kindling_clock::rfc3339;
use kindling_site::MacAddr;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List every node the appliance has seen or expects, with state, profile
    /// and why it is in that state (its last failure, or what it waits for).
    #[command(
        after_help = "Example:\n  kindling node list --json | jq '.nodes[] | select(.state == \"installed\")'"
    )]
    List {
        #[command(flatten)]
        target: Target,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One node: its facts, state and why, Consul node ID, last error, grant,
    /// alerts and last events.
    #[command(after_help = "Example:\n  kindling node show 52:54:00:6b:00:20")]
    Show {
        /// e.g. 52:54:00:6b:00:10
        mac: String,
        #[command(flatten)]
        target: Target,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Assign a profile to a MAC (applies from the node's next PXE request).
    #[command(after_help = "Example:\n  kindling node assign 52:54:00:6b:00:20 prod")]
    Assign {
        /// e.g. 52:54:00:6b:00:10
        mac: String,
        profile: String,
        #[command(flatten)]
        target: Target,
    },
    /// Drop a runtime assignment (the site's mapping or default applies again).
    #[command(after_help = "Example:\n  kindling node unassign 52:54:00:6b:00:20")]
    Unassign {
        mac: String,
        #[command(flatten)]
        target: Target,
    },
    /// Put tags on a node (KEY=VALUE, replacing a key's value); `[[selectors]]`
    /// with `tags` pick its profile from its next PXE request. Any MAC, seen
    /// or not.
    #[command(after_help = "Example:\n  kindling node tag 52:54:00:6b:00:20 rack=r12 gpu=a100")]
    Tag {
        /// e.g. 52:54:00:6b:00:10
        mac: String,
        /// KEY=VALUE: keys a-z 0-9 - _ . (starting with a letter or digit),
        /// values A-Z a-z 0-9 - _ ., up to 63 each, 16 tags per node.
        #[arg(required = true, value_name = "KEY=VALUE")]
        tags: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Remove tags from a node (the next lower-precedence choice applies).
    #[command(after_help = "Example:\n  kindling node untag 52:54:00:6b:00:20 gpu")]
    Untag {
        /// e.g. 52:54:00:6b:00:10
        mac: String,
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Re-arm a node's enrollment grant: its next user-data fetch (from the
    /// address holding its DHCP lease) mints a fresh one. Clears its alerts
    /// and last failure; the Consul token and client certificates its old
    /// install held are revoked.
    #[command(after_help = "Example:\n  kindling node reprovision 52:54:00:6b:00:20")]
    Reprovision {
        /// e.g. 52:54:00:6b:00:10
        mac: String,
        #[command(flatten)]
        target: Target,
    },
    /// Forget a node: drop its runtime assignment and tags and, within a second, its
    /// record (state, grant, alerts). If it PXE-boots again it comes back as
    /// newly discovered; a site `[[nodes]]` entry stays listed as expected.
    #[command(after_help = "Example:\n  kindling node forget 52:54:00:6b:00:20")]
    Forget {
        /// e.g. 52:54:00:6b:00:10
        mac: String,
        #[command(flatten)]
        target: Target,
    },
}

fn reprovision(target: &Target, mac: &str) -> anyhow::Result<()> {
    let mac = parse_mac(mac)?;
    let path = format!("/v1/nodes/{mac}/reprovision");
    let reply: ReprovisionReply = Session::open(target)?.post_as(&path, &serde_json::json!({}))?;
    println!(
        "{mac}: re-armed (request {}); its next user-data fetch mints a fresh grant, and the Consul token and client certificates its old install held are revoked (`kindling node show {mac}`)",
        reply.generation
    );
    if let Some(previous) = &reply.previous {
        println!(
            "  grant of the cycle that ended: {} (issued at {} for {})",
            cell(wire_name(&previous.state)),
            previous.issued_at,
            previous.address
        );
    }
    for alert in &reply.alerts {
        println!(
            "  cleared alert {}: {}",
            cell(wire_name(&alert.kind)),
            alert.detail
        );
    }
    Ok(())
}

/// `KEY=VALUE` arguments; a malformed one is a usage error naming it (the
/// appliance checks the characters, and names the key it refuses).
fn parse_tag_args(args: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(
                Failure::new(Exit::Usage, format!("{arg:?}: write a tag as KEY=VALUE")).into(),
            );
        };
        if out.insert(key.to_string(), value.to_string()).is_some() {
            return Err(
                Failure::new(Exit::Usage, format!("{arg:?}: tag {key:?} given twice")).into(),
            );
        }
    }
    Ok(out)
}

fn post_tags(target: &Target, mac: &str, request: TagRequest) -> anyhow::Result<()> {
    let mac = parse_mac(mac)?;
    let path = format!("/v1/nodes/{mac}/tags");
    let reply: TagReply = Session::open(target)?.post_as(&path, &request)?;
    println!("{mac}: tags {}", tags_cell(&reply.tags));
    let profile = reply.assignment.choice.profile().unwrap_or("-");
    println!(
        "  next PXE boot: profile {profile} ({})",
        source(&reply.assignment)
    );
    Ok(())
}

/// `rack=r12,gpu=a100`, or `-`.
fn tags_cell(tags: &std::collections::BTreeMap<String, String>) -> String {
    if tags.is_empty() {
        return "-".into();
    }
    let parts: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(",")
}

fn put_profile(target: &Target, mac: &str, profile: Option<String>) -> anyhow::Result<()> {
    // Validate locally for a clear message before any network round trip.
    let mac = parse_mac(mac)?;
    let path = format!("/v1/nodes/{mac}/profile");
    let reply: AssignReply = Session::open(target)?.put_as(&path, &AssignRequest { profile })?;
    let profile = reply.assignment.choice.profile().unwrap_or("-");
    println!("{mac}: profile {profile} ({})", source(&reply.assignment));
    if let Some(kv) = &reply.kv {
        println!("  {kv}");
    }
    Ok(())
}

/// Where a node's profile comes from, as the operator says it: the
/// overlay's `[[nodes]]`, a runtime assignment (in Consul KV, or only in the
/// appliance's local file), the site's default, the boot menu, or nothing.
fn source(assignment: &Assignment) -> String {
    match (&assignment.choice, assignment.stored) {
        (ProfileChoice::Assigned(_), Some(Stored::Kv)) => "assignment (kv)".into(),
        (ProfileChoice::Assigned(_), Some(Stored::Local)) => "assignment (local)".into(),
        (ProfileChoice::Assigned(_), None) => "assignment".into(),
        (ProfileChoice::Site(_), _) => "overlay".into(),
        (ProfileChoice::Selected(_), _) => "selector".into(),
        (ProfileChoice::Default(_), _) => "default".into(),
        (ProfileChoice::Menu, _) => "menu".into(),
        (ProfileChoice::NotServed, _) => "not served".into(),
    }
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::List { target, json } => {
            let body = Session::open(&target)?.get("/v1/nodes")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(());
            }
            let list: NodeList = serde_json::from_value(body)
                .map_err(|e| anyhow::anyhow!("GET /v1/nodes: unexpected reply: {e}"))?;
            print!("{}", list_table(&list));
            Ok(())
        }
        Command::Show { mac, target, json } => show(&target, &mac, json),
        Command::Assign {
            mac,
            profile,
            target,
        } => put_profile(&target, &mac, Some(profile)),
        Command::Unassign { mac, target } => put_profile(&target, &mac, None),
        Command::Tag { mac, tags, target } => {
            let set = parse_tag_args(&tags)?;
            post_tags(&target, &mac, TagRequest { set, unset: vec![] })
        }
        Command::Untag { mac, keys, target } => post_tags(
            &target,
            &mac,
            TagRequest {
                set: Default::default(),
                unset: keys,
            },
        ),
        Command::Reprovision { mac, target } => reprovision(&target, &mac),
        Command::Forget { mac, target } => forget(&target, &mac),
    }
}

/// A MAC from the command line; a bad one is a usage error.
fn parse_mac(mac: &str) -> anyhow::Result<MacAddr> {
    mac.parse()
        .map_err(|e| Failure::new(Exit::Usage, format!("{mac:?}: {e}")).into())
}

/// The node table of `node list`, then alerts and the KV state.
pub fn list_table(list: &NodeList) -> String {
    let mut table = Table::new(&[
        "MAC", "IP", "STATE", "PROFILE", "SOURCE", "FIRMWARE", "TAGS", "GRANT", "REASON",
    ]);
    for n in &list.nodes {
        let seen = n.seen.as_ref();
        table.row(vec![
            n.mac.to_string(),
            cell(seen.and_then(|s| s.ip)),
            cell(n.state.as_ref().and_then(wire_name)),
            cell(n.assignment.choice.profile()),
            source(&n.assignment),
            cell(seen.and_then(|s| s.firmware.as_ref()).and_then(wire_name)),
            tags_cell(&n.tags),
            cell(
                seen.and_then(|s| s.grant.as_ref())
                    .and_then(|g| wire_name(&g.state)),
            ),
            seen.map_or_else(|| "-".into(), reason),
        ]);
    }
    let mut out = table.render();
    for n in &list.nodes {
        for alert in n.seen.iter().flat_map(|s| &s.alerts) {
            out.push_str(&format!(
                "ALERT {} {}: {}\n",
                n.mac,
                cell(wire_name(&alert.kind)),
                alert.detail
            ));
        }
    }
    match &list.kv {
        Some(KvStatus::LocalOnly(detail)) => out.push_str(&format!(
            "assignments kept on the appliance only: {detail}\n"
        )),
        Some(KvStatus::Waiting(detail)) => {
            out.push_str(&format!("Consul KV not usable now: {detail}\n"))
        }
        Some(KvStatus::InUse) | None => {}
    }
    out
}

/// Why a node is where it is, in one cell: its last failure first (what
/// an operator must act on), else the reason its state gives.
fn reason(seen: &SeenNode) -> String {
    match (&seen.failure, &seen.reason) {
        (Some(f), _) => failure_text(f),
        (None, Some(r)) => r.clone(),
        (None, None) => "-".into(),
    }
}

/// `agent-failed at step consul-join: connection refused`.
fn failure_text(f: &NodeFailure) -> String {
    let step = f
        .step
        .as_ref()
        .map(|s| format!(" at step {s}"))
        .unwrap_or_default();
    format!("{}{step}: {}", cell(wire_name(&f.kind)), f.error)
}

/// `node show` as text: one fact per line, then alerts and events.
pub fn show_text(n: &NodeRow) -> String {
    let mut facts = Table::new(&["", ""]);
    let mut fact = |k: &str, v: String| {
        facts.row(vec![k.into(), v]);
    };
    fact("mac", n.mac.to_string());
    fact(
        "state",
        n.state
            .as_ref()
            .and_then(wire_name)
            .unwrap_or_else(|| "expected (not seen yet)".into()),
    );
    fact(
        "profile",
        format!(
            "{} ({})",
            cell(n.assignment.choice.profile()),
            source(&n.assignment)
        ),
    );
    if !n.tags.is_empty() {
        fact("tags", tags_cell(&n.tags));
    }
    if let Some(seen) = &n.seen {
        fact("ip", cell(seen.ip));
        fact("firmware", cell(seen.firmware.as_ref().and_then(wire_name)));
        fact("first seen", rfc3339(seen.first_seen));
        fact("last seen", rfc3339(seen.last_seen));
        fact("state since", rfc3339(seen.state_changed));
        if let Some(r) = &seen.reason {
            fact("reason", r.clone());
        }
        if let Some(c) = &seen.consul {
            fact(
                "consul node",
                format!(
                    "{} (ID {}, {})",
                    c.node,
                    c.id,
                    cell(Some(&c.address).filter(|a| !a.is_empty()))
                ),
            );
            fact("joined at", rfc3339(c.joined_at));
            fact("last seen in catalog", rfc3339(c.seen_at));
            if let Some(at) = c.left_at {
                fact("left at", rfc3339(at));
            }
        }
        if let Some(f) = &seen.failure {
            fact(
                "last error",
                format!("{} (at {})", failure_text(f), rfc3339(f.at)),
            );
        }
        if let Some(g) = &seen.grant {
            fact(
                "grant",
                format!(
                    "{} (issued {} for {})",
                    cell(wire_name(&g.state)),
                    g.issued_at,
                    g.address
                ),
            );
        }
        for a in &seen.alerts {
            fact(
                "alert",
                format!("{}: {}", cell(wire_name(&a.kind)), a.detail),
            );
        }
    }
    if let Some(r) = &n.revoked {
        let what = match (&r.error, &r.accessor) {
            (Some(e), _) => format!("not yet (re-arm {}): {e}", r.generation),
            (None, Some(a)) => format!(
                "token {a} at {} (re-arm {}{})",
                rfc3339(r.at),
                r.generation,
                if r.was_live {
                    ""
                } else {
                    "; it was gone already"
                }
            ),
            (None, None) => format!("none held (re-arm {})", r.generation),
        };
        fact("consul token revoked", what);
        if r.error.is_none() {
            let certs = match r.certificates.as_slice() {
                [] => "none live".to_string(),
                serials => format!("{} ({})", serials.len(), serials.join(", ")),
            };
            fact("certificates revoked", certs);
        }
    }
    let mut out: String = facts
        .render()
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect();
    let events = n.seen.iter().flat_map(|s| &s.events).collect::<Vec<_>>();
    if !events.is_empty() {
        let mut table = Table::new(&["EVENT", "AT", "DETAIL"]);
        for e in events {
            let detail = if e.detail.is_null() {
                String::new()
            } else {
                e.detail.to_string()
            };
            table.row(vec![e.event.clone(), rfc3339(e.at), detail]);
        }
        out.push_str(&table.render());
    }
    out
}

fn show(target: &Target, mac: &str, json: bool) -> anyhow::Result<()> {
    let mac = parse_mac(mac)?;
    let body = Session::open(target)?.get(&format!("/v1/nodes/{mac}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let row: NodeRow = serde_json::from_value(body)
        .map_err(|e| anyhow::anyhow!("GET /v1/nodes/{mac}: unexpected reply: {e}"))?;
    print!("{}", show_text(&row));
    Ok(())
}

fn forget(target: &Target, mac: &str) -> anyhow::Result<()> {
    let mac = parse_mac(mac)?;
    let path = format!("/v1/nodes/{mac}/forget");
    let reply: ForgetReply = Session::open(target)?.post_as(&path, &serde_json::json!({}))?;
    let record = if reply.had_record {
        "its record goes within a second"
    } else {
        "it had no record"
    };
    println!("{mac}: forgotten ({record})");
    if let Some(profile) = &reply.dropped_assignment {
        println!("  dropped its runtime assignment to {profile}");
    }
    if !reply.dropped_tags.is_empty() {
        println!("  dropped its tags {}", tags_cell(&reply.dropped_tags));
    }
    if reply.reserved_by_site {
        println!("  the site's [[nodes]] still names it: it stays listed as expected");
    }
    Ok(())
}
