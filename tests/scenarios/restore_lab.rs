//! Backup on one appliance, restore on a fresh one, in the lab (called by
//! `stack_lab` once nodes have joined):
//!
//! 1. the appliance that bootstrapped its stack, holds a runtime MAC
//!    assignment in Consul KV and has joined nodes in its inventory is
//!    backed up (`kindling backup now`) and the backup pulled from the LAN
//!    (`kindling backup pull`);
//! 2. a fresh appliance (the pristine image's disk, an empty data
//!    partition) boots and bootstraps a cluster of its own: none of the
//!    nodes, none of the assignment;
//! 3. `kindling backup restore FILE --identity KEY --yes` from the LAN:
//!    the appliance reboots, its config phase applies the backup, its
//!    bootstrap forces Vault's snapshot in and waits; the ORIGINAL key
//!    shares (of the first appliance, from its `vault-init.age` opened
//!    with the lab's TEST-ONLY identity) unseal it through the API; the
//!    bootstrap restores Consul's snapshot and finishes;
//! 4. the assignment is back in Consul KV, the nodes are back in the
//!    inventory, and `GET /v1/backups` shows the restore's record.
//!
//! Prints the backup's size and time and the restore's times.

use crate::update_push::{admin_cli, boot_again_like, wait_reboot};
use kindling_lab::{ApplianceSpec, Lab, VmId};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const BACKUP_WAIT: Duration = Duration::from_secs(300);
const REBOOT_TIMEOUT: Duration = Duration::from_secs(120);
const UNSEAL_WAIT: Duration = Duration::from_secs(420);

/// What the scenario measured.
pub struct RestoreTimes {
    pub backup_bytes: u64,
    pub backup: Duration,
    pub fresh_stack_ready: Duration,
    /// From the restore's request to the stack ready on the restored cluster.
    pub restore_to_ready: Duration,
}

fn get(lab: &Lab, path: &str) -> Result<Value, String> {
    crate::update_push::get(lab, path)
}

/// `kindling ARGS` from the LAN as the admin; its stdout, or why it failed.
fn cli(lab: &Lab, args: &[&str]) -> Result<String, String> {
    let out = admin_cli(lab)?
        .args(args)
        .output()
        .map_err(|e| format!("kindling {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "kindling {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Each node MAC in `GET /v1/nodes` with its state.
fn node_states(lab: &Lab) -> Result<BTreeMap<String, String>, String> {
    let nodes = get(lab, "/v1/nodes")?;
    Ok(nodes["nodes"]
        .as_array()
        .ok_or_else(|| format!("GET /v1/nodes: no nodes: {nodes}"))?
        .iter()
        .filter_map(|n| {
            Some((
                n["mac"].as_str()?.to_string(),
                n["state"].as_str().unwrap_or("?").to_string(),
            ))
        })
        .collect())
}

/// The state of bootstrap step `name` in `GET /v1/stack` (absent while the
/// bootstrap has not reported).
fn step(lab: &Lab, name: &str) -> Option<String> {
    let stack = get(lab, "/v1/stack").ok()?;
    stack["steps"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["state"].as_str().map(str::to_string))
}

#[allow(clippy::too_many_arguments)]
pub fn backup_restores_onto_a_fresh_appliance(
    lab: &mut Lab,
    app: VmId,
    spec: &ApplianceSpec,
    pristine_disk: &Path,
    original_shares: &Value,
    assigned_mac: &str,
    wait_stack_ready: impl Fn(&mut Lab, VmId) -> Result<Duration, String>,
    scenario: &str,
) -> Result<RestoreTimes, String> {
    let run_dir = lab.run_dir().to_path_buf();
    let before = node_states(lab)?;
    let joined: Vec<&String> = before
        .iter()
        .filter(|(_, s)| s.as_str() == "joined")
        .map(|(m, _)| m)
        .collect();
    if joined.is_empty() {
        return Err(format!("no joined node to back up: {before:?}"));
    }

    // 1. The backup, made and pulled the operator's way.
    let started = Instant::now();
    let said = cli(
        lab,
        &[
            "backup",
            "now",
            "--wait",
            &format!("{}s", BACKUP_WAIT.as_secs()),
        ],
    )?;
    let backup_took = started.elapsed();
    let id = said
        .lines()
        .find_map(|l| l.strip_prefix("backup ").and_then(|r| r.split(' ').next()))
        .filter(|id| said.contains(&format!("backup {id} made")))
        .ok_or_else(|| format!("kindling backup now: no id in {said:?}"))?
        .to_string();
    let file = run_dir.join("lab.kbak");
    cli(
        lab,
        &["backup", "pull", &id, "-o", &file.display().to_string()],
    )?;
    let backup_bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "[{scenario}] backup {id}: {backup_bytes} bytes (encrypted), made in {:.1}s; nodes in it: {before:?}",
        backup_took.as_secs_f64()
    );

    // 2. A fresh appliance: the pristine disk, its own cold bootstrap.
    lab.vm(app).stop();
    let mut fresh = spec.clone();
    fresh.boot = kindling_lab::ApplianceBoot::Disk {
        image: pristine_disk.to_path_buf(),
        bus: kindling_lab::DiskBus::Virtio,
    };
    let _ = std::fs::copy(
        run_dir.join("appliance.serial.log"),
        run_dir.join("appliance.before-restore.serial.log"),
    );
    let app = lab.boot_appliance(&fresh).map_err(|e| e.to_string())?;
    let fresh_stack_ready = wait_stack_ready(lab, app)?;
    // The site names the lab's nodes, so they are listed; none has joined
    // this appliance's cluster.
    let fresh_nodes = node_states(lab)?;
    if joined
        .iter()
        .any(|m| fresh_nodes.get(*m).map(String::as_str) == Some("joined"))
    {
        return Err(format!(
            "the fresh appliance already has the nodes joined: {fresh_nodes:?}"
        ));
    }

    // 3. The restore: staged over the API, applied at the reboot.
    let identity = kindling_e2e::repo_root().join(crate::stack_lab::IDENTITY);
    let started = Instant::now();
    let said = cli(
        lab,
        &[
            "backup",
            "restore",
            &file.display().to_string(),
            "--identity",
            &identity.display().to_string(),
            "--yes",
        ],
    )?;
    eprintln!("[{scenario}] kindling backup restore: {}", said.trim());
    let line = wait_reboot(lab, app, REBOOT_TIMEOUT, "after the restore was staged")?;
    eprintln!("[{scenario}] {line}");
    let app = boot_again_like(lab, "restore-staged", spec)?;
    lab.vm(app)
        .wait_for(
            r"restore: backup \S+ .*applied",
            crate::APPLIANCE_READY_TIMEOUT,
        )
        .map_err(|e| format!("the config phase did not apply the restore: {e}"))?;
    // The restored Vault waits for the first appliance's shares.
    let deadline = Instant::now() + UNSEAL_WAIT;
    while step(lab, "vault-unseal").as_deref() != Some("waiting") {
        if Instant::now() > deadline {
            return Err(format!(
                "the restored Vault never waited for its shares: {:?}",
                get(lab, "/v1/stack")
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    if step(lab, "vault-restore").as_deref() != Some("done") {
        return Err(format!(
            "vault-restore is not done: {:?}",
            get(lab, "/v1/stack")
        ));
    }
    let keys = original_shares["keys_base64"]
        .as_array()
        .ok_or("the original init secrets have no keys_base64")?;
    let threshold = original_shares["threshold"].as_u64().unwrap_or(0) as usize;
    for key in keys.iter().take(threshold) {
        let body = serde_json::json!({ "key": key }).to_string();
        let (code, reply) = lab
            .api_from_lan("POST", "/v1/vault/unseal", Some(&body))
            .map_err(|e| e.to_string())?;
        if code != 200 {
            return Err(format!(
                "POST /v1/vault/unseal with an original share: {code}: {reply}"
            ));
        }
    }
    lab.vm(app)
        .wait_for(r"kindling: stack: ready", UNSEAL_WAIT)
        .map_err(|e| format!("the restored stack did not become ready: {e}"))?;
    let restore_to_ready = started.elapsed();

    // 4. The first appliance's cluster, on the fresh one.
    for name in ["vault-restore", "consul-restore"] {
        if step(lab, name).as_deref() != Some("done") {
            return Err(format!("{name} is not done: {:?}", get(lab, "/v1/stack")));
        }
    }
    let after = node_states(lab)?;
    for mac in &joined {
        if after.get(*mac).map(String::as_str) != Some("joined") {
            return Err(format!("node {mac} did not come back joined: {after:?}"));
        }
    }
    let nodes = get(lab, "/v1/nodes")?;
    let assignment = nodes["nodes"]
        .as_array()
        .and_then(|rows| rows.iter().find(|n| n["mac"] == assigned_mac))
        .map(|n| n["assignment"].clone())
        .unwrap_or(Value::Null);
    if assignment["stored"] != "kv" || assignment["profile"] != "prod" {
        return Err(format!(
            "the runtime assignment of {assigned_mac} is not back in Consul KV: {assignment}"
        ));
    }
    let backups = get(lab, "/v1/backups")?;
    if backups["restore_last"]["ok"] != true || backups["restore_last"]["backup_id"] != id.as_str()
    {
        return Err(format!(
            "GET /v1/backups: no record of the restore: {backups}"
        ));
    }
    eprintln!(
        "[{scenario}] restored backup {id}: nodes {after:?}; {assigned_mac} -> prod in Consul KV; Vault opened with the first appliance's shares; {:.1}s from the restore request to the stack ready",
        restore_to_ready.as_secs_f64()
    );
    Ok(RestoreTimes {
        backup_bytes,
        backup: backup_took,
        fresh_stack_ready,
        restore_to_ready,
    })
}
