//! Updates over the wire on an appliance booted from its raw disk.
//!
//! The good update, v1 → v2: on an appliance blessed at v1, a bundle of a
//! higher version (the same image's kindling.efi, `kindling update build`)
//! is pushed from the LAN with `kindling update push`; the update agent
//! arms it and init reboots. The lab's QEMU exits on a guest reboot
//! (`-no-reboot`), so the test boots the same disk again, as the machine's
//! firmware would: systemd-boot picks the armed entry, the health gate
//! blesses it, the floor rises, and the data partition kept what was
//! written before (the API's own record of the push in its log). A LAN
//! host asks for a DHCP offer every half second meanwhile: the longest
//! silence is the LAN's downtime across the reboot (`LAN downtime: X s`).
//!
//! The bad update, v2 → v3 and back: v3 is the lab image without its NIC
//! driver, so its LAN never comes up and the required PXE service never
//! becomes ready. It is armed with three tries; each boot of it fails the
//! health gate within the lab site's `gate_timeout` and reboots; with its
//! tries used up systemd-boot boots v2 again, with no operator. v2's agent
//! reports v3 as failed (with the gate's reason) and refused, the
//! operator's push says it was rolled back, and a second push of v3 is
//! refused with nothing written.

use crate::{APPLIANCE_FAIL, APPLIANCE_READY_TIMEOUT, READY};
use kindling_e2e::release_bin;
use kindling_lab::api::{console_ca_fingerprint, lab_token, LabOperator, API_ADDRESS};
use kindling_lab::{ApplianceBoot, ApplianceSpec, DiskBus, Lab, VmId};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Upload over the lab's LAN, verify twice and write the ESP under TCG.
const PUSH_TIMEOUT: Duration = Duration::from_secs(600);
/// From the reboot request to QEMU's exit (every service stopped, sync).
const REBOOT_TIMEOUT: Duration = Duration::from_secs(120);
const BLESS_TIMEOUT: Duration = Duration::from_secs(60);
/// One try of the bad image, QEMU start to its reboot request: the boot
/// until it is decided (the agent is not required, so init starts it then;
/// at most the network phase's 60 s and the services phase's 120 s), then
/// the lab site's 60 s `gate_timeout` (~131 s in all measured under KVM).
const TRY_TIMEOUT: Duration = Duration::from_secs(360);
/// How long the push of the bad update follows it: three tries and the
/// fallback boot, with room for a slow (TCG) machine.
const TRIAL_WAIT: Duration = Duration::from_secs(1800);
/// The tries systemd-boot gives an armed image (`+3`).
const TRIES: u32 = 3;

pub(crate) fn get(lab: &Lab, path: &str) -> Result<serde_json::Value, String> {
    let (code, body) = lab
        .api_from_lan("GET", path, None)
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("GET {path}: {code}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}: {body}"))
}

/// The running version, as the update agent reports it.
pub(crate) fn running_version(lab: &Lab) -> Result<String, String> {
    let status = get(lab, "/v1/status")?;
    status["services"]["update"]["version"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no running version in the update status: {status}"))
}

/// `kindling update build` of `image`'s kindling.efi as `version`, signed
/// with the lab key beside the lab image; returns the bundle and its size.
pub(crate) fn build_bundle(
    lab: &Lab,
    lab_image: &Path,
    image: &Path,
    version: &str,
    min_from: &str,
) -> Result<(PathBuf, u64), String> {
    let bundle = lab.run_dir().join(format!("kindling-{version}.kupd"));
    let key = lab_image
        .parent()
        .map(|p| p.join("lab-key/kindling.key"))
        .ok_or("the lab image has no parent directory")?;
    let built = std::process::Command::new(release_bin("kindling"))
        .args(["update", "build", "--image"])
        .arg(image)
        .args(["--version", version, "--min-from", min_from, "--key"])
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
    Ok((bundle, size))
}

/// `kindling` run from the LAN as the lab's admin, trusting the CA the
/// appliance's console shows (that of the boot running now).
pub(crate) fn admin_cli(lab: &Lab) -> Result<std::process::Command, String> {
    let run_dir = lab.run_dir();
    let serial = run_dir.join("appliance.serial.log");
    let fingerprint =
        console_ca_fingerprint(&serial).ok_or("no CA fingerprint on the appliance's console")?;
    let mut cli = kindling_lab::cmd::in_netns(&lab.names().lan, release_bin("kindling"));
    cli.env("KINDLING_APPLIANCE", API_ADDRESS)
        .env("KINDLING_CA_FINGERPRINT", fingerprint.to_string())
        .env("KINDLING_TOKEN", lab_token(LabOperator::Admin).expose())
        .env("KINDLING_CONFIG", run_dir.join("no-cli-config.toml"));
    Ok(cli)
}

/// `kindling update push BUNDLE --wait WAIT` from the LAN as the lab's
/// admin, spawned: the agent arms the bundle and init reboots at once,
/// and the CLI waits through the reboot for the appliance to run it.
pub(crate) fn spawn_push(lab: &Lab, bundle: &Path, wait: Duration) -> Result<Child, String> {
    let mut cli = admin_cli(lab)?;
    cli.args(["update", "push"])
        .arg(bundle)
        .args(["--wait", &format!("{}s", wait.as_secs())])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A scenario that fails returns without waiting for the CLI: it must
    // not outlive the test's thread, holding the lab lock it inherited.
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl(2), which is async-signal-safe.
    unsafe {
        cli.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    cli.spawn()
        .map_err(|e| format!("kindling update push: {e}"))
}

/// Waits for init's reboot request on `app`'s console and for QEMU to exit
/// (`-no-reboot`), within `timeout`; returns the reboot request's line.
pub(crate) fn wait_reboot(
    lab: &mut Lab,
    app: VmId,
    timeout: Duration,
    what: &str,
) -> Result<String, String> {
    let vm = lab.vm(app);
    let line = vm
        .wait_for("reboot request", timeout)
        .map_err(|e| format!("no reboot {what}: {e}"))?;
    vm.wait_exit(REBOOT_TIMEOUT)
        .ok_or_else(|| format!("the appliance did not power off {what}"))?;
    Ok(line.line.trim().to_string())
}

/// Boots the lab's disk again after QEMU exited on a reboot, as the
/// machine's firmware would: the console log of the boot that ended is
/// kept as `appliance.LABEL.serial.log`.
pub(crate) fn boot_again(lab: &mut Lab, label: &str) -> Result<VmId, String> {
    let template = ApplianceSpec::new(ApplianceBoot::Disk {
        image: PathBuf::new(),
        bus: DiskBus::Virtio,
    });
    boot_again_like(lab, label, &template)
}

/// [`boot_again`] with `template`'s memory, CPUs and NIC.
pub(crate) fn boot_again_like(
    lab: &mut Lab,
    label: &str,
    template: &ApplianceSpec,
) -> Result<VmId, String> {
    let run_dir = lab.run_dir().to_path_buf();
    let _ = std::fs::copy(
        run_dir.join("appliance.serial.log"),
        run_dir.join(format!("appliance.{label}.serial.log")),
    );
    let used = run_dir.join(format!("appliance-disk.{label}.img"));
    std::fs::rename(run_dir.join("appliance-disk.img"), &used)
        .map_err(|e| format!("keeping the disk after {label}: {e}"))?;
    let mut spec = template.clone();
    spec.boot = ApplianceBoot::Disk {
        image: used.clone(),
        bus: DiskBus::Virtio,
    };
    let app = lab.boot_appliance(&spec).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&used);
    Ok(app)
}

/// The update agent's status once it blessed the running slot.
pub(crate) fn wait_blessed(
    lab: &Lab,
    since: Instant,
    what: &str,
) -> Result<serde_json::Value, String> {
    loop {
        // Right after ready the lab's LAN side may still hold a failed
        // neighbour entry for the appliance (after the no-NIC tries of the
        // bad update: `No route to host`): retried until the deadline.
        let update = match get(lab, "/v1/status") {
            Ok(status) => status["services"]["update"].clone(),
            Err(e) => serde_json::Value::String(e),
        };
        if update["mode"] == "blessed" {
            return Ok(update);
        }
        if since.elapsed() > APPLIANCE_READY_TIMEOUT + BLESS_TIMEOUT {
            return Err(format!("{what} was not blessed: {update}"));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Runs after the v1 slot is blessed; returns the VM of the second boot.
pub fn good_update_v1_to_v2(
    lab: &mut Lab,
    app: VmId,
    image: &Path,
    scenario: &str,
) -> Result<VmId, String> {
    let v1 = running_version(lab)?;
    good_update(lab, app, image, scenario, &format!("{v1}.1"))
}

/// How often the LAN's DHCP prober asks for an offer, and at most how often
/// (an hour of it: the prober never outlives a hung scenario by much).
const DHCP_PROBE_EVERY: Duration = Duration::from_millis(500);
const DHCP_PROBES_MAX: u32 = 7200;

/// Pushes the lab image as `v2` to the blessed appliance `app`, follows the
/// reboot into it and checks it blessed, the data partition intact and
/// the LAN's downtime (DHCP, as a LAN host sees it); returns the new VM.
pub(crate) fn good_update(
    lab: &mut Lab,
    app: VmId,
    image: &Path,
    scenario: &str,
    v2: &str,
) -> Result<VmId, String> {
    let v1 = running_version(lab)?;
    let v2 = v2.to_string();
    // The overlay state kept on the data partition: accepted versions and floors.
    let overlays_before = settled_overlays(lab)?;
    let (bundle, size) = build_bundle(lab, image, image, &v2, &v1)?;

    let prober = lab.dhcp_prober_on_lan(DHCP_PROBE_EVERY, DHCP_PROBES_MAX);
    let started = Instant::now();
    let cli = spawn_push(lab, &bundle, PUSH_TIMEOUT)?;
    // init stops everything and reboots; QEMU (-no-reboot) exits.
    wait_reboot(lab, app, PUSH_TIMEOUT, "after the push")?;
    let serial = lab.run_dir().join("appliance.serial.log");
    let v1_log = std::fs::read_to_string(&serial).unwrap_or_default();
    let apply = staging_to_armed(&v1_log)?;
    let rebooted = Instant::now();
    let app = boot_again(lab, "v1")?;
    lab.vm(app)
        .wait_for_unless(READY, Some(APPLIANCE_FAIL), APPLIANCE_READY_TIMEOUT)
        .map_err(|e| format!("after the update: {e}"))?;

    let update = wait_blessed(lab, rebooted, "v2")?;
    let blessed = rebooted.elapsed();
    lan_downtime(prober, scenario)?;
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
    let overlays_after = settled_overlays(lab)?;
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

/// The LAN's DHCP downtime across the update's reboot, from the prober's
/// answers: the last one before the longest silence to the first after.
fn lan_downtime(prober: kindling_lab::dhcp_probe::Prober, scenario: &str) -> Result<(), String> {
    let log = prober
        .stop()
        .map_err(|e| format!("the LAN's DHCP prober: {e}"))?;
    let (last, first) = log.longest_gap().ok_or_else(|| {
        format!(
            "the LAN's DHCP prober got {} answers to {} DISCOVERs: no downtime to measure",
            log.answered.len(),
            log.sent.len()
        )
    })?;
    eprintln!(
        "[{scenario}] LAN downtime: {:.1} s (last DHCP offer before the reboot at {:.1}s, first after at {:.1}s of the push; {} of {} DISCOVERs every {:.1} s answered)",
        (first - last).as_secs_f64(),
        last.as_secs_f64(),
        first.as_secs_f64(),
        log.answered.len(),
        log.sent.len(),
        DHCP_PROBE_EVERY.as_secs_f64()
    );
    Ok(())
}

/// The overlay state kept on the data partition once the running image's
/// own overlays are recorded. A boot from a slot that still counts tries
/// (a fresh disk's first boot, an update's) records them only when the
/// slot is blessed, through the API's 2 s poll of the agent's status; so
/// the state is read until it holds an accepted overlay and two reads 3 s
/// apart agree.
fn settled_overlays(lab: &Lab) -> Result<serde_json::Value, String> {
    let mut last = get(lab, "/v1/overlays")?["state"].clone();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_secs(3));
        let now = get(lab, "/v1/overlays")?["state"].clone();
        let recorded = now["accepted"].as_object().is_some_and(|a| !a.is_empty());
        if recorded && now == last {
            return Ok(now);
        }
        last = now;
    }
    Err(format!(
        "the image's own overlays were not recorded as accepted, or kept changing: {last}"
    ))
}

/// Runs on the appliance blessed at v2 (`app`, after the good update):
/// pushes v3 built from `bad_image` (the lab image without its NIC
/// driver), follows its tries and the fallback, then pushes it again.
/// Returns the VM of the boot back on v2.
pub fn bad_update_rolls_back(
    lab: &mut Lab,
    app: VmId,
    image: &Path,
    bad_image: &Path,
    scenario: &str,
) -> Result<VmId, String> {
    let v2 = running_version(lab)?;
    let v3 = next_version(&v2)?;
    let (bundle, size) = build_bundle(lab, image, bad_image, &v3, &v2)?;
    // v3's image carries a newer build of the lab overlay; a trial that
    // fails must leave the overlay floors as v2 had them.
    let floors = settled_overlays(lab)?["floors"].clone();

    let started = Instant::now();
    // Its CLI follows the whole trial: it ends once the appliance is back.
    let cli = spawn_push(lab, &bundle, TRIAL_WAIT)?;
    wait_reboot(lab, app, PUSH_TIMEOUT, "after the push of v3")?;
    let pushed = started.elapsed();
    let serial = lab.run_dir().join("appliance.serial.log");
    let v2_log = std::fs::read_to_string(&serial).unwrap_or_default();
    let apply = staging_to_armed(&v2_log)?;
    let armed_as = format!("kindling-{v3}+{TRIES}.efi");
    if !v2_log.contains(&format!("armed as {armed_as}")) {
        return Err(format!(
            "v3 was not armed as {armed_as} with {TRIES} tries (see {})",
            serial.display()
        ));
    }
    eprintln!(
        "[{scenario}] update {v2} -> {v3} (no {} driver): bundle {size} bytes, staging to armed {apply:.1}s (appliance clock), armed as {armed_as}, rebooting {:.1}s after the push began",
        kindling_e2e::LAB_NIC_DRIVER,
        pushed.as_secs_f64()
    );

    // Each try: systemd-boot counts it, v3 boots, its gate fails, reboot.
    let first_try = Instant::now();
    let mut label = String::from("v2");
    for n in 1..=TRIES {
        let app = boot_again(lab, &label)?;
        label = format!("v3-try{n}");
        let booted = Instant::now();
        let reboot = wait_reboot(lab, app, TRY_TIMEOUT, &format!("after try {n} of v3"))?;
        let log = std::fs::read_to_string(&serial).unwrap_or_default();
        let failed = agent_line(&log, "update: GateFailed: ").ok_or_else(|| {
            format!("try {n}: v3 rebooted without a failed health gate: {reboot}")
        })?;
        let want = if n < TRIES {
            format!("try {n} of {TRIES} failed; rebooting")
        } else {
            format!("try {n} of {TRIES} failed, none left; rebooting into {v2}")
        };
        if !reboot.contains(&want) {
            return Err(format!("try {n}: expected `{want}` in: {reboot}"));
        }
        if log.contains(READY_LINE) {
            return Err(format!("try {n}: v3 without a NIC reported ready"));
        }
        let (gating, gate_failed) = console_stamp(&log, "update: Gating: ")
            .zip(console_stamp(&log, "update: GateFailed: "))
            .ok_or("no gating and gate-failed lines of the update agent on the console")?;
        eprintln!(
            "[{scenario}] try {n} of {v3}: QEMU start to power-off {:.1}s; the agent started gating at {gating:.1}s (appliance clock, once the boot was decided), failed it {:.1}s later: {}",
            booted.elapsed().as_secs_f64(),
            gate_failed - gating,
            failed.trim()
        );
    }

    // The tries are used up: systemd-boot boots v2, nobody intervening.
    let app = boot_again(lab, &label)?;
    let back = Instant::now();
    lab.vm(app)
        .wait_for_unless(READY, Some(APPLIANCE_FAIL), APPLIANCE_READY_TIMEOUT)
        .map_err(|e| format!("after the fallback to {v2}: {e}"))?;
    wait_blessed(lab, back, &format!("{v2} after the fallback"))?;
    let fallback = first_try.elapsed();
    let update = get(lab, "/v1/update")?["agent"].clone();
    let want_entry = format!("kindling-{v2}.efi");
    let refused: Vec<&str> = update["refused"]
        .as_array()
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let last = update["last_result"].as_str().unwrap_or_default();
    if update["entry"] != want_entry.as_str()
        || update["version"] != v2.as_str()
        || update["floor"] != v2.as_str()
        || refused != [v3.as_str()]
        || !last.contains(&format!("update {v3} failed its health gate"))
        || !last.contains(&format!("went back to {v2}"))
    {
        return Err(format!(
            "after the fallback: expected {want_entry} at version and floor {v2}, {v3} refused and reported: {update}"
        ));
    }
    let floors_after = settled_overlays(lab)?["floors"].clone();
    if floors_after != floors {
        return Err(format!(
            "v3's failed trial changed the overlay floors: {floors} before its push, {floors_after} after the fallback"
        ));
    }
    eprintln!("[{scenario}] overlay floors unchanged by the failed trial of {v3}: {floors}");
    eprintln!(
        "[{scenario}] fell back to {v2} {:.1}s after the first try began ({:.1}s after the push began), with no operator: {last}",
        fallback.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // The operator's push either saw `armed` before the appliance went
    // down, or followed the trial and says it was rolled back.
    let out = wait_child(cli, Duration::from_secs(30))
        .ok_or("the push of v3 was still waiting after the fallback")?;
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let armed_seen = out.status.success() && said.contains("armed ");
    let rolled_back =
        !out.status.success() && said.contains(&format!("tried {v3} and went back to {v2}"));
    if !armed_seen && !rolled_back {
        return Err(format!(
            "the push of v3 neither saw it armed nor reported the rollback ({}): {said}",
            out.status
        ));
    }
    eprintln!(
        "[{scenario}] kindling update push of {v3}: {}",
        said.lines().last().unwrap_or_default().trim()
    );

    // A second push of v3 is refused, and nothing changes.
    let again = Instant::now();
    let out = spawn_push(lab, &bundle, Duration::from_secs(120))?
        .wait_with_output()
        .map_err(|e| format!("kindling update push: {e}"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success()
        || !said.contains("refused")
        || !said.contains(&format!("bundle {v3} failed its health gate here before"))
    {
        return Err(format!(
            "a second push of {v3} was not refused for its failed gate ({}): {said}",
            out.status
        ));
    }
    let update = get(lab, "/v1/update")?["agent"].clone();
    if update["mode"] != "blessed"
        || update["entry"] != want_entry.as_str()
        || update["push"]["state"] != "refused"
    {
        return Err(format!("after the refused push: {update}"));
    }
    let vm = lab.vm(app);
    if vm.find_seen("reboot request").is_some() || vm.exited().is_some() {
        return Err("the appliance rebooted after a refused push".into());
    }
    eprintln!(
        "[{scenario}] the second push of {v3} was refused in {:.1}s, still {want_entry}: {}",
        again.elapsed().as_secs_f64(),
        said.lines()
            .find(|l| l.contains("refused"))
            .unwrap_or_default()
            .trim()
    );
    Ok(app)
}

/// init's ready line (`kindling: ready (…)`), which a try of v3 never prints.
pub(crate) const READY_LINE: &str = "kindling: ready (";

/// `v` with its last number one higher (`1.2.1` → `1.2.2`): newer, and
/// a version the appliance never ran.
pub(crate) fn next_version(v: &str) -> Result<String, String> {
    let (head, last) = v.rsplit_once('.').unwrap_or(("", v));
    let last: u64 = last
        .parse()
        .map_err(|e| format!("version {v}: its last part is not a number: {e}"))?;
    Ok(if head.is_empty() {
        format!("{}", last + 1)
    } else {
        format!("{head}.{}", last + 1)
    })
}

/// Waits up to `timeout` for `child` to exit and returns what it wrote;
/// kills it (`None`) if it is still running then.
fn wait_child(mut child: Child, timeout: Duration) -> Option<std::process::Output> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().ok();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The agent's seconds from staging to armed, by the appliance's clock.
fn staging_to_armed(log: &str) -> Result<f64, String> {
    console_seconds(log, "Staging")
        .zip(console_seconds(log, "Armed"))
        .map(|(from, to)| to - from)
        .ok_or_else(|| "no staging and armed lines of the update agent on the console".into())
}

/// The kernel timestamp (seconds) of the update agent's first console line
/// about a push in `state` (`update: push ID: Staging: …`).
fn console_seconds(log: &str, state: &str) -> Option<f64> {
    let needle = format!(": {state}: ");
    let line = log
        .lines()
        .find(|l| l.contains("update: push ") && l.contains(&needle))?;
    stamp(line)
}

/// The first console line containing `needle`.
fn agent_line<'a>(log: &'a str, needle: &str) -> Option<&'a str> {
    log.lines().find(|l| l.contains(needle))
}

/// The kernel timestamp (seconds) of the first line containing `needle`.
fn console_stamp(log: &str, needle: &str) -> Option<f64> {
    stamp(agent_line(log, needle)?)
}

/// `[   12.345678] …` → 12.345678.
fn stamp(line: &str) -> Option<f64> {
    let stamp = line.split_once('[')?.1.split_once(']')?.0;
    stamp.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::next_version;

    #[test]
    fn the_next_version_raises_the_last_number() {
        assert_eq!(next_version("0.1.0.1").as_deref(), Ok("0.1.0.2"));
        assert_eq!(next_version("7").as_deref(), Ok("8"));
        assert!(next_version("1.x").is_err());
    }
}
