//! Makes a unified kernel image (UKI): systemd's EFI stub with the kernel,
//! initramfs, command line and os-release as PE sections, so UEFI firmware
//! (through systemd-boot) boots one signed-able file per A/B slot.
//!
//! Sections are placed after the stub's last section, each aligned to the
//! stub's section alignment, `.linux` last (systemd 252's stub expects the
//! kernel to be the final section). It never modifies the stub itself.
//!
//! For the ISO, [`split_for_iso`] keeps only the UKI's rest (its bytes
//! besides the kernel and initramfs) and its sum:
//! the ISO already holds the kernel and initramfs, and the installer puts
//! them back (`kindling_install::uki`).

use std::fs::{self, File};
use std::path::Path;

use kindling_install::disk_io::BootFile;
use kindling_install::uki::{self as split, Part};

use super::elf::{self, align_up};
use super::error::BuildError;
use super::tool::OBJCOPY;

pub struct UkiInputs<'a> {
    pub stub: &'a Path,
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    pub cmdline: &'a str,
    pub version: &'a str,
    pub kernel_version: &'a str,
}

pub fn build(inputs: &UkiInputs<'_>, work_dir: &Path, out: &Path) -> Result<(), BuildError> {
    let stub = fs::read(inputs.stub).map_err(|err| BuildError::HostFileMissing {
        input: "systemd EFI stub".to_string(),
        path: inputs.stub.to_path_buf(),
        fix: format!("install it with `apt-get install systemd-boot-efi` ({err})"),
    })?;
    let layout = elf::pe_layout(&stub).map_err(|reason| BuildError::StubInvalid {
        path: inputs.stub.to_path_buf(),
        reason,
    })?;

    let osrel = work_dir.join("os-release");
    let os_release = format!(
        "NAME=kindling\nID=kindling\nVERSION_ID={v}\nPRETTY_NAME=\"kindling {v}\"\nIMAGE_VERSION={v}\n",
        v = inputs.version
    );
    fs::write(&osrel, os_release).map_err(BuildError::io("write", &osrel))?;
    let cmdline = work_dir.join("cmdline");
    fs::write(&cmdline, format!("{}\0", inputs.cmdline))
        .map_err(BuildError::io("write", &cmdline))?;
    let uname = work_dir.join("uname");
    fs::write(&uname, inputs.kernel_version).map_err(BuildError::io("write", &uname))?;

    let sections: [(&str, &Path); 5] = [
        (".osrel", &osrel),
        (".cmdline", &cmdline),
        (".uname", &uname),
        (".initrd", inputs.initramfs),
        (".linux", inputs.kernel),
    ];
    let mut args: Vec<String> = Vec::new();
    let mut rva = layout.first_free_rva;
    for (name, path) in sections {
        let size = fs::metadata(path)
            .map_err(BuildError::io("read", path))?
            .len();
        args.push("--add-section".to_string());
        args.push(format!("{name}={}", path.display()));
        args.push("--change-section-vma".to_string());
        args.push(format!("{name}=0x{:x}", layout.image_base + rva));
        rva = align_up(rva + size, layout.section_alignment);
    }
    args.push(inputs.stub.display().to_string());
    args.push(out.display().to_string());
    OBJCOPY.run(
        "assembling the UKI from the systemd EFI stub",
        &args,
        &[],
        None,
    )?;
    Ok(())
}

/// Writes the UKI's rest (its bytes besides the `.initrd` and `.linux`
/// data) to `rest_out` and its sum (JSON) to `sum_out`, after proving
/// that the installer's assembly from `kernel` and `initramfs` gives back
/// the UKI byte for byte. Returns the rest's size.
pub fn split_for_iso(
    uki: &Path,
    kernel: &Path,
    initramfs: &Path,
    rest_out: &Path,
    sum_out: &Path,
) -> Result<u64, BuildError> {
    let bytes = fs::read(uki).map_err(BuildError::io("read", uki))?;
    let invalid = |reason: String| BuildError::UkiSplit {
        path: uki.to_path_buf(),
        reason,
    };
    let parts = split::split(&bytes).map_err(|e| invalid(e.to_string()))?;
    let (kernel_file, initramfs_file) = (open(kernel)?, open(initramfs)?);
    let (kernel_name, initramfs_name) = (
        kernel.display().to_string(),
        initramfs.display().to_string(),
    );
    let again = split::assemble(
        &parts.rest,
        "the UKI's rest",
        &parts.sum,
        Part {
            path: &initramfs_name,
            file: whole(initramfs, &initramfs_file)?,
        },
        Part {
            path: &kernel_name,
            file: whole(kernel, &kernel_file)?,
        },
    )
    .map_err(|e| invalid(e.to_string()))?;
    if again != bytes {
        return Err(invalid("the reassembled UKI differs".to_string()));
    }
    fs::write(rest_out, &parts.rest).map_err(BuildError::io("write", rest_out))?;
    let mut sum = serde_json::to_vec_pretty(&parts.sum).map_err(|e| invalid(e.to_string()))?;
    sum.push(b'\n');
    fs::write(sum_out, sum).map_err(BuildError::io("write", sum_out))?;
    Ok(parts.rest.len() as u64)
}

fn open(path: &Path) -> Result<File, BuildError> {
    File::open(path).map_err(BuildError::io("read", path))
}

fn whole<'a>(path: &Path, file: &'a File) -> Result<BootFile<'a>, BuildError> {
    BootFile::whole(file).map_err(BuildError::io("read", path))
}
