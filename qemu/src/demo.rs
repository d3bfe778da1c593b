//! The demo's live part (`kindling-lab demo`): boot the appliance in the lab,
//! follow its phases on the serial console, ask its status API from the LAN,
//! PXE-boot one BIOS node from it and follow that node to its phone-home, then
//! print a one-screen summary. Success means the node really booted from the
//! appliance: its serial log shows the payload's `installed` line AND the
//! appliance's inventory lists its MAC. This module only reads what the VMs
//! and the appliance report; it changes nothing on the appliance.

use crate::bench::{self, DEGRADED_PATTERN, READY_PATTERN};
use crate::error::{LabError, Result};
use crate::lab::{ApplianceSpec, Lab, LabOptions, NodeFirmware, NodeSpec, VmId};
use crate::upstream::NAT_PROBE_PATH;
use crate::vm::{APPLIANCE_UPLINK_MAC, NODE_DEV_MAC};
use kindling_init_protocol::phase::BootPhase;
use regex::Regex;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Asked of the appliance's API (TLS, pinned to the CA on its console, as
/// the lab's TEST-ONLY admin operator) from the LAN side.
pub const STATUS_PATH: &str = "/v1/status";
pub const NODES_PATH: &str = "/v1/nodes";

/// Serial lines worth showing live: the appliance's phases and services.
const APPLIANCE_LINES: &str = r"Linux version|Run /init as init process|kindling: |Kernel panic";
/// The node's firmware and payload milestones.
const NODE_LINES: &str = r"iPXE \d|iPXE initiali|net0: |DHCP|http://|tftp://|Booting|kindling-node: |No bootable device|Kernel panic|Run /init";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub appliance: ApplianceSpec,
    pub boot_name: String,
    pub run_dir: PathBuf,
    pub appliance_timeout: Duration,
    pub node_timeout: Duration,
    /// Set by the CLI's Ctrl-C handler: the demo returns at once and its lab
    /// guard tears everything down.
    pub interrupted: Arc<AtomicBool>,
}

/// What the demo established; printed as the summary.
#[derive(Debug, Default)]
pub struct DemoOutcome {
    pub accel: String,
    pub ready_line: Option<String>,
    /// The `kindling: degraded:` line, if the appliance came up degraded.
    pub degraded: Option<String>,
    pub ready_after: Option<Duration>,
    pub boot_times: Option<bench::BootTimes>,
    pub status_ready: Option<bool>,
    pub services: Vec<String>,
    pub uplink_lease: Option<String>,
    pub node_lease: Option<String>,
    pub node_files: Vec<String>,
    pub node_installed_after: Option<Duration>,
    pub inventory: Option<String>,
    pub nat_clients: Vec<String>,
    pub stopped_at: Option<String>,
    pub logs: PathBuf,
}

impl DemoOutcome {
    /// The demo's exit criterion.
    pub fn node_booted_from_appliance(&self) -> bool {
        self.node_installed_after.is_some() && self.inventory.is_some()
    }
}

struct Live {
    start: Instant,
    filter_app: Regex,
    filter_node: Regex,
}

impl Live {
    fn show(&self, who: &str, line: &str) {
        println!(
            "[{:>6.1}s] {who:<9} {}",
            self.start.elapsed().as_secs_f64(),
            line.trim()
        );
    }

    fn follow(&self, lab: &mut Lab, id: VmId, who: &str, printed: &mut usize, node: bool) {
        let lines = lab.vm(id).lines();
        let filter = if node {
            &self.filter_node
        } else {
            &self.filter_app
        };
        // One line per loaded module is noise in a live account.
        let module_line = format!("{}: loaded module", BootPhase::Early);
        for l in lines.iter().skip(*printed) {
            if filter.is_match(&l.line) && !l.line.contains(&module_line) {
                self.show(who, &l.line);
            }
        }
        *printed = lines.len();
    }
}

/// Compiles one of this module's constant patterns (a typo fails its tests).
fn regex(pattern: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| LabError::InvalidOption {
        option: "demo pattern",
        reason: e.to_string(),
    })
}

/// Runs the live demo; `Err` only for lab setup failures (no root, tools).
pub fn run(options: &DemoOptions) -> Result<DemoOutcome> {
    let live = Live {
        start: Instant::now(),
        filter_app: regex(APPLIANCE_LINES)?,
        filter_node: regex(NODE_LINES)?,
    };
    let mut out = DemoOutcome {
        logs: options.run_dir.clone(),
        ..Default::default()
    };
    options.appliance.check_files()?;
    let mut lab = Lab::up(LabOptions::standard(options.run_dir.clone()))?;
    out.accel = lab.accel().as_str().to_string();
    println!(
        "\n== lab up: netns {} (upstream router 10.0.2.1, DHCP + HTTP target) and {} (br-up, br-lan); QEMU accel {} ==",
        lab.names().upstream,
        lab.names().lan,
        out.accel
    );
    println!(
        "== booting the appliance ({} boot); serial log {}/appliance.serial.log ==",
        options.boot_name,
        options.run_dir.display()
    );
    let app = lab.boot_appliance(&options.appliance)?;
    let ready = regex(READY_PATTERN)?;
    let degraded = regex(DEGRADED_PATTERN)?;
    let deadline = Instant::now() + options.appliance_timeout;
    let mut printed = 0;
    loop {
        live.follow(&mut lab, app, "appliance", &mut printed, false);
        let lines = lab.vm(app).lines();
        if let Some(l) = lines.iter().find(|l| ready.is_match(&l.line)) {
            out.ready_line = Some(l.line.trim().to_string());
            out.ready_after = Some(l.elapsed);
            out.boot_times = bench::boot_times(&lines);
            break;
        }
        if let Some(l) = lines.iter().find(|l| degraded.is_match(&l.line)) {
            // Degraded still serves what came up: go on and show how far the node gets.
            out.degraded = Some(l.line.trim().to_string());
            out.ready_after = Some(l.elapsed);
            break;
        }
        if let Some(status) = lab.vm(app).exited() {
            out.stopped_at = Some(format!(
                "the appliance VM exited ({status}) before `kindling: ready`"
            ));
            return Ok(out);
        }
        if options.interrupted.load(Ordering::SeqCst) {
            out.stopped_at = Some("interrupted (Ctrl-C)".into());
            return Ok(out);
        }
        if Instant::now() >= deadline {
            out.stopped_at = Some(format!(
                "no `kindling: ready` within {:?}",
                options.appliance_timeout
            ));
            return Ok(out);
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // The status API, from the lab's LAN address 192.168.100.2.
    match lab.api_from_lan("GET", STATUS_PATH, None) {
        Ok((200, body)) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            // Kept with the logs: the whole answer, for whoever reads them later.
            let _ = std::fs::write(options.run_dir.join("appliance-status.json"), &body);
            out.status_ready = status_ready(&v);
            out.services = describe_services(&v);
            live.show(
                "api",
                &format!(
                    "GET {STATUS_PATH}: ready={}",
                    out.status_ready
                        .map_or("unknown".to_string(), |r| r.to_string())
                ),
            );
            for s in &out.services {
                live.show("api", &format!("  service {s}"));
            }
        }
        Ok((code, body)) => live.show(
            "api",
            &format!("GET {STATUS_PATH}: HTTP {code} {}", body.trim()),
        ),
        Err(e) => live.show("api", &format!("GET {STATUS_PATH} failed: {e}")),
    }
    out.uplink_lease = lab.upstream().and_then(|u| {
        u.leases()
            .into_iter()
            .find(|(mac, _)| mac == APPLIANCE_UPLINK_MAC)
            .map(|(_, ip)| ip)
    });
    live.show(
        "upstream",
        &format!(
            "appliance uplink lease: {}",
            out.uplink_lease.as_deref().unwrap_or("none")
        ),
    );
    if out.stopped_at.is_some() {
        return Ok(out);
    }

    println!("\n== PXE-booting node {NODE_DEV_MAC} (SeaBIOS + iPXE) on br-lan; serial log {}/node-bios.serial.log ==", options.run_dir.display());
    let node = lab.boot_node(&NodeSpec::pxe(
        "node-bios",
        NODE_DEV_MAC,
        NodeFirmware::Bios,
    ))?;
    let deadline = Instant::now() + options.node_timeout;
    let node_start = Instant::now();
    let mut printed = 0;
    let lease = regex(r"kindling-node: lease (\S+)")?;
    let ipxe_lease = regex(r"net0: (\d+\.\d+\.\d+\.\d+)")?;
    let fetched = regex(r"(https?|tftp)://\S+")?;
    loop {
        live.follow(&mut lab, node, "node", &mut printed, true);
        let lines = lab.vm(node).lines();
        for l in &lines {
            if let Some(c) = lease
                .captures(&l.line)
                .or_else(|| ipxe_lease.captures(&l.line))
            {
                out.node_lease = Some(c[1].to_string());
            }
            // iPXE's own download lines, and the payload's `fetched URL` lines.
            let is_fetch =
                !l.line.contains("kindling-node:") || l.line.contains("kindling-node: fetched ");
            for m in fetched.find_iter(&l.line).filter(|_| is_fetch) {
                let url = m
                    .as_str()
                    .trim_end_matches(['.', ',', ')'])
                    .replace("%3A", ":");
                // iPXE's banner names its home page; that is not a download.
                if !url.contains("ipxe.org") && !out.node_files.contains(&url) {
                    out.node_files.push(url);
                }
            }
        }
        if lines
            .iter()
            .any(|l| l.line.contains("kindling-node: installed"))
            && out.node_installed_after.is_none()
        {
            out.node_installed_after = Some(node_start.elapsed());
        }
        if let Some(status) = lab.vm(node).exited() {
            live.follow(&mut lab, node, "node", &mut printed, true);
            live.show("node", &format!("VM powered off ({status})"));
            break;
        }
        if options.interrupted.load(Ordering::SeqCst) {
            out.stopped_at = Some("interrupted (Ctrl-C)".into());
            return Ok(out);
        }
        if Instant::now() >= deadline {
            out.stopped_at = Some(format!(
                "the node did not finish within {:?}",
                options.node_timeout
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if out.node_installed_after.is_none() && out.stopped_at.is_none() {
        out.stopped_at = Some("the node never printed `kindling-node: installed`".into());
    }

    match wait_node_phoned_home(&lab, NODE_DEV_MAC, INVENTORY_SETTLE) {
        Ok((200, body)) if node_phoned_home(&body, NODE_DEV_MAC) => {
            let summary = describe_node(&body, NODE_DEV_MAC);
            live.show("api", &format!("GET {NODES_PATH}: {summary}"));
            out.inventory = Some(summary);
        }
        Ok((code, body)) => live.show(
            "api",
            &format!(
                "GET {NODES_PATH}: HTTP {code}, node {NODE_DEV_MAC} state {:?}: {}",
                node_state(&body, NODE_DEV_MAC),
                body.trim()
            ),
        ),
        Err(e) => live.show("api", &format!("GET {NODES_PATH} failed: {e}")),
    }
    if let Some(up) = lab.upstream() {
        out.nat_clients = up.http_clients_for(NAT_PROBE_PATH);
        live.show(
            "upstream",
            &format!(
                "HTTP target saw {NAT_PROBE_PATH} from {:?}",
                out.nat_clients
            ),
        );
    }
    if out.node_booted_from_appliance() {
        lab.succeeded();
    }
    Ok(out)
}

/// How long the inventory may take to show an event the node already sent
/// (the PXE service writes its node file behind the HTTP answer).
pub const INVENTORY_SETTLE: Duration = Duration::from_secs(15);

/// Polls `GET /v1/nodes` from the LAN until `mac` shows installed (or joined)
/// or `timeout` passes; returns the last answer.
pub fn wait_node_phoned_home(lab: &Lab, mac: &str, timeout: Duration) -> Result<(u16, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let answer = lab.api_from_lan("GET", NODES_PATH, None);
        let done = matches!(&answer, Ok((200, body)) if node_phoned_home(body, mac));
        if done || Instant::now() >= deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `init.ready` of `GET /v1/status` (init's own verdict, from its control socket).
pub fn status_ready(status: &serde_json::Value) -> Option<bool> {
    status
        .pointer("/init/ready")
        .and_then(serde_json::Value::as_bool)
}

/// The node's inventory state in `GET /v1/nodes` (`null` until it was seen).
pub fn node_state(nodes_body: &str, mac: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(nodes_body).ok()?;
    let nodes = v.get("nodes")?.as_array()?;
    let node = nodes
        .iter()
        .find(|n| n.get("mac").and_then(serde_json::Value::as_str) == Some(mac))?;
    node.get("state")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}

/// Whether the inventory says the node finished booting its payload.
pub fn node_phoned_home(nodes_body: &str, mac: &str) -> bool {
    matches!(
        node_state(nodes_body, mac).as_deref(),
        Some("installed" | "joined")
    )
}

fn describe_services(status: &serde_json::Value) -> Vec<String> {
    let list = status
        .pointer("/init/services")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    list.iter()
        .map(|s| {
            let name = s
                .get("name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?");
            let state = s
                .get("state")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?");
            format!("{name}: {state}")
        })
        .collect()
}

fn describe_node(body: &str, mac: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let nodes = v
        .get("nodes")
        .and_then(serde_json::Value::as_array)
        .or_else(|| v.as_array())
        .cloned()
        .unwrap_or_default();
    let node = nodes
        .iter()
        .find(|n| n.get("mac").and_then(serde_json::Value::as_str) == Some(mac));
    match node {
        Some(n) => {
            let field = |k: &str| {
                n.get(k)
                    .map(|x| x.to_string().trim_matches('"').to_string())
                    .unwrap_or_else(|| "-".into())
            };
            let events: Vec<String> = n
                .get("events")
                .and_then(serde_json::Value::as_array)
                .map(|es| {
                    es.iter()
                        .filter_map(|e| {
                            e.get("event")
                                .and_then(serde_json::Value::as_str)
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "{mac} state {} profile {} ip {} events [{}]",
                field("state"),
                field("profile"),
                field("ip"),
                events.join(", ")
            )
        }
        None => format!("{mac} listed"),
    }
}

/// The one-screen summary.
pub fn summary(out: &DemoOutcome) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "NO" };
    let mut s = String::from("\n================ kindling demo: summary ================\n");
    let mut row = |k: &str, v: String| s.push_str(&format!("{k:<28} {v}\n"));
    row("QEMU accelerator", out.accel.clone());
    row(
        "appliance ready",
        match (&out.ready_line, out.ready_after) {
            (Some(line), Some(t)) => {
                format!("yes, {:.1} s after QEMU start ({line})", t.as_secs_f64())
            }
            _ => "NO".into(),
        },
    );
    if let Some(t) = &out.boot_times {
        row(
            "boot time (printk clock)",
            format!(
                "kernel→/init {:.2} s, /init→ready {:.2} s",
                t.kernel_s,
                t.userspace_s()
            ),
        );
    }
    if let Some(d) = &out.degraded {
        row("appliance DEGRADED", d.clone());
    }
    row(
        "status API from the LAN",
        out.status_ready
            .map(|r| format!("answered, ready={r}"))
            .unwrap_or_else(|| "no answer".into()),
    );
    if !out.services.is_empty() {
        row("services", out.services.join(", "));
    }
    row(
        "uplink lease (upstream)",
        out.uplink_lease.clone().unwrap_or_else(|| "none".into()),
    );
    row(
        "node DHCP lease (LAN)",
        out.node_lease.clone().unwrap_or_else(|| "none".into()),
    );
    row(
        "files the node fetched",
        if out.node_files.is_empty() {
            "none".into()
        } else {
            out.node_files.join("\n                             ")
        },
    );
    row(
        "node installed + phoned home",
        out.node_installed_after
            .map(|t| format!("yes, {:.1} s after power-on", t.as_secs_f64()))
            .unwrap_or_else(|| "NO".into()),
    );
    row(
        "appliance inventory",
        out.inventory
            .clone()
            .unwrap_or_else(|| "node NOT listed".into()),
    );
    row(
        "node reached upstream (NAT)",
        if out.nat_clients.is_empty() {
            "no".into()
        } else {
            format!("yes, target saw source {}", out.nat_clients.join(", "))
        },
    );
    row("logs", out.logs.display().to_string());
    if let Some(why) = &out.stopped_at {
        row("stopped", why.clone());
    }
    row(
        "RESULT",
        format!(
            "node booted from the appliance: {}",
            yes_no(out.node_booted_from_appliance())
        ),
    );
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_live_filters_compile_and_pick_milestones() {
        for p in [APPLIANCE_LINES, NODE_LINES, READY_PATTERN, DEGRADED_PATTERN] {
            Regex::new(p).unwrap();
        }
        let node = Regex::new(NODE_LINES).unwrap();
        assert!(node.is_match("http://192.168.100.1/boot/52:54:00:6b:00:10.ipxe... ok"));
        assert!(node.is_match("kindling-node: installed"));
        assert!(!node.is_match("[    1.0] ACPI: PM: Preparing to enter system sleep state S5"));
    }

    #[test]
    fn success_needs_both_the_serial_line_and_the_inventory() {
        let mut out = DemoOutcome {
            node_installed_after: Some(Duration::from_secs(9)),
            ..Default::default()
        };
        assert!(!out.node_booted_from_appliance());
        out.inventory = Some("52:54:00:6b:00:10 state installed".into());
        assert!(out.node_booted_from_appliance());
        assert!(summary(&out).contains("node booted from the appliance: yes"));
    }

    #[test]
    fn node_inventory_is_described_from_the_api_json() {
        let body = r#"{"nodes":[{"mac":"52:54:00:6b:00:10","state":"installed","profile":"dev","ip":"192.168.100.100",
            "events":[{"event":"booted"},{"event":"nocloud"},{"event":"installed"}]},
            {"mac":"52:54:00:6b:00:20","state":null}]}"#;
        assert!(node_phoned_home(body, "52:54:00:6b:00:10"));
        assert!(
            !node_phoned_home(body, "52:54:00:6b:00:20"),
            "a reserved MAC never seen has state null"
        );
        let d = describe_node(body, "52:54:00:6b:00:10");
        assert_eq!(d, "52:54:00:6b:00:10 state installed profile dev ip 192.168.100.100 events [booted, nocloud, installed]");
    }
}
