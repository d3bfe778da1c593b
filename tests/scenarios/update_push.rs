//! The good update, v1 → v2, over the wire: on an appliance booted from
//! its raw disk and blessed at v1, a bundle of a higher version (the same
//! image's kindling.efi, `kindling update build`) is pushed from the LAN
//! with `kindling update push`; the update agent arms it and init reboots.
//! The lab's QEMU exits on a guest reboot (`-no-reboot`), so the test
//! boots the same disk again, as the machine's firmware would: systemd-boot
//! picks the armed entry, the health gate blesses it, the floor rises, and
//! the data partition kept what was written before (the API's own record
//! of the push in its log).

use crate::{APPLIANCE_FAIL, APPLIANCE_READY_TIMEOUT, READY};
use kindling_e2e::release_bin;
use kindling_lab::api::{console_ca_fingerprint, lab_token, LabOperator, API_ADDRESS};
use kindling_lab::{ApplianceBoot, ApplianceSpec, DiskBus, Lab, VmId};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Upload over the lab's LAN, verify twice and write the ESP under TCG.
const PUSH_TIMEOUT: Duration = Duration::from_secs(600);
/// From the reboot request to QEMU's exit (every service stopped, sync).
const REBOOT_TIMEOUT: Duration = Duration::from_secs(120);
const BLESS_TIMEOUT: Duration = Duration::from_secs(60);

fn get(lab: &Lab, path: &str) -> Result<serde_json::Value, String> {
    let (code, body) = lab
        .api_from_lan("GET", path, None)
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("GET {path}: {code}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}: {body}"))
}

/// Runs after the v1 slot is blessed; returns the VM of the second boot.
pub fn good_update_v1_to_v2(
    lab: &mut Lab,
    app: VmId,
    image: &Path,
    scenario: &str,
) -> Result<VmId, String> {
    let before = get(lab, "/v1/status")?;
    let v1 = before["services"]["update"]["version"]
        .as_str()
        .ok_or_else(|| format!("no running version in the update status: {before}"))?
        .to_string();
    let v2 = format!("{v1}.1");
    // The overlay state kept on the data partition: accepted versions and floors.
    let overlays_before = get(lab, "/v1/overlays")?["state"].clone();

    let run_dir = lab.run_dir().to_path_buf();
    let bundle = run_dir.join(format!("kindling-{v2}.kupd"));
    let key = image
        .parent()
        .map(|p| p.join("lab-key/kindling.key"))
        .ok_or("the lab image has no parent directory")?;
    let built = std::process::Command::new(release_bin("kindling"))
        .args(["update", "build", "--image"])
        .arg(image)
        .args(["--version", &v2, "--min-from", &v1, "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&bundle)
        .output()
        .map_err(|e| format!("kindling update build: {e}"))?;
    if !built.status.success() {
        return Err(format!(
            "kindling update build: {}",
            String::from_utf8_lossy(&built.stderr)
        ));
    }
    let size = std::fs::metadata(&bundle).map(|m| m.len()).unwrap_or(0);

    let serial = run_dir.join("appliance.serial.log");
    let fingerprint =
        console_ca_fingerprint(&serial).ok_or("no CA fingerprint on the appliance's console")?;
    let started = Instant::now();
    // Spawned: the agent arms the bundle and init reboots at once, and the
    // CLI waits through the reboot for the appliance to run the new version.
    let cli = kindling_lab::cmd::in_netns(&lab.names().lan, release_bin("kindling"))
        .args(["update", "push"])
        .arg(&bundle)
        .args(["--wait", &format!("{}s", PUSH_TIMEOUT.as_secs())])
        .env("KINDLING_APPLIANCE", API_ADDRESS)
        .env("KINDLING_CA_FINGERPRINT", fingerprint.to_string())
        .env("KINDLING_TOKEN", lab_token(LabOperator::Admin).expose())
        .env("KINDLING_CONFIG", run_dir.join("no-cli-config.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("kindling update push: {e}"))?;

    // init stops everything and reboots; QEMU (-no-reboot) exits.
    let vm = lab.vm(app);
    vm.wait_for("reboot request", PUSH_TIMEOUT)
        .map_err(|e| format!("no reboot after the push: {e}"))?;
    vm.wait_exit(REBOOT_TIMEOUT)
        .ok_or("the appliance did not reboot after its update was armed")?;
    let v1_log = std::fs::read_to_string(&serial).unwrap_or_default();
    let apply = console_seconds(&v1_log, "Staging")
        .zip(console_seconds(&v1_log, "Armed"))
        .map(|(from, to)| to - from)
        .ok_or("no staging and armed lines of the update agent on the console")?;
    let rebooted = Instant::now();
    let _ = std::fs::copy(&serial, run_dir.join("appliance.v1.serial.log"));
    let used = run_dir.join("appliance-disk.v1.img");
    std::fs::rename(run_dir.join("appliance-disk.img"), &used)
        .map_err(|e| format!("keeping the updated disk: {e}"))?;
    let spec = ApplianceSpec::new(ApplianceBoot::Disk {
        image: used.clone(),
        bus: DiskBus::Virtio,
    });
    let app = lab.boot_appliance(&spec).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&used);
    lab.vm(app)
        .wait_for_unless(READY, Some(APPLIANCE_FAIL), APPLIANCE_READY_TIMEOUT)
        .map_err(|e| format!("after the update: {e}"))?;

    let update = loop {
        let status = get(lab, "/v1/status")?;
        let update = status["services"]["update"].clone();
        if update["mode"] == "blessed" {
            break update;
        }
        if rebooted.elapsed() > APPLIANCE_READY_TIMEOUT + BLESS_TIMEOUT {
            return Err(format!("v2 was not blessed: {update}"));
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let blessed = rebooted.elapsed();
    let pushed = cli
        .wait_with_output()
        .map_err(|e| format!("kindling update push: {e}"))?;
    let stdout = String::from_utf8_lossy(&pushed.stdout);
    if !pushed.status.success() {
        return Err(format!(
            "kindling update push ({}): {stdout}{}",
            pushed.status,
            String::from_utf8_lossy(&pushed.stderr)
        ));
    }
    eprintln!(
        "[{scenario}] kindling update push, {:.1}s in all:\n{}",
        started.elapsed().as_secs_f64(),
        stdout.trim()
    );
    let want_entry = format!("kindling-{v2}.efi");
    if update["entry"] != want_entry.as_str()
        || update["version"] != v2.as_str()
        || update["floor"] != v2.as_str()
    {
        return Err(format!(
            "after the update: expected {want_entry} at version and floor {v2}: {update}"
        ));
    }
    // The data partition came through: the overlays' floors as before,
    // and the API's record of the push, written before the reboot.
    let overlays_after = get(lab, "/v1/overlays")?["state"].clone();
    if overlays_after != overlays_before {
        return Err(format!(
            "the overlay state on the data partition changed across the update: {overlays_before} -> {overlays_after}"
        ));
    }
    let api_log = get(lab, "/v1/logs/api?lines=100000")?;
    if !api_log["lines"]
        .to_string()
        .contains("POST /v1/update -> 202")
    {
        return Err("the API's log on the data partition lost the push's record".into());
    }
    eprintln!(
        "[{scenario}] update {v1} -> {v2}: bundle {size} bytes, agent staging to armed {apply:.1}s (appliance clock), reboot to blessed {:.1}s; {} at floor {v2}, overlays and logs intact",
        blessed.as_secs_f64(),
        want_entry
    );
    Ok(app)
}

/// The kernel timestamp (seconds) of the update agent's first console line
/// about a push in `state` (`update: push ID: Staging: …`).
fn console_seconds(log: &str, state: &str) -> Option<f64> {
    let needle = format!(": {state}: ");
    let line = log
        .lines()
        .find(|l| l.contains("update: push ") && l.contains(&needle))?;
    let stamp = line.split_once('[')?.1.split_once(']')?.0;
    stamp.trim().parse().ok()
}
