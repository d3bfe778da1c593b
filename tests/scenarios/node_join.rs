//! Nodes join the stack, and the appliance is the judge (run by
//! `stack_lab` once its stack is up). A SeaBIOS + iPXE node with the dev
//! profile, then an OVMF node with the prod profile, PXE-boot the lab
//! payload from the stack appliance. Each gets user-data with its
//! single-use grant; the payload's first boot runs it as a cloud image
//! would (tests/nocloud-double for cloud-init, a stand-in systemctl for
//! systemd): `begin.sh` fetches the node agent by hash, the agent unwraps
//! the grant, logs in, gets its Consul token, TLS and SSH host
//! certificates, installs the Consul client from the appliance by sha256
//! and starts it.
//!
//! The inventory must say `joined` only once the appliance's own Consul
//! catalog lists the node under its site hostname with the profile's
//! metadata (`env=dev` / `env=prod`): before the Consul client starts the
//! node is not `joined`. Booted again, the joined node is sent to its disk
//! and no second grant is minted (the grant's secret-id accessor is the
//! one of its first boot). `kindling node reprovision` of the running
//! prod node revokes its install's Consul token (its own Consul client is
//! refused from then on), and its next PXE boot enrolls it again with a
//! new grant and joins again.
//!
//! Prints each node's timeline from VM start to `joined`, split into the
//! part spent getting the node booted and configured and the part after
//! its Consul client started until the appliance saw it in the catalog.

use crate::{NODE_FAIL, NODE_TIMEOUT};
use kindling_lab::vm::{NODE_DEV_MAC, NODE_PROD_MAC};
use kindling_lab::{Lab, NodeFirmware, NodeSpec, VmId};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The Consul client (68 MB) lives in the payload's RAM disk beside its data.
const NODE_MEMORY_MB: u32 = 768;
/// The agent's own failure lines, besides the payload's.
const JOIN_FAIL: &str = r"kindling-node: [a-z-]+: failed|nocloud-double: error";
/// From the Consul client's start until the appliance's catalog lists it.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);

/// What the node's Consul client logs once its token is gone.
const TOKEN_REFUSED: &str = r"consul: .*(ACL not found|token not found|blocked by ACLs)";
/// Until the node's Consul client next talks to the servers with its token
/// (coordinate updates come every 15 s or so, anti-entropy within a minute).
const TOKEN_REFUSED_TIMEOUT: Duration = Duration::from_secs(120);

/// One node's way to `joined`, each mark measured from its VM's start.
pub struct JoinTimes {
    pub label: &'static str,
    pub marks: Vec<(String, Duration)>,
    pub joined: Duration,
}

impl JoinTimes {
    fn mark(&self, name: &str) -> Option<Duration> {
        self.marks.iter().find(|(n, _)| n == name).map(|(_, d)| *d)
    }
}

struct Candidate {
    label: &'static str,
    name: &'static str,
    mac: &'static str,
    firmware: NodeFirmware,
    hostname: &'static str,
    env: &'static str,
}

const CANDIDATES: [Candidate; 2] = [
    Candidate {
        label: "bios/dev",
        name: "node-join-bios",
        mac: NODE_DEV_MAC,
        firmware: NodeFirmware::Bios,
        hostname: "node-dev-1",
        env: "dev",
    },
    Candidate {
        label: "uefi/prod",
        name: "node-join-uefi",
        mac: NODE_PROD_MAC,
        firmware: NodeFirmware::Uefi,
        hostname: "node-prod-1",
        env: "prod",
    },
];

/// The console lines of a first boot, in order, with their names in the timeline.
const MILESTONES: &[(&str, &str)] = &[
    ("payload booted", r"kindling-node: booted"),
    ("leased", r"kindling-node: lease 192\.168\.100\."),
    ("user-data", r"kindling-node: nocloud ok"),
    ("first boot", r"kindling-node: first boot$"),
    ("grant unwrapped", r"kindling-node: grant: ok"),
    ("certificates", r"kindling-node: ssh-host-cert: ok"),
    ("consul installed", r"kindling-node: binaries: ok"),
    ("configured", r"kindling-node: nomad-config: ok"),
    ("consul started", r"kindling-node: units: ok"),
];

pub fn nodes_join_the_stack(lab: &mut Lab, scenario: &str) -> Result<Vec<JoinTimes>, String> {
    let [bios, uefi] = &CANDIDATES;
    let mut all = Vec::new();
    let (times, node) = join_one(lab, scenario, bios, bios.label)?;
    all.push(times);
    lab.vm(node).stop();
    boots_its_disk_without_a_second_grant(lab, scenario, bios)?;

    let (times, node) = join_one(lab, scenario, uefi, uefi.label)?;
    all.push(times);
    let old_grant = reprovision_revokes_the_running_nodes_token(lab, scenario, uefi, node)?;
    lab.vm(node).stop();
    let (times, node) = join_one(lab, scenario, uefi, "uefi/re-provisioned")?;
    all.push(times);
    lab.vm(node).stop();
    let row = node_row(lab, uefi.mac)?;
    if row["grant"]["secret_id_accessor"] == old_grant {
        return Err(format!(
            "re-provisioned node {} joined on its old grant {old_grant}: {row}",
            uefi.mac
        ));
    }
    print_timelines(scenario, &all);
    Ok(all)
}

fn join_one(
    lab: &mut Lab,
    scenario: &str,
    c: &Candidate,
    label: &'static str,
) -> Result<(JoinTimes, VmId), String> {
    let mut spec = NodeSpec::pxe(c.name, c.mac, c.firmware);
    spec.memory_mb = NODE_MEMORY_MB;
    let started = Instant::now();
    let node = lab.boot_node(&spec).map_err(|e| e.to_string())?;
    let fail = format!("{NODE_FAIL}|{JOIN_FAIL}");
    let mut marks = Vec::new();
    for (name, line) in MILESTONES {
        let seen = lab
            .vm(node)
            .wait_for_unless(line, Some(&fail), NODE_TIMEOUT)
            .map_err(|e| format!("{label} node {}: {e}", c.mac))?;
        eprintln!(
            "[{scenario}] {label} +{:.1}s {}",
            seen.elapsed.as_secs_f64(),
            seen.line.trim()
        );
        marks.push((name.to_string(), seen.elapsed));
        // Configured, Consul not yet started: the node cannot be in the
        // catalog, whatever it claimed, so the appliance must not say joined.
        if *name == "configured" {
            let row = node_row(lab, c.mac)?;
            if row["state"] == "joined" {
                return Err(format!(
                    "{label} node {} is joined before its Consul client started: {row}",
                    c.mac
                ));
            }
        }
    }
    let row = wait_joined(lab, c, JOIN_TIMEOUT)?;
    let joined = started.elapsed();
    check_joined_row(&row, c.hostname, c.env)
        .map_err(|e| format!("{} node {}: {e}", c.label, c.mac))?;
    eprintln!(
        "[{scenario}] {label} joined +{:.1}s: catalog node {} id {} address {}",
        joined.as_secs_f64(),
        row["consul"]["node"],
        row["consul"]["id"],
        row["consul"]["address"]
    );
    Ok((
        JoinTimes {
            label,
            marks,
            joined,
        },
        node,
    ))
}

/// `mac`'s row of `GET /v1/nodes`.
pub fn node_row(lab: &Lab, mac: &str) -> Result<Value, String> {
    let (code, body) = lab
        .api_from_lan("GET", kindling_lab::demo::NODES_PATH, None)
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("GET /v1/nodes answered {code}: {body}"));
    }
    let nodes: Value =
        serde_json::from_str(&body).map_err(|e| format!("GET /v1/nodes: not JSON ({e})"))?;
    nodes["nodes"]
        .as_array()
        .and_then(|rows| rows.iter().find(|n| n["mac"] == mac))
        .cloned()
        .ok_or_else(|| format!("GET /v1/nodes has no row for {mac}: {body}"))
}

fn wait_joined(lab: &Lab, c: &Candidate, timeout: Duration) -> Result<Value, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let row = node_row(lab, c.mac)?;
        if row["state"] == "joined" {
            return Ok(row);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} node {}: not joined {timeout:?} after its Consul client started: {row}",
                c.label, c.mac
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Joined as the site says: under its hostname in the catalog with an ID,
/// served `profile`, its grant redeemed, the node's `installed` before the
/// appliance's own `catalog-joined`.
pub(crate) fn check_joined_row(row: &Value, hostname: &str, profile: &str) -> Result<(), String> {
    if row["consul"]["node"] != hostname || row["consul"]["id"].as_str().is_none_or(str::is_empty) {
        return Err(format!(
            "joined, but not as catalog node {hostname} with an ID: {row}"
        ));
    }
    if row["profile"] != profile {
        return Err(format!(
            "served profile {}, expected {profile}: {row}",
            row["profile"]
        ));
    }
    if row["grant"]["secret_id_accessor"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        return Err(format!("joined without a recorded grant: {row}"));
    }
    let events: Vec<&str> = row["events"]
        .as_array()
        .map(|list| list.iter().filter_map(|e| e["event"].as_str()).collect())
        .unwrap_or_default();
    let at = |name: &str| events.iter().rposition(|e| *e == name);
    match (at("installed"), at("catalog-joined")) {
        (Some(installed), Some(joined)) if installed < joined => Ok(()),
        _ => Err(format!(
            "expected the node's `installed` and then the appliance's `catalog-joined`, events {events:?}"
        )),
    }
}

/// `kindling node reprovision` of a joined, running node: the appliance
/// revokes the Consul token of its install (Consul still had it), and the
/// node's Consul client, still running, is refused from then on. Returns
/// the old grant's secret-id accessor.
fn reprovision_revokes_the_running_nodes_token(
    lab: &mut Lab,
    scenario: &str,
    c: &Candidate,
    node: VmId,
) -> Result<Value, String> {
    let old_grant = node_row(lab, c.mac)?["grant"]["secret_id_accessor"].clone();
    let url = format!("{}/{}/reprovision", kindling_lab::demo::NODES_PATH, c.mac);
    let asked = Instant::now();
    let (code, body) = lab
        .api_from_lan("POST", &url, Some("{}"))
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("POST {url} answered {code}: {body}"));
    }
    let reply: Value =
        serde_json::from_str(&body).map_err(|e| format!("POST {url}: not JSON ({e}): {body}"))?;
    let generation = reply["generation"].clone();
    let revoked = loop {
        let row = node_row(lab, c.mac)?;
        if row["revoked"]["generation"] == generation {
            break row["revoked"].clone();
        }
        if asked.elapsed() > JOIN_TIMEOUT {
            return Err(format!(
                "{url}: the node's Consul token was not revoked within {JOIN_TIMEOUT:?}: {row}"
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    if revoked["was_live"] != true || revoked["accessor"].as_str().is_none_or(str::is_empty) {
        return Err(format!(
            "re-provisioning {} should revoke the live Consul token of its install: {revoked}",
            c.mac
        ));
    }
    eprintln!(
        "[{scenario}] reprovision {}: Consul token {} revoked {:.1}s after the request",
        c.mac,
        revoked["accessor"],
        asked.elapsed().as_secs_f64()
    );
    let refused = lab
        .vm(node)
        .wait_for(TOKEN_REFUSED, TOKEN_REFUSED_TIMEOUT)
        .map_err(|e| {
            format!("the node's Consul client kept working with its revoked token: {e}")
        })?;
    eprintln!(
        "[{scenario}] the node's own Consul client, {:.1}s after the request: {}",
        asked.elapsed().as_secs_f64(),
        refused.line.trim()
    );
    Ok(old_grant)
}

/// Booted again, a joined node is sent to its disk (the lab node has none,
/// which SeaBIOS says) and its grant stays the one it redeemed.
fn boots_its_disk_without_a_second_grant(
    lab: &mut Lab,
    scenario: &str,
    c: &Candidate,
) -> Result<(), String> {
    let before = node_row(lab, c.mac)?;
    let accessor = before["grant"]["secret_id_accessor"].clone();
    let again = NodeSpec::pxe(&format!("{}-again", c.name), c.mac, c.firmware);
    let node = lab.boot_node(&again).map_err(|e| e.to_string())?;
    for step in [r"net0: 192\.168\.100\.\d+", r"No bootable device"] {
        let seen = lab
            .vm(node)
            .wait_for_unless(step, Some(r"kindling-node: |\.ipxe\.\.\."), NODE_TIMEOUT)
            .map_err(|e| format!("{} node booted again: {e}", c.label))?;
        eprintln!(
            "[{scenario}] {} again +{:.1}s {}",
            c.label,
            seen.elapsed.as_secs_f64(),
            seen.line.trim()
        );
    }
    lab.vm(node).stop();
    let after = node_row(lab, c.mac)?;
    if after["grant"]["secret_id_accessor"] != accessor {
        return Err(format!(
            "{} node {}: booting its disk minted another grant (secret-id accessor {accessor} then {}): {after}",
            c.label, c.mac, after["grant"]["secret_id_accessor"]
        ));
    }
    Ok(())
}

fn print_timelines(scenario: &str, all: &[JoinTimes]) {
    eprintln!("\n[{scenario}] node VM start to joined (s, QEMU TCG)");
    let mut header = format!("{:<18}", "mark");
    for t in all {
        header.push_str(&format!(" {:>10}", t.label));
    }
    eprintln!("{header}");
    for (name, _) in MILESTONES {
        let mut row = format!("{name:<18}");
        for t in all {
            let cell = t
                .mark(name)
                .map(|d| format!("{:.1}", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into());
            row.push_str(&format!(" {cell:>10}"));
        }
        eprintln!("{row}");
    }
    let mut row = format!("{:<18}", "joined");
    for t in all {
        row.push_str(&format!(" {:>10.1}", t.joined.as_secs_f64()));
    }
    eprintln!("{row}");
    // Where the time went: firmware and PXE until the payload runs (the
    // appliance serving boot files), the node's own first boot until its
    // Consul client runs, then the catalog until the appliance says joined.
    for t in all {
        let booted = t.mark("payload booted").unwrap_or_default();
        let started = t.mark("consul started").unwrap_or_default();
        eprintln!(
            "[{scenario}] {}: {:.1}s firmware + PXE, {:.1}s node first boot, {:.1}s until the appliance's catalog check said joined",
            t.label,
            booted.as_secs_f64(),
            started.saturating_sub(booted).as_secs_f64(),
            t.joined.saturating_sub(started).as_secs_f64()
        );
    }
    eprintln!();
}
