//! The appliance boots in the lab from its real boot media — the hybrid ISO
//! as a CD under SeaBIOS, the raw GPT disk (systemd-boot + UKI) under OVMF —
//! reaches `kindling: ready`, and answers its status API from the LAN side.
//! The ISO boot also starts with a lost clock and checks the LAN's time.

use crate::{APPLIANCE_FAIL, APPLIANCE_READY_TIMEOUT, READY};
use kindling_e2e::{lab_for, lab_image, skip_unless_root};
use kindling_lab::{ApplianceBoot, ApplianceSpec, DiskBus, Lab};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

pub const STATUS_URL: &str = "http://192.168.100.1:9000/v1/status";

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
        .http_from_lan("GET", STATUS_URL, None)
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!(
            "GET {STATUS_URL} from the LAN answered {code}: {body}"
        ));
    }
    let status: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| format!("GET {STATUS_URL}: not JSON ({e}): {body}"))?;
    if kindling_lab::demo::status_ready(&status) != Some(true) {
        return Err(format!(
            "GET {STATUS_URL}: appliance does not report ready: {body}"
        ));
    }
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
    boot_and_check(
        scenario,
        ApplianceSpec::new(ApplianceBoot::Disk {
            image: image.join("kindling.img"),
            bus: DiskBus::Virtio,
        }),
        false,
    )
}
