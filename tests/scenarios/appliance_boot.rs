//! The appliance boots in the lab from its real boot media — the hybrid ISO
//! as a CD under SeaBIOS, the raw GPT disk (systemd-boot + UKI) under OVMF —
//! reaches `kindling: ready`, and answers its status API from the LAN side
//! over TLS (pinned to the CA fingerprint on its console) to the lab's
//! TEST-ONLY operator, and to nobody else: a LAN host without a token gets
//! 401, the read-only operator 403 on a write, plain HTTP no answer.
//! The ISO boot also starts with a lost clock and checks the LAN's time;
//! the disk boot then takes a good update and a bad one, which the
//! firmware rolls back (`update_push`).

use crate::{APPLIANCE_FAIL, APPLIANCE_READY_TIMEOUT, READY};
use kindling_e2e::{lab_for, lab_image, lab_image_without_nic_driver, skip_unless_root};
use kindling_lab::api::LabOperator;
use kindling_lab::{ApplianceBoot, ApplianceSpec, DiskBus, Lab};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

pub const STATUS_PATH: &str = "/v1/status";

/// Waits for the ready line, then asks the status API from the lab's LAN address.
pub fn wait_ready_and_check_status(
    lab: &mut Lab,
    app: kindling_lab::VmId,
    scenario: &str,
) -> Result<(), String> {
    let vm = lab.vm(app);
    let ready = vm
        .wait_for_unless(READY, Some(APPLIANCE_FAIL), APPLIANCE_READY_TIMEOUT)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "[{scenario}] appliance ready {:.1}s after QEMU start: {}",
        ready.elapsed.as_secs_f64(),
        ready.line.trim()
    );
    let (code, body) = lab
        .api_from_lan("GET", STATUS_PATH, None)
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!(
            "GET {STATUS_PATH} from the LAN answered {code}: {body}"
        ));
    }
    let status: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| format!("GET {STATUS_PATH}: not JSON ({e}): {body}"))?;
    if kindling_lab::demo::status_ready(&status) != Some(true) {
        return Err(format!(
            "GET {STATUS_PATH}: appliance does not report ready: {body}"
        ));
    }
    dashboard_draws_on_tty1(lab, app, &status, scenario)?;
    hostile_lan_host_is_refused(lab, scenario)
}

/// The console dashboard runs as kl-console (uid 405), opened tty1 and
/// answers on the serial console (ttyS0, where these lines come from): the
/// lab has no display (`-nodefaults`), so what it draws is not visible
/// here, but its one start line reaches the serial log (as every child's
/// output does) and init lists it running. It is not required, so init
/// starts it once the boot is decided: it may still be starting at `ready`.
fn dashboard_draws_on_tty1(
    lab: &mut Lab,
    app: kindling_lab::VmId,
    status: &serde_json::Value,
    scenario: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = status.clone();
    loop {
        let dashboard = status["init"]["services"]
            .as_array()
            .and_then(|services| services.iter().find(|s| s["name"] == "dashboard"))
            .cloned()
            .ok_or_else(|| format!("init lists no dashboard: {}", status["init"]))?;
        if dashboard["state"] == "running" && dashboard["user"] == 405 {
            break;
        }
        let starting = matches!(dashboard["state"].as_str(), Some("waiting" | "starting"));
        if !starting || Instant::now() > deadline {
            return Err(format!(
                "the dashboard is not running as kl-console: {dashboard}"
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
        let (code, body) = lab
            .api_from_lan("GET", STATUS_PATH, None)
            .map_err(|e| e.to_string())?;
        status = serde_json::from_str(&body)
            .map_err(|e| format!("GET {STATUS_PATH}: {code}, not JSON ({e}): {body}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = lab.vm(app).lines();
        if let Some(l) = lines.iter().find(|l| l.line.contains("dashboard| ")) {
            if !l.line.contains("drawing on /dev/tty1")
                || !l.line.contains("Enter on /dev/ttyS0 prints it")
            {
                return Err(format!("the dashboard cannot draw: {}", l.line.trim()));
            }
            eprintln!("[{scenario}] {}", l.line.trim());
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("no `dashboard|` line on the serial console".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// From the same LAN address: no token → 401 on a read and a write, the
/// read-only operator → 403 on a write, plain HTTP → no HTTP answer; the
/// assignment the write asked for is not there afterwards.
fn hostile_lan_host_is_refused(lab: &Lab, scenario: &str) -> Result<(), String> {
    const MAC: &str = "52:54:00:6b:00:77";
    let write = format!("/v1/nodes/{MAC}/profile");
    let body = r#"{"profile": "prod"}"#;
    let anonymous = lab
        .api_client_from_lan(LabOperator::Admin)
        .map_err(|e| e.to_string())?
        .with_token(None);
    let read_only = lab
        .api_client_from_lan(LabOperator::Read)
        .map_err(|e| e.to_string())?;
    let ask = |client, method: &str, path: &str, body: Option<&str>| {
        kindling_lab::api::call(client, method, path, body).map_err(|e| e.to_string())
    };
    for (who, client, method, path, payload, want) in [
        ("no token", &anonymous, "GET", STATUS_PATH, None, 401),
        (
            "no token",
            &anonymous,
            "PUT",
            write.as_str(),
            Some(body),
            401,
        ),
        (
            "the read operator",
            &read_only,
            "PUT",
            write.as_str(),
            Some(body),
            403,
        ),
    ] {
        let (code, answer) = ask(client, method, path, payload)?;
        if code != want {
            return Err(format!(
                "{who}: {method} {path} answered {code}, not {want}: {answer}"
            ));
        }
    }
    let (_, nodes) = lab
        .api_from_lan("GET", kindling_lab::demo::NODES_PATH, None)
        .map_err(|e| e.to_string())?;
    if nodes.contains(MAC) {
        return Err(format!(
            "a refused assignment reached the inventory: {nodes}"
        ));
    }
    let plain = "http://192.168.100.1:9000/healthz";
    match kindling_lab::lab::http_in_netns(&lab.names().lan, "GET", plain, None) {
        Ok((code, answer)) if (100..600).contains(&code) => {
            return Err(format!("plain HTTP was answered {code}: {answer}"))
        }
        _ => {}
    }
    eprintln!(
        "[{scenario}] hostile LAN host: 401 without a token, 403 for the read role, no plain HTTP"
    );
    api_on_the_exposed_uplink(lab, scenario)
}

/// The lab site exposes the API on its DHCP uplink: from the upstream
/// network, at the lease address, with the site's host name as the name
/// the certificate carries (the lease is not known when it is issued).
fn api_on_the_exposed_uplink(lab: &Lab, scenario: &str) -> Result<(), String> {
    let upstream = lab.upstream().ok_or("the lab has no upstream")?;
    let lease = upstream
        .leases()
        .into_iter()
        .find(|(mac, _)| mac == kindling_lab::vm::APPLIANCE_UPLINK_MAC)
        .map(|(_, ip)| ip)
        .ok_or("the appliance's uplink has no lease")?;
    let client = lab
        .api_client_from_upstream(
            LabOperator::Read,
            &format!("{lease}:9000"),
            "kindling-lab.lab.kindling.internal",
        )
        .map_err(|e| e.to_string())?;
    // The API follows the lease within its 5 s reconcile.
    let deadline = Instant::now() + std::time::Duration::from_secs(15);
    loop {
        match kindling_lab::api::call(&client, "GET", "/v1/whoami", None) {
            Ok((200, body)) if body.contains("lab-read") => break,
            other if Instant::now() > deadline => {
                return Err(format!("GET /v1/whoami on the uplink {lease}: {other:?}"))
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(500)),
        }
    }
    eprintln!("[{scenario}] the API answers on the exposed uplink {lease}:9000 (TLS, pinned)");
    Ok(())
}

/// The appliance's time, from a board whose clock was lost: the RTC starts
/// in 2001; init raises the clock to the image's build time; ntpd-rs then
/// synchronises it from the lab upstream's stratum-1 server (the host's
/// clock) and serves the LAN, which hears stratum 2 and the host's time.
fn check_time_from_a_lost_clock(
    lab: &mut Lab,
    app: kindling_lab::VmId,
    scenario: &str,
) -> Result<(), String> {
    // Printed in the early phase, long before ready: read the whole log.
    let log = lab.vm(app).serial_log().to_path_buf();
    let console = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
    let floor = console
        .lines()
        .find(|l| {
            l.contains("kindling: early: clock was ") && l.contains("behind the image's build time")
        })
        .ok_or_else(|| format!("no clock-floor line on the console ({})", log.display()))?;
    eprintln!("[{scenario}] {}", floor.trim());
    // Service lines are plain text: a serial console or a log file shows
    // colour codes as litter.
    if let Some(line) = console
        .lines()
        .find(|l| l.contains("| ") && l.contains('\x1b'))
    {
        return Err(format!("a service line carries terminal escapes: {line:?}"));
    }
    let lan_server = Ipv4Addr::new(192, 168, 100, 1);
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    while started.elapsed() < NTP_SYNC_TIMEOUT {
        match lab.ntp_from_lan(lan_server) {
            Ok(reply) if reply.synchronised() => {
                eprintln!(
                    "[{scenario}] LAN NTP synchronised {:.1}s after ready: stratum {}, offset {:+.3}s from the host",
                    started.elapsed().as_secs_f64(),
                    reply.stratum,
                    reply.offset_secs
                );
                if reply.stratum != 2 || reply.offset_secs.abs() > 2.0 {
                    return Err(format!(
                        "the appliance serves stratum {} at {:+.3}s from the host: expected stratum 2 (the lab reference is 1) within 2 s",
                        reply.stratum, reply.offset_secs
                    ));
                }
                return Ok(());
            }
            Ok(reply) => last = format!("{reply:?}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(format!(
        "the LAN got no synchronised time from {lan_server} within {NTP_SYNC_TIMEOUT:?}: last answer {last}"
    ))
}

/// Under TCG, ntpd-rs polling its source every second: a bound, not a goal.
const NTP_SYNC_TIMEOUT: Duration = Duration::from_secs(120);

fn boot_and_check(scenario: &str, spec: ApplianceSpec, time: bool) -> Result<(), String> {
    let mut lab = lab_for(scenario)?;
    let app = lab.boot_appliance(&spec).map_err(|e| e.to_string())?;
    wait_ready_and_check_status(&mut lab, app, scenario)?;
    if time {
        check_time_from_a_lost_clock(&mut lab, app, scenario)?;
    }
    lab.succeeded();
    Ok(())
}

#[test]
#[ignore = "QEMU lab: run by tests/e2e"]
fn appliance_boots_from_iso_under_seabios() -> Result<(), String> {
    let scenario = "appliance_iso_bios";
    if skip_unless_root(scenario) {
        return Ok(());
    }
    let image = lab_image()?;
    let spec = ApplianceSpec {
        rtc_base: Some("2001-01-01".into()),
        ..ApplianceSpec::new(ApplianceBoot::Iso(image.join("kindling.iso")))
    };
    boot_and_check(scenario, spec, true)
}

#[test]
#[ignore = "QEMU lab: run by tests/e2e"]
fn appliance_boots_from_raw_disk_under_ovmf() -> Result<(), String> {
    let scenario = "appliance_disk_uefi";
    if skip_unless_root(scenario) {
        return Ok(());
    }
    let image = lab_image()?;
    let bad_image = lab_image_without_nic_driver()?;
    let mut lab = lab_for(scenario)?;
    let spec = ApplianceSpec::new(ApplianceBoot::Disk {
        image: image.join("kindling.img"),
        bus: DiskBus::Virtio,
    });
    let app = lab.boot_appliance(&spec).map_err(|e| e.to_string())?;
    wait_ready_and_check_status(&mut lab, app, scenario)?;
    slot_is_blessed(&lab, scenario)?;
    let app = crate::update_push::good_update_v1_to_v2(&mut lab, app, image, scenario)?;
    crate::update_push::bad_update_rolls_back(&mut lab, app, image, bad_image, scenario)?;
    lab.succeeded();
    Ok(())
}

/// How long after ready the update agent may take to see it (it asks init
/// every 2 s) and rename the slot.
const BLESS_TIMEOUT: Duration = Duration::from_secs(30);

/// systemd-boot started slot A on trial (`+3-0` became `+2-1`); once the
/// appliance is ready the update agent drops the counter, raises the floor
/// and says so in the status.
pub fn slot_is_blessed(lab: &Lab, scenario: &str) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let (code, body) = lab
            .api_from_lan("GET", STATUS_PATH, None)
            .map_err(|e| e.to_string())?;
        let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let update = &status["services"]["update"];
        if code == 200 && update["mode"] == "blessed" {
            let entry = update["entry"].as_str().unwrap_or_default();
            let version = update["version"].as_str().unwrap_or_default();
            if entry != format!("kindling-{version}.efi") || update["floor"] != version {
                return Err(format!("blessed, but the slot or floor is wrong: {update}"));
            }
            eprintln!(
                "[{scenario}] slot blessed {:.1}s after ready was seen: {entry}, floor {version}",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() > BLESS_TIMEOUT {
            return Err(format!(
                "the update agent did not bless the slot within {} s: {update}",
                BLESS_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
