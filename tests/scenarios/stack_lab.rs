//! The appliance with the real OpenBao (as
//! `vault`) and Consul in its image boots in the lab from its raw disk under
//! OVMF with an empty KINDLING-DATA partition, bootstraps the stack by itself
//! and prints `kindling: stack: ready`; `GET /v1/stack` from the LAN side
//! shows every step done, the encrypted init secrets open with the TEST-ONLY
//! age identity the lab site names, and a runtime MAC assignment made
//! through the API reaches Consul KV (still there after the power cut). Then the power is cut and the same disk boots
//! again: the warm boot only unseals (the lab's local key) and checks, and
//! must not initialise Vault a second time.
//!
//! From the LAN side (the lab's LAN namespace) it port-scans the appliance
//! while the cold bootstrap runs (only DHCP, TFTP, HTTP boot, DNS and the
//! API answer: Consul, Vault and Nomad are sealed off) and after it (every
//! TCP port: the same plus the stack's TLS ports, which refuse plain HTTP),
//! checks the root token was revoked, and that `GET /v1/services` shows each
//! child running as its own uid with exactly its capabilities. The services'
//! output is on the data partition: a line the test caused before the power
//! cut is read back after it, and `kindling logs api -f` shows a line the
//! test causes while it follows (`service_logs`).
//!
//! After the warm boot a BIOS and a UEFI node PXE-boot, enroll with their
//! grants and join the stack's Consul, which the appliance itself must see
//! before it calls them `joined` (`node_join`).
//!
//! It prints the cold and warm times and each step's duration as a table: the
//! stack's benchmark. It runs in every `tests/e2e` (it proves the mission: the
//! stack bootstraps itself); `KINDLING_E2E_STACK=0` skips it on a machine
//! where the ~70 MiB initramfs and the minutes under TCG are not wanted.

use crate::APPLIANCE_READY_TIMEOUT;
use crate::{node_join, restore_lab, service_logs};
use kindling_e2e::scan::{self, ScanResult};
use kindling_e2e::{lab_for, lab_stack_image, release_bin, repo_root, skip_unless_root};
use kindling_lab::{ApplianceBoot, ApplianceSpec, DiskBus, Lab, VmId};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const STACK_URL: &str = "/v1/stack";
const INIT_SECRETS_URL: &str = "/v1/vault/init-secrets";
const NODES_URL: &str = "/v1/nodes";
const SERVICES_URL: &str = "/v1/services";
const APPLIANCE_LAN: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 168, 100, 1);
/// TCP ports any LAN host may reach: DNS, HTTP boot, the API.
const TCP_ALWAYS: &[u16] = &[53, 80, 9000];
/// The stack's TLS ports, once it is bootstrapped: Consul RPC, gossip and
/// HTTPS API, Vault (the lab runs no Nomad).
const TCP_STACK: &[u16] = &[8200, 8300, 8301, 8501];
/// UDP ports that answer their probe: DNS, TFTP and NTP (DHCP answers only
/// DHCP; Consul's gossip drops what it cannot decrypt).
const UDP_ANSWERING: &[u16] = &[53, 69, 123];
/// A MAC the site does not pin: assigned at runtime, kept in Consul KV.
const ASSIGNED_MAC: &str = "52:54:00:6b:00:40";
const KV_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const STACK_READY: &str = r"kindling: stack: ready";
/// init decides boot with one of these (ready, or degraded while a stack
/// service is still settling); either way the wait goes on for the stack.
const BOOT_DECIDED: &str = r"kindling: (ready \(|degraded:)";
/// Only a dead kernel ends the wait early: while the bootstrap runs the
/// appliance may report itself degraded (the stack is not required for ready).
const STACK_FAIL: &str = r"Kernel panic";
/// Under TCG the cold bootstrap (two big binaries unpacked into RAM, Vault
/// init, PKI) takes minutes; the bound only stops a hung boot.
const STACK_READY_TIMEOUT: Duration = Duration::from_secs(420);
pub(crate) const IDENTITY: &str = "tests/data/lab-stack-TEST-ONLY-age-identity.txt";
/// Longer than the guest kernel's dirty-page expiry plus writeback interval.
const WRITEBACK_SETTLE: Duration = Duration::from_secs(40);
/// The initramfs (bao + consul) is unpacked into RAM.
const MEMORY_MB: u32 = 3072;

/// States in which a step needs nothing more.
const FINISHED: [&str; 3] = ["done", "already_done", "skipped"];

pub struct BootTimes {
    /// Until init decided boot (`ready` or `degraded`).
    ready: Duration,
    stack_ready: Duration,
    line: String,
}

/// One bootstrap step as `GET /v1/stack` reports it.
#[derive(Debug)]
struct Step {
    name: String,
    state: String,
    ms: u64,
}

/// One measured boot: its label, times and steps.
struct Boot<'a> {
    label: &'a str,
    times: &'a BootTimes,
    steps: &'a [Step],
}

/// The stack appliance booting the lab disk image in `image` (a fresh copy:
/// empty KINDLING-DATA), under OVMF, with the memory its initramfs needs.
pub fn stack_spec(image: &Path) -> ApplianceSpec {
    let mut spec = ApplianceSpec::new(ApplianceBoot::Disk {
        image: image.join("kindling.img"),
        bus: DiskBus::Virtio,
    });
    spec.memory_mb = MEMORY_MB;
    spec.cpus = 2;
    spec
}

/// Waits for the appliance's ready line (informational) and the stack's;
/// `during` runs in between (while the stack bootstraps).
pub fn wait_stack_ready(
    lab: &mut Lab,
    app: VmId,
    scenario: &str,
    during: impl FnOnce(&Lab) -> Result<(), String>,
) -> Result<BootTimes, String> {
    // Boot is decided either way; the stack may still be starting then.
    let ready = lab
        .vm(app)
        .wait_for_unless(BOOT_DECIDED, Some(STACK_FAIL), APPLIANCE_READY_TIMEOUT)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "[{scenario}] boot decided {:.1}s after QEMU start: {}",
        ready.elapsed.as_secs_f64(),
        ready.line.trim()
    );
    during(lab)?;
    let vm = lab.vm(app);
    let stack = vm
        .wait_for_unless(STACK_READY, Some(STACK_FAIL), STACK_READY_TIMEOUT)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "[{scenario}] stack ready {:.1}s after QEMU start: {}",
        stack.elapsed.as_secs_f64(),
        stack.line.trim()
    );
    Ok(BootTimes {
        ready: ready.elapsed,
        stack_ready: stack.elapsed,
        line: stack.line.trim().to_string(),
    })
}

fn get_json(lab: &Lab, url: &str) -> Result<Value, String> {
    let (code, body) = lab
        .api_from_lan("GET", url, None)
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("GET {url} from the LAN answered {code}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {url}: not JSON ({e}): {body}"))
}

/// The stack's overall state while it bootstraps. The stack service starts
/// once init has decided the boot, so right after `ready` it may not have
/// written its first report: `GET /v1/stack` then answers 404 "has not
/// reported yet", which here reads as the state `not-reported` (the
/// bootstrap has not begun; its ports must be closed all the same).
fn stack_state_during_bootstrap(lab: &Lab) -> Result<Value, String> {
    let (code, body) = lab
        .api_from_lan("GET", STACK_URL, None)
        .map_err(|e| e.to_string())?;
    match code {
        200 => serde_json::from_str::<Value>(&body)
            .map(|v| v["state"].clone())
            .map_err(|e| format!("GET {STACK_URL}: not JSON ({e}): {body}")),
        404 if body.contains("has not reported yet") => Ok(Value::from("not-reported")),
        _ => Err(format!(
            "GET {STACK_URL} from the LAN answered {code}: {body}"
        )),
    }
}

/// `GET /v1/stack`: overall `ready`, every step finished; returns the steps
/// with their durations.
fn stack_steps(lab: &Lab) -> Result<Vec<Step>, String> {
    let stack = get_json(lab, STACK_URL)?;
    if stack["state"] != "ready" {
        return Err(format!("GET {STACK_URL}: state is not ready: {stack}"));
    }
    let steps = stack["steps"]
        .as_array()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("GET {STACK_URL}: no steps: {stack}"))?;
    let mut out = Vec::new();
    for step in steps {
        let name = step["name"].as_str().unwrap_or("?").to_string();
        let state = step["state"].as_str().unwrap_or("?").to_string();
        if !FINISHED.contains(&state.as_str()) {
            return Err(format!(
                "GET {STACK_URL}: step {name} is {state}, not done: {step}"
            ));
        }
        let ms = step["duration_ms"].as_u64().unwrap_or(0);
        out.push(Step { name, state, ms });
    }
    Ok(out)
}

/// The runtime assignment of `mac` as `GET /v1/nodes` reports it.
fn assignment_of(lab: &Lab, mac: &str) -> Result<Value, String> {
    let nodes = get_json(lab, NODES_URL)?;
    nodes["nodes"]
        .as_array()
        .and_then(|rows| rows.iter().find(|n| n["mac"] == mac))
        .map(|n| n["assignment"].clone())
        .ok_or_else(|| format!("GET {NODES_URL}: no row for {mac}: {nodes}"))
}

/// Waits until `mac`'s assignment is `profile`, stored in Consul KV.
fn wait_assignment_in_kv(lab: &Lab, mac: &str, profile: &str) -> Result<Duration, String> {
    let start = std::time::Instant::now();
    loop {
        let a = assignment_of(lab, mac)?;
        if a["profile"] == profile && a["stored"] == "kv" {
            return Ok(start.elapsed());
        }
        if start.elapsed() > KV_SYNC_TIMEOUT {
            return Err(format!(
                "{mac}: assignment not {profile} in Consul KV within {KV_SYNC_TIMEOUT:?}: {a}"
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// An operator's runtime assignment through the API reaches Consul KV on
/// the appliance itself (`kindlingd api` syncs it with its own token).
fn assign_and_see_it_in_kv(lab: &Lab, scenario: &str) -> Result<(), String> {
    let url = format!("{NODES_URL}/{ASSIGNED_MAC}/profile");
    let (code, body) = lab
        .api_from_lan("PUT", &url, Some(r#"{"profile": "prod"}"#))
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("PUT {url} answered {code}: {body}"));
    }
    let took = wait_assignment_in_kv(lab, ASSIGNED_MAC, "prod")?;
    eprintln!(
        "[{scenario}] assignment {ASSIGNED_MAC} -> prod in Consul KV {:.1}s after the PUT",
        took.as_secs_f64()
    );
    Ok(())
}

fn step_state<'a>(steps: &'a [Step], name: &str) -> Option<&'a str> {
    steps
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.state.as_str())
}

/// The init secrets the appliance hands out open with the lab's TEST-ONLY
/// identity (what an operator would do with theirs). The plaintext is never
/// printed.
fn init_secrets_open_with_test_identity(lab: &Lab, run_dir: &Path) -> Result<Value, String> {
    let reply = get_json(lab, INIT_SECRETS_URL)?;
    let armored = reply["ciphertext"]
        .as_str()
        .ok_or_else(|| format!("GET {INIT_SECRETS_URL}: no ciphertext field"))?;
    let file = run_dir.join("vault-init.age");
    std::fs::write(&file, armored).map_err(|e| format!("writing {}: {e}", file.display()))?;
    let out = Command::new(release_bin("kindling"))
        .args(["vault", "decrypt-init", "--identity"])
        .arg(repo_root().join(IDENTITY))
        .arg("--in")
        .arg(&file)
        .output()
        .map_err(|e| format!("running kindling vault decrypt-init: {e}"))?;
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        return Err(format!(
            "kindling vault decrypt-init with {IDENTITY} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if out.stdout.is_empty() {
        return Err("kindling vault decrypt-init printed nothing".into());
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("kindling vault decrypt-init printed no JSON: {e}"))
}

fn set(ports: &[u16]) -> std::collections::BTreeSet<u16> {
    ports.iter().copied().collect()
}

/// Every port Consul, Vault or Nomad could listen on.
const STACK_PORTS: &[u16] = &[
    4646, 4647, 4648, 8200, 8201, 8210, 8300, 8301, 8302, 8500, 8501, 8502, 8600,
];

/// The scan while the stack bootstraps: only what any PXE client needs and
/// the API. First every stack port in one quick pass (about a second), with
/// the stack's state read right after it: that is what shows the ports
/// sealed while the bootstrap runs. Then a wider scan (ports 1–1024 and
/// every port Consul, Vault, Nomad or kindling could use, 4600–4700 and
/// 8000–9999): nothing beyond the PXE services and the API, and the stack's
/// TLS ports only if the bootstrap finished while it ran.
fn scan_during_bootstrap(lab: &Lab, scenario: &str) -> Result<ScanResult, String> {
    let ns = lab.names().lan.clone();
    let stack_open = scan::tcp_open_from(
        &ns,
        APPLIANCE_LAN,
        STACK_PORTS.to_vec(),
        std::time::Duration::from_millis(1000),
    )?;
    let state = stack_state_during_bootstrap(lab)?;
    eprintln!(
        "[{scenario}] stack ports from the LAN during bootstrap (stack state {state}): open {stack_open:?}"
    );
    if state == "ready" {
        return Err(format!(
            "the stack was ready before its ports were probed (open {stack_open:?}); cannot tell what was open during the bootstrap"
        ));
    }
    if !stack_open.is_empty() {
        return Err(format!(
            "during the bootstrap the LAN reaches stack ports {stack_open:?}"
        ));
    }
    let ports = (1..=1024).chain(4600..=4700).chain(8000..=9999).collect();
    let result = scan::scan_from(&ns, APPLIANCE_LAN, ports)?;
    let state = stack_state_during_bootstrap(lab)?;
    eprintln!("[{scenario}] LAN scan during bootstrap (stack state {state} at its end): {result}");
    let allowed = if state == "ready" {
        set(TCP_ALWAYS).union(&set(TCP_STACK)).copied().collect()
    } else {
        set(TCP_ALWAYS)
    };
    let reaches_all_it_needs = set(TCP_ALWAYS).is_subset(&result.tcp_open);
    if !reaches_all_it_needs
        || !result.tcp_open.is_subset(&allowed)
        || result.udp_answered != set(UDP_ANSWERING)
    {
        return Err(format!(
            "during the bootstrap the LAN reaches more (or less) than DHCP/TFTP/HTTP/DNS/NTP/API: {result}"
        ));
    }
    Ok(result)
}

/// The full scan after the bootstrap: the same plus the stack's TLS ports,
/// each of which answers plain HTTP with Go's "HTTP request to an HTTPS
/// server" (TLS only).
fn scan_after_bootstrap(lab: &Lab, scenario: &str) -> Result<ScanResult, String> {
    let ns = lab.names().lan.clone();
    let result = scan::scan_from(&ns, APPLIANCE_LAN, scan::all_tcp_ports())?;
    eprintln!("[{scenario}] LAN scan after bootstrap (all TCP ports): {result}");
    let want: std::collections::BTreeSet<u16> =
        set(TCP_ALWAYS).union(&set(TCP_STACK)).copied().collect();
    if result.tcp_open != want || result.udp_answered != set(UDP_ANSWERING) {
        return Err(format!(
            "after the bootstrap the LAN should reach exactly TCP {want:?} and UDP {UDP_ANSWERING:?}: {result}"
        ));
    }
    for port in [8200, 8501] {
        let url = format!("http://192.168.100.1:{port}/v1/sys/health");
        match kindling_lab::lab::http_in_netns(&lab.names().lan, "GET", &url, None) {
            Ok((400, body)) if body.contains("HTTPS server") => {}
            other => {
                return Err(format!(
                    "plain HTTP to {port} should meet TLS only, got {other:?}"
                ))
            }
        }
    }
    Ok(result)
}

/// `GET /v1/services`: every running child as its own non-root uid, with
/// exactly the capabilities its entry lists (the kernel's view, which init
/// reads from /proc/PID/status).
fn services_run_with_least_privilege(lab: &Lab, scenario: &str) -> Result<(), String> {
    let list = get_json(lab, SERVICES_URL)?;
    let services = list["services"]
        .as_array()
        .ok_or_else(|| format!("GET {SERVICES_URL}: no services: {list}"))?;
    let mut uids = std::collections::BTreeSet::new();
    for s in services {
        let name = s["name"].as_str().unwrap_or("?");
        let Some(p) = s.get("process").filter(|p| !p.is_null()) else {
            continue; // not running (the finished bootstrap one-shot)
        };
        let uid = p["uid"].as_u64().unwrap_or(0);
        eprintln!(
            "[{scenario}] {name:<8} uid {uid:<4} groups {} CapEff {} CapBnd {} no_new_privs {}",
            p["groups"], p["effective"], p["bounding"], p["no_new_privs"]
        );
        if uid == 0 || Some(uid) != s["user"].as_u64() {
            return Err(format!(
                "{name} runs as uid {uid}, its entry says {}: {s}",
                s["user"]
            ));
        }
        // Names as sets: the entry lists them in its order, the kernel by number.
        let names = |v: &Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect::<std::collections::BTreeSet<_>>()
                })
                .unwrap_or_default()
        };
        let listed = names(&s["capabilities"]);
        if names(&p["effective"]) != listed || names(&p["bounding"]) != listed {
            return Err(format!(
                "{name} holds other capabilities than its entry lists: {s}"
            ));
        }
        if p["no_new_privs"] != true {
            return Err(format!("{name} may gain privileges on exec: {s}"));
        }
        uids.insert(uid);
    }
    if uids.len() < 5 {
        return Err(format!(
            "expected net, pxe, api, consul and vault each under its own uid, saw {uids:?}"
        ));
    }
    Ok(())
}

fn print_table(scenario: &str, boots: &[Boot]) {
    eprintln!("\n[{scenario}] boot to stack ready (raw disk under OVMF, TCG, {MEMORY_MB} MiB)");
    eprintln!(
        "{:<6} {:>16} {:>22}  init's line",
        "boot", "decided (s)", "stack ready (s)"
    );
    for b in boots {
        eprintln!(
            "{:<6} {:>16.1} {:>22.1}  {}",
            b.label,
            b.times.ready.as_secs_f64(),
            b.times.stack_ready.as_secs_f64(),
            b.times.line
        );
    }
    eprintln!("\n[{scenario}] bootstrap steps (GET /v1/stack: state, ms)");
    let mut header = format!("{:<20}", "step");
    for b in boots {
        header.push_str(&format!(" {:>24}", b.label));
    }
    eprintln!("{header}");
    let Some(first) = boots.first() else {
        return;
    };
    for step in first.steps {
        let mut row = format!("{:<20}", step.name);
        for b in boots {
            let cell = b
                .steps
                .iter()
                .find(|s| s.name == step.name)
                .map(|s| format!("{} {}", s.state, s.ms))
                .unwrap_or_else(|| "-".into());
            row.push_str(&format!(" {cell:>24}"));
        }
        eprintln!("{row}");
    }
    eprintln!();
}

#[test]
#[ignore = "QEMU lab: tests/e2e"]
fn stack_reaches_ready_cold_and_warm_in_the_lab() -> Result<(), String> {
    let scenario = "stack_lab";
    if std::env::var("KINDLING_E2E_STACK").as_deref() == Ok("0") {
        eprintln!("SKIP {scenario}: KINDLING_E2E_STACK=0");
        return Ok(());
    }
    if skip_unless_root(scenario) {
        return Ok(());
    }
    let image = lab_stack_image()?;
    let mut lab = lab_for(scenario)?;
    let run_dir = lab.run_dir().to_path_buf();
    let mut spec = stack_spec(image);

    // Cold: a fresh copy of the disk, empty KINDLING-DATA.
    let app = lab.boot_appliance(&spec).map_err(|e| e.to_string())?;
    let mut during = None;
    let cold = wait_stack_ready(&mut lab, app, scenario, |lab| {
        during = Some(scan_during_bootstrap(lab, scenario)?);
        Ok(())
    })?;
    let cold_steps = stack_steps(&lab)?;
    if step_state(&cold_steps, "vault-init") != Some("done") {
        return Err(format!(
            "cold boot: vault-init should have initialised Vault in this run: {cold_steps:?}"
        ));
    }
    if step_state(&cold_steps, "vault-root") != Some("done") {
        return Err(format!(
            "cold boot: vault-root should have revoked the init's root token: {cold_steps:?}"
        ));
    }
    let after = scan_after_bootstrap(&lab, scenario)?;
    services_run_with_least_privilege(&lab, scenario)?;
    let init_secrets = init_secrets_open_with_test_identity(&lab, &run_dir)?;
    assign_and_see_it_in_kv(&lab, scenario)?;
    let logged = service_logs::kept_on_the_data_partition(&lab, scenario)?;
    service_logs::no_secret_in_any_log(&lab, &init_secrets)?;

    // Warm: cut the power (the lab has no graceful reboot) and boot the
    // same disk again. First wait out the kernel's writeback of dirty pages
    // (dirty_expire 30 s + 5 s interval): Consul writes its node-id without
    // fsync, and a power cut right after the cold boot leaves it empty
    // (Consul then refuses to start). The lab copies the image it is given,
    // so the used disk moves aside first.
    std::thread::sleep(WRITEBACK_SETTLE);
    lab.vm(app).stop();
    let serial = run_dir.join("appliance.serial.log");
    let _ = std::fs::copy(&serial, run_dir.join("appliance.cold.serial.log"));
    let used = run_dir.join("appliance-disk.after-cold.img");
    std::fs::rename(run_dir.join("appliance-disk.img"), &used)
        .map_err(|e| format!("keeping the cold boot's disk: {e}"))?;
    spec.boot = ApplianceBoot::Disk {
        image: used.clone(),
        bus: DiskBus::Virtio,
    };
    let app = lab.boot_appliance(&spec).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&used);
    let warm = wait_stack_ready(&mut lab, app, scenario, |_| Ok(()))?;
    let warm_steps = stack_steps(&lab)?;
    if step_state(&warm_steps, "vault-init") != Some("already_done") {
        return Err(format!(
            "warm boot: vault-init must find Vault initialised on the data partition: {warm_steps:?}"
        ));
    }
    // No root token on a warm boot: the bootstrap's own token carries it.
    for step in ["vault-token", "vault-root"] {
        if step_state(&warm_steps, step) != Some("already_done") {
            return Err(format!(
                "warm boot: {step} should be already done: {warm_steps:?}"
            ));
        }
    }
    services_run_with_least_privilege(&lab, scenario)?;
    // The assignment survived the power cut, in KV as on the data partition.
    wait_assignment_in_kv(&lab, ASSIGNED_MAC, "prod").map_err(|e| format!("warm boot: {e}"))?;
    service_logs::survived_the_power_cut(&lab, &logged)?;
    service_logs::followed_by_the_cli(&lab, scenario)?;
    // The mission: nodes PXE-boot, enroll and join, judged by the appliance.
    node_join::nodes_join_the_stack(&mut lab, scenario)?;
    // Keeping it for years: that cluster, backed up and restored onto a
    // fresh appliance.
    let restored = restore_lab::backup_restores_onto_a_fresh_appliance(
        &mut lab,
        app,
        &spec,
        &image.join("kindling.img"),
        &init_secrets,
        ASSIGNED_MAC,
        |lab, app| wait_stack_ready(lab, app, scenario, |_| Ok(())).map(|t| t.stack_ready),
        scenario,
    )?;

    print_table(
        scenario,
        &[
            Boot {
                label: "cold",
                times: &cold,
                steps: &cold_steps,
            },
            Boot {
                label: "warm",
                times: &warm,
                steps: &warm_steps,
            },
        ],
    );
    if let Some(d) = &during {
        eprintln!("[{scenario}] LAN port scan, during the cold bootstrap: {d}");
    }
    eprintln!("[{scenario}] LAN port scan, after it:              {after}");
    eprintln!(
        "[{scenario}] backup and restore: backup {} bytes made in {:.1}s; fresh appliance's stack ready {:.1}s after QEMU start; restore request to the restored stack ready {:.1}s (reboot, apply, Vault restore, operator unseal, Consul restore)",
        restored.backup_bytes,
        restored.backup.as_secs_f64(),
        restored.fresh_stack_ready.as_secs_f64(),
        restored.restore_to_ready.as_secs_f64()
    );
    lab.succeeded();
    Ok(())
}
