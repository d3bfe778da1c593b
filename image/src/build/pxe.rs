//! Writes the netboot artifacts: `pxe/vmlinuz`, `pxe/initramfs.cpio.zst`
//! and `pxe/boot.ipxe`, a script that loads both relative to its own URL,
//! so one appliance can serve another.

use std::fs;
use std::path::Path;

use super::error::BuildError;
use super::iso::link_or_copy;

pub fn ipxe_script(version: &str, cmdline: &str) -> String {
    // `initrd=` on the command line lets an EFI kernel find the initrd
    // iPXE registered; BIOS ignores it.
    format!(
        "#!ipxe\n\
         echo kindling {version}: loading kernel and initramfs\n\
         kernel vmlinuz initrd=initramfs.cpio.zst {cmdline}\n\
         initrd initramfs.cpio.zst\n\
         boot\n"
    )
}

pub fn build(
    kernel: &Path,
    initramfs: &Path,
    version: &str,
    cmdline: &str,
    dir: &Path,
) -> Result<(), BuildError> {
    fs::create_dir_all(dir).map_err(BuildError::io("create", dir))?;
    link_or_copy(kernel, &dir.join("vmlinuz"))?;
    link_or_copy(initramfs, &dir.join("initramfs.cpio.zst"))?;
    let script = dir.join("boot.ipxe");
    fs::write(&script, ipxe_script(version, cmdline)).map_err(BuildError::io("write", &script))
}
