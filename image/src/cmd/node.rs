//! `kindling node list|assign|unassign --appliance URL`: the inventory of PXE
//! nodes on a running appliance and runtime MAC → profile assignments,
//! through its API (`GET /v1/nodes`, `PUT /v1/nodes/MAC/profile`).
//!
//! Owns the client side only: it prints what the appliance answers and
//! turns an error reply into one line naming the URL, status and reason.

use anyhow::{bail, Context};
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

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into()
}

fn answer(url: &str, mut resp: ureq::http::Response<ureq::Body>) -> anyhow::Result<Value> {
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if (200..300).contains(&status) {
        Ok(json)
    } else {
        let why = json
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| json.to_string());
        bail!("{url}: {status}: {why}")
    }
}

fn base(a: &Appliance) -> &str {
    a.appliance.trim_end_matches('/')
}

fn put_profile(target: &Appliance, mac: &str, profile: Value) -> anyhow::Result<()> {
    // Validate locally for a clear message before any network round trip.
    let mac: kindling_site::MacAddr = mac.parse()?;
    let url = format!("{}/v1/nodes/{mac}/profile", base(target));
    let body = serde_json::to_vec(&serde_json::json!({ "profile": profile }))?;
    let resp = agent()
        .put(&url)
        .header("content-type", "application/json")
        .send(body.as_slice())
        .with_context(|| format!("PUT {url}"))?;
    let json = answer(&url, resp)?;
    let source = json["assignment"]["source"].as_str().unwrap_or("?");
    let profile = json["assignment"]["profile"].as_str().unwrap_or("-");
    println!("{mac}: profile {profile} ({source})");
    Ok(())
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
            let resp = agent()
                .get(&url)
                .call()
                .with_context(|| format!("GET {url}"))?;
            let body = answer(&url, resp)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(());
            }
            println!(
                "{:<19} {:<16} {:<10} {:<10} {:<10} {:<9}",
                "MAC", "IP", "STATE", "PROFILE", "SOURCE", "FIRMWARE"
            );
            for n in body["nodes"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                println!(
                    "{:<19} {:<16} {:<10} {:<10} {:<10} {:<9}",
                    cell(&n["mac"]),
                    cell(&n["ip"]),
                    cell(&n["state"]),
                    cell(&n["assignment"]["profile"]),
                    cell(&n["assignment"]["source"]),
                    cell(&n["firmware"]),
                );
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
