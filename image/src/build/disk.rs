//! Makes the raw GPT disk `kindling.img`: an EFI system partition with
//! systemd-boot and the image's UKI as slot A (boot counting name
//! `kindling-<ver>+3-0.efi`; room for slot B), followed by an empty ext4
//! data partition labelled KINDLING-DATA.
//!
//! Each filesystem is made in its own file and spliced into the disk file at
//! its partition's offset, so no loop device or mount is needed. It never
//! touches a block device.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::error::BuildError;
use super::tool::{MCOPY, MKFS_EXT4, MKFS_VFAT, MMD, SFDISK};

const MIB: u64 = layout::MIB;
const SECTOR: u64 = layout::SECTOR;
use kindling_install::layout::{self, ESP_TYPE, LINUX_DATA_TYPE};
// The layout's names and sizes are the installer's too (one definition).
pub use kindling_install::layout::{esp_size, loader_conf, slot_a_name, DATA_LABEL};

pub struct DiskInputs<'a> {
    pub uki: &'a Path,
    pub systemd_boot: &'a Path,
    pub version: &'a str,
    pub data_size_mib: u64,
    pub epoch: u32,
}

pub fn build(inputs: &DiskInputs<'_>, work_dir: &Path, out: &Path) -> Result<(), BuildError> {
    let uki_size = fs::metadata(inputs.uki)
        .map_err(BuildError::io("read", inputs.uki))?
        .len();
    let boot_size = fs::metadata(inputs.systemd_boot)
        .map_err(|err| BuildError::HostFileMissing {
            input: "systemd-boot".to_string(),
            path: inputs.systemd_boot.to_path_buf(),
            fix: format!("install it with `apt-get install systemd-boot-efi` ({err})"),
        })?
        .len();
    let esp_bytes = esp_size(uki_size, boot_size);
    let data_bytes = inputs.data_size_mib.max(16) * MIB;

    let esp = work_dir.join("esp.img");
    make_esp(inputs, &esp, esp_bytes, work_dir)?;
    let data = work_dir.join("data.img");
    make_data(inputs, &data, data_bytes)?;

    let esp_start = MIB;
    let data_start = esp_start + esp_bytes;
    // 1 MiB at the end leaves room for the backup GPT.
    let total = data_start + data_bytes + MIB;
    let file = File::create(out).map_err(BuildError::io("create", out))?;
    file.set_len(total).map_err(BuildError::io("size", out))?;
    drop(file);
    let script = format!(
        "label: gpt\nlabel-id: {disk}\nfirst-lba: 2048\n\
         start={s1}, size={n1}, type={ESP_TYPE}, uuid={u1}, name=\"{ESP_PARTNAME}\"\n\
         start={s2}, size={n2}, type={LINUX_DATA_TYPE}, uuid={u2}, name=\"{DATA_LABEL}\"\n",
        disk = stable_uuid(inputs.version, "disk"),
        ESP_PARTNAME = layout::ESP_PARTNAME,
        s1 = esp_start / SECTOR,
        n1 = esp_bytes / SECTOR,
        u1 = stable_uuid(inputs.version, "esp"),
        s2 = data_start / SECTOR,
        n2 = data_bytes / SECTOR,
        u2 = stable_uuid(inputs.version, "data"),
    );
    let out_arg = out.display().to_string();
    SFDISK.run(
        "writing the GPT",
        [
            "--quiet",
            "--no-reread",
            "--no-tell-kernel",
            out_arg.as_str(),
        ],
        &[],
        Some(script.as_bytes()),
    )?;
    splice(&esp, out, esp_start)?;
    splice(&data, out, data_start)?;
    Ok(())
}

fn make_esp(
    inputs: &DiskInputs<'_>,
    esp: &Path,
    size: u64,
    work_dir: &Path,
) -> Result<(), BuildError> {
    File::create(esp)
        .and_then(|f| f.set_len(size))
        .map_err(BuildError::io("create", esp))?;
    let esp_arg = esp.display().to_string();
    MKFS_VFAT.run(
        "formatting the ESP",
        [
            "-F",
            "32",
            "-n",
            "KINDLING",
            "-i",
            "4b494e44",
            esp_arg.as_str(),
        ],
        &[],
        None,
    )?;
    // mtools refuses images whose size is not a whole number of its assumed
    // tracks unless told not to check.
    let env = [("MTOOLS_SKIP_CHECK", "1")];
    let dirs = [
        "::/EFI",
        "::/EFI/BOOT",
        "::/EFI/systemd",
        "::/EFI/Linux",
        "::/loader",
        "::/loader/entries",
    ];
    let mut args = vec!["-i", esp_arg.as_str()];
    args.extend(dirs);
    MMD.run("creating ESP directories", &args, &env, None)?;
    let loader = work_dir.join("loader.conf");
    fs::write(&loader, loader_conf()).map_err(BuildError::io("write", &loader))?;
    let boot = inputs.systemd_boot.display().to_string();
    let uki = inputs.uki.display().to_string();
    let loader_arg = loader.display().to_string();
    let slot_a = format!("::/EFI/Linux/{}", slot_a_name(inputs.version));
    let copies: [(&str, &str); 4] = [
        (boot.as_str(), "::/EFI/BOOT/BOOTX64.EFI"),
        (boot.as_str(), "::/EFI/systemd/systemd-bootx64.efi"),
        (loader_arg.as_str(), "::/loader/loader.conf"),
        (uki.as_str(), slot_a.as_str()),
    ];
    for (from, to) in copies {
        MCOPY.run(
            "copying onto the ESP",
            ["-i", esp_arg.as_str(), from, to],
            &env,
            None,
        )?;
    }
    Ok(())
}

fn make_data(inputs: &DiskInputs<'_>, data: &Path, size: u64) -> Result<(), BuildError> {
    File::create(data)
        .and_then(|f| f.set_len(size))
        .map_err(BuildError::io("create", data))?;
    let uuid = stable_uuid(inputs.version, "data-fs");
    let data_arg = data.display().to_string();
    let epoch = inputs.epoch.to_string();
    MKFS_EXT4.run(
        "formatting the data partition",
        [
            "-q",
            "-F",
            "-L",
            DATA_LABEL,
            "-U",
            uuid.as_str(),
            "-m",
            "1",
            "-E",
            "root_owner=0:0",
            data_arg.as_str(),
        ],
        &[("E2FSPROGS_FAKE_TIME", epoch.as_str())],
        None,
    )?;
    Ok(())
}

/// Copies `from` into `disk` at `offset`, skipping all-zero blocks so the
/// disk file stays sparse.
fn splice(from: &Path, disk: &Path, offset: u64) -> Result<(), BuildError> {
    let mut source = File::open(from).map_err(BuildError::io("read", from))?;
    let mut target = OpenOptions::new()
        .write(true)
        .open(disk)
        .map_err(BuildError::io("open", disk))?;
    let mut buffer = vec![0u8; MIB as usize];
    let mut position = offset;
    loop {
        let mut filled = 0;
        while filled < buffer.len() {
            let n = source
                .read(&mut buffer[filled..])
                .map_err(BuildError::io("read", from))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        let chunk = &buffer[..filled];
        if chunk.iter().any(|b| *b != 0) {
            target
                .seek(SeekFrom::Start(position))
                .map_err(BuildError::io("seek", disk))?;
            target
                .write_all(chunk)
                .map_err(BuildError::io("write", disk))?;
        }
        position += filled as u64;
    }
    target.sync_all().map_err(BuildError::io("sync", disk))
}

/// A UUID derived from the version and a role, so the same inputs give the
/// same partition table.
pub fn stable_uuid(version: &str, role: &str) -> String {
    let digest = Sha256::digest(format!("kindling:{version}:{role}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_stable_and_well_formed() {
        let a = stable_uuid("1.0", "esp");
        assert_eq!(a, stable_uuid("1.0", "esp"));
        assert_ne!(a, stable_uuid("1.0", "data"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
