//! `kindling node list|assign|unassign --appliance URL`: the inventory of PXE
//! nodes on a running appliance and runtime MAC → profile assignments,
//! through its API (`GET /v1/nodes`, `PUT /v1/nodes/MAC/profile`).
//!
//! Owns the client side only: it prints what the appliance answers and
//! turns an error reply into one line naming the URL, status and reason.

use serde_json::Value;

#[derive(clap::Args)]
pub struct Appliance {
    /// The appliance's API base URL, e.g. http://192.168.100.1:9000
    #[arg(long)]
    pub appliance: String,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// List every node the appliance has seen or expects, with state and profile.
    List {
        #[command(flatten)]
        target: Appliance,
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
        target: Appliance,
    },
    /// Drop a runtime assignment (the site's mapping or default applies again).
    Unassign {
        mac: String,
        #[command(flatten)]
        target: Appliance,
    },
}

fn base(a: &Appliance) -> &str {
    a.appliance.trim_end_matches('/')
}

fn put_profile(target: &Appliance, mac: &str, profile: Value) -> anyhow::Result<()> {
    // Validate locally for a clear message before any network round trip.
    let mac: kindling_site::MacAddr = mac.parse()?;
    let url = format!("{}/v1/nodes/{mac}/profile", base(target));
    let json = super::client::put(&url, &serde_json::json!({ "profile": profile }))?;
    let profile = json["assignment"]["profile"].as_str().unwrap_or("-");
    println!("{mac}: profile {profile} ({})", source(&json["assignment"]));
    if let Some(kv) = json["kv"].as_str() {
        println!("  {kv}");
    }
    Ok(())
}

/// Where a node's profile comes from, as the operator says it: the
/// overlay's `[[nodes]]`, a runtime assignment (in Consul KV, or only in the
/// appliance's local file), the site's default, the boot menu, or nothing.
fn source(assignment: &Value) -> String {
    match (assignment["source"].as_str(), assignment["stored"].as_str()) {
        (Some("assigned"), Some(stored)) => format!("assignment ({stored})"),
        (Some("assigned"), None) => "assignment".into(),
        (Some("site"), _) => "overlay".into(),
        (Some("not_served"), _) => "not served".into(),
        (Some(other), _) => other.into(),
        (None, _) => "-".into(),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::List { target, json } => {
            let url = format!("{}/v1/nodes", base(&target));
            let body = super::client::get(&url)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(());
            }
            println!(
                "{:<19} {:<16} {:<10} {:<10} {:<18} {:<9}",
                "MAC", "IP", "STATE", "PROFILE", "SOURCE", "FIRMWARE"
            );
            for n in body["nodes"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                println!(
                    "{:<19} {:<16} {:<10} {:<10} {:<18} {:<9}",
                    cell(&n["mac"]),
                    cell(&n["ip"]),
                    cell(&n["state"]),
                    cell(&n["assignment"]["profile"]),
                    source(&n["assignment"]),
                    cell(&n["firmware"]),
                );
            }
            let detail = body["kv"]["detail"].as_str().unwrap_or("");
            match body["kv"]["state"].as_str() {
                Some("local_only") => println!("assignments kept on the appliance only: {detail}"),
                Some("waiting") => println!("Consul KV not usable now: {detail}"),
                _ => {}
            }
            Ok(())
        }
        Command::Assign {
            mac,
            profile,
            target,
        } => put_profile(&target, &mac, Value::String(profile)),
        Command::Unassign { mac, target } => put_profile(&target, &mac, Value::Null),
    }
}
