//! The appliance boots in the lab from its real boot media — the hybrid ISO
//! as a CD under SeaBIOS, the raw GPT disk (systemd-boot + UKI) under OVMF —
//! reaches `kindling: ready`, and answers its status API from the LAN side.

use crate::{APPLIANCE_FAIL, APPLIANCE_READY_TIMEOUT, READY};
use kindling_e2e::{lab_for, lab_image, skip_unless_root};
use kindling_lab::{ApplianceBoot, ApplianceSpec, DiskBus, Lab};

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

fn boot_and_check(scenario: &str, boot: ApplianceBoot) -> Result<(), String> {
    let mut lab = lab_for(scenario)?;
    let app = lab
        .boot_appliance(&ApplianceSpec::new(boot))
        .map_err(|e| e.to_string())?;
    wait_ready_and_check_status(&mut lab, app, scenario)?;
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
    boot_and_check(scenario, ApplianceBoot::Iso(image.join("kindling.iso")))
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
        ApplianceBoot::Disk {
            image: image.join("kindling.img"),
            bus: DiskBus::Virtio,
        },
    )
}
