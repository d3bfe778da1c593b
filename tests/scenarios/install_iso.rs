//! The installer in the lab: the appliance boots the lab image's kernel
//! and initramfs with its ISO attached as a disk (as a USB stick written
//! from it is), a blank target disk and `kindling.install=` naming it. It
//! assembles slot A's UKI from the ISO (the UKI's rest, the initramfs and
//! the kernel, checked by sha256), writes the disk and reboots. Then the
//! disk alone boots under OVMF (systemd-boot, slot A), reaches ready and
//! blesses the slot: the assembled UKI is one that boots.

use crate::{APPLIANCE_FAIL, APPLIANCE_READY_TIMEOUT, READY};
use kindling_e2e::{lab_for, lab_image, skip_unless_root};
use kindling_lab::{ApplianceBoot, ApplianceSpec, DiskBus};
use std::time::Duration;

/// Under TCG: boot to the install, the install (mke2fs, the ESP), the
/// reboot. A bound against a hang, not a goal.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Above the installer's minimum (two UKIs on the ESP + 256 MiB data).
const TARGET_SIZE: u64 = 512 << 20;

#[test]
#[ignore = "QEMU lab: run by tests/e2e"]
fn the_iso_installs_to_a_blank_disk_that_then_boots() -> Result<(), String> {
    let scenario = "install_from_iso";
    if skip_unless_root(scenario) {
        return Ok(());
    }
    let image = lab_image()?;
    let mut lab = lab_for(scenario)?;
    let target = lab.run_dir().join("target-disk.img");
    std::fs::File::create(&target)
        .and_then(|f| f.set_len(TARGET_SIZE))
        .map_err(|e| format!("making {}: {e}", target.display()))?;
    let spec = ApplianceSpec::new(ApplianceBoot::Install {
        kernel: image.join("vmlinuz"),
        initrd: image.join("initramfs.cpio.zst"),
        append: "kindling.install=/dev/disk/by-id/virtio-target".into(),
        medium: image.join("kindling.iso"),
        target: target.clone(),
    });
    let app = lab.boot_appliance(&spec).map_err(|e| e.to_string())?;
    let vm = lab.vm(app);
    let done = vm
        .wait_for_unless(
            "install: done:",
            Some(r"install: refused:|install: FAILED:|Kernel panic"),
            INSTALL_TIMEOUT,
        )
        .map_err(|e| format!("the install did not finish: {e}"))?;
    eprintln!(
        "[{scenario}] installed {:.1}s after QEMU start: {}",
        done.elapsed.as_secs_f64(),
        done.line.trim()
    );
    vm.wait_for("reboot request", Duration::from_secs(60))
        .map_err(|e| format!("no reboot after the install: {e}"))?;
    vm.wait_exit(Duration::from_secs(60))
        .ok_or("the appliance did not power off after the install")?;
    let run_dir = lab.run_dir().to_path_buf();
    let _ = std::fs::copy(
        run_dir.join("appliance.serial.log"),
        run_dir.join("appliance.install.serial.log"),
    );

    // The disk alone, as the machine's firmware boots it next.
    let spec = ApplianceSpec::new(ApplianceBoot::Disk {
        image: target.clone(),
        bus: DiskBus::Virtio,
    });
    let app = lab.boot_appliance(&spec).map_err(|e| e.to_string())?;
    let ready = lab
        .vm(app)
        .wait_for_unless(READY, Some(APPLIANCE_FAIL), APPLIANCE_READY_TIMEOUT)
        .map_err(|e| format!("the installed disk did not boot to ready: {e}"))?;
    eprintln!(
        "[{scenario}] the installed disk is ready {:.1}s after QEMU start: {}",
        ready.elapsed.as_secs_f64(),
        ready.line.trim()
    );
    crate::appliance_boot::slot_is_blessed(&lab, scenario)?;
    lab.succeeded();
    Ok(())
}
