//! Makes the hybrid ISO (BIOS and UEFI; CD and USB stick) with
//! grub-mkrescue: GRUB on the serial console and the screen, one menu entry
//! booting the kernel with the initramfs.
//!
//! It also carries systemd-boot and the UKI for the installer: only the
//! UKI's rest and sum, since its kernel and initramfs are the ones GRUB
//! boots (`kindling_install::uki`). It only stages files for
//! grub-mkrescue; it never partitions anything.

use std::fs;
use std::path::Path;

use super::error::BuildError;
use super::tool::GRUB_MKRESCUE;

/// GRUB modules the ISO's menu uses, on both platforms (their dependencies
/// come along): the config and menu, the serial and screen terminals, the
/// Linux loader, the CD and USB filesystems and partition tables, and the
/// video drivers that hand the kernel a framebuffer for the IPMI console.
const GRUB_MODULES: &[&str] = &[
    "normal",
    "configfile",
    "echo",
    "test",
    "serial",
    "terminal",
    "linux",
    "iso9660",
    "part_gpt",
    "part_msdos",
    "fat",
    "search",
    "all_video",
];

pub fn grub_config(version: &str, cmdline: &str) -> String {
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input console serial\n\
         terminal_output console serial\n\
         set timeout=1\n\
         set default=0\n\
         menuentry \"kindling {version}\" {{\n\
         \x20 linux /boot/vmlinuz {cmdline}\n\
         \x20 initrd /boot/initramfs.cpio.zst\n\
         }}\n"
    )
}

/// What the ISO holds: the kernel and initramfs GRUB boots, and for the
/// installer (`kindlingd install`, docs/install.md) the UKI (as its rest
/// and sum, at `kindling_install::iso::UKI_REST_PATH` and `UKI_SUM_PATH`)
/// and systemd-boot (`SYSTEMD_BOOT_PATH`) it writes to a disk.
pub struct IsoInputs<'a> {
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    pub uki: &'a Path,
    pub systemd_boot: &'a Path,
    pub version: &'a str,
    pub cmdline: &'a str,
}

pub fn build(inputs: &IsoInputs<'_>, work_dir: &Path, out: &Path) -> Result<(), BuildError> {
    let IsoInputs {
        kernel,
        initramfs,
        version,
        cmdline,
        ..
    } = *inputs;
    // grub-mkrescue quietly makes a BIOS-only or UEFI-only ISO when one
    // platform's GRUB is not installed; the ISO must boot both.
    for (platform, package) in [
        ("i386-pc", "grub-pc-bin"),
        ("x86_64-efi", "grub-efi-amd64-bin"),
    ] {
        let dir = Path::new("/usr/lib/grub").join(platform);
        if !dir.is_dir() {
            return Err(BuildError::HostFileMissing {
                input: format!("GRUB for {platform}"),
                path: dir,
                fix: format!(
                    "install it with `apt-get install {package}` (the ISO boots BIOS and UEFI)"
                ),
            });
        }
    }
    let root = work_dir.join("iso-root");
    let grub_dir = root.join("boot/grub");
    fs::create_dir_all(&grub_dir).map_err(BuildError::io("create", &grub_dir))?;
    let in_iso = |path: &str| root.join(path.trim_start_matches('/'));
    link_or_copy(kernel, &in_iso(kindling_install::iso::KERNEL_PATH))?;
    link_or_copy(initramfs, &in_iso(kindling_install::iso::INITRAMFS_PATH))?;
    super::uki::split_for_iso(
        inputs.uki,
        kernel,
        initramfs,
        &in_iso(kindling_install::iso::UKI_REST_PATH),
        &in_iso(kindling_install::iso::UKI_SUM_PATH),
    )?;
    if !inputs.systemd_boot.is_file() {
        return Err(BuildError::HostFileMissing {
            input: "systemd-boot".to_string(),
            path: inputs.systemd_boot.to_path_buf(),
            fix: "install it with `apt-get install systemd-boot-efi`".to_string(),
        });
    }
    link_or_copy(
        inputs.systemd_boot,
        &in_iso(kindling_install::iso::SYSTEMD_BOOT_PATH),
    )?;
    let cfg = grub_dir.join("grub.cfg");
    fs::write(&cfg, grub_config(version, cmdline)).map_err(BuildError::io("write", &cfg))?;
    let out_arg = out.display().to_string();
    let root_arg = root.display().to_string();
    let modules = format!("--install-modules={}", GRUB_MODULES.join(" "));
    GRUB_MKRESCUE.run(
        "making the hybrid ISO",
        [
            "-o",
            out_arg.as_str(),
            // Only what the one menu entry needs, compressed; no fonts,
            // locales or themes (the menu is text on the serial console and
            // the screen). GRUB's defaults add 15 MB of files to each ISO.
            modules.as_str(),
            "--fonts=",
            "--locales=",
            "--themes=",
            "--compress=xz",
            root_arg.as_str(),
            "--",
            "-volid",
            "KINDLING",
        ],
        &[],
        None,
    )?;
    Ok(())
}

/// Hard-links inside the staging area (same filesystem), copies otherwise.
pub fn link_or_copy(from: &Path, to: &Path) -> Result<(), BuildError> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to)
        .map(|_| ())
        .map_err(BuildError::io("copy", to))
}
