//! `kindling node list|assign|unassign|reprovision [--appliance ADDR]`: the
//! inventory of PXE nodes on a running appliance, runtime MAC → profile
//! assignments and re-arming a node's enrollment grant, through its API
//! (`GET /v1/nodes`, `PUT /v1/nodes/MAC/profile`,
//! `POST /v1/nodes/MAC/reprovision`).
//!
//! Owns the client side only: it decodes the appliance's answers as the API
//! contract types (`kindling_api::nodes`), prints them, and turns an error
//! reply into one line naming the URL, status and reason.

use super::client::{Session, Target};
use kindling_api::nodes::{
    AssignReply, AssignRequest, Assignment, KvStatus, NodeList, ProfileChoice, ReprovisionReply,
    Stored,
};
use kindling_site::MacAddr;
use std::fmt::Display;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List every node the appliance has seen or expects, with state and profile.
    List {
        #[command(flatten)]
        target: Target,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Assign a profile to a MAC (applies from the node's next PXE request).
    Assign {
        /// e.g. 52:54:00:6b:00:10
        mac: String,
        profile: String,
        #[command(flatten)]
        target: Target,
    },
    /// Drop a runtime assignment (the site's mapping or default applies again).
    Unassign {
        mac: String,
        #[command(flatten)]
        target: Target,
    },
    /// Re-arm a node's enrollment grant: its next user-data fetch (from the
    /// address holding its DHCP lease) mints a fresh one. Clears its alerts.
    Reprovision {
        /// e.g. 52:54:00:6b:00:10
        mac: String,
        #[command(flatten)]
        target: Target,
    },
}

fn reprovision(target: &Target, mac: &str) -> anyhow::Result<()> {
    let mac: MacAddr = mac.parse()?;
    let path = format!("/v1/nodes/{mac}/reprovision");
    let reply: ReprovisionReply = Session::open(target)?.post_as(&path, &serde_json::json!({}))?;
    println!(
        "{mac}: re-armed (request {}); its next user-data fetch mints a fresh grant",
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

fn put_profile(target: &Target, mac: &str, profile: Option<String>) -> anyhow::Result<()> {
    // Validate locally for a clear message before any network round trip.
    let mac: MacAddr = mac.parse()?;
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

/// A table cell: the value, or `-` when there is none.
fn cell(value: Option<impl Display>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A serde enum's wire name (`booting`, `uefi_http`), as the JSON says it.
fn wire_name(value: &impl serde::Serialize) -> Option<String> {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
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
            println!(
                "{:<19} {:<16} {:<10} {:<10} {:<18} {:<9} {:<14}",
                "MAC", "IP", "STATE", "PROFILE", "SOURCE", "FIRMWARE", "GRANT"
            );
            for n in &list.nodes {
                let seen = n.seen.as_ref();
                println!(
                    "{:<19} {:<16} {:<10} {:<10} {:<18} {:<9} {:<14}",
                    n.mac,
                    cell(seen.and_then(|s| s.ip)),
                    cell(n.state.as_ref().and_then(wire_name)),
                    cell(n.assignment.choice.profile()),
                    source(&n.assignment),
                    cell(seen.and_then(|s| s.firmware.as_ref()).and_then(wire_name)),
                    cell(
                        seen.and_then(|s| s.grant.as_ref())
                            .and_then(|g| wire_name(&g.state))
                    ),
                );
            }
            for n in &list.nodes {
                for alert in n.seen.iter().flat_map(|s| &s.alerts) {
                    println!(
                        "ALERT {} {}: {}",
                        n.mac,
                        cell(wire_name(&alert.kind)),
                        alert.detail
                    );
                }
            }
            match &list.kv {
                Some(KvStatus::LocalOnly(detail)) => {
                    println!("assignments kept on the appliance only: {detail}")
                }
                Some(KvStatus::Waiting(detail)) => println!("Consul KV not usable now: {detail}"),
                Some(KvStatus::InUse) | None => {}
            }
            Ok(())
        }
        Command::Assign {
            mac,
            profile,
            target,
        } => put_profile(&target, &mac, Some(profile)),
        Command::Unassign { mac, target } => put_profile(&target, &mac, None),
        Command::Reprovision { mac, target } => reprovision(&target, &mac),
    }
}
