//! Writes the raw A/B layout onto a disk (or a disk image file): a GPT
//! with the ESP and the data partition, the ESP formatted FAT32 holding
//! systemd-boot, loader.conf and the slot-A UKI, the data partition ext4
//! labelled KINDLING-DATA and filled with the running state. Then reads
//! it all back ([`verify`]).
//!
//! The GPT comes from the `gpt` crate, the FAT32 from [`crate::fat32`], both written
//! through the disk's own file at the partitions' offsets; ext4 from
//! e2fsprogs' `mke2fs` (no Rust crate makes ext4), also at its offset
//! (`-E offset=`) and populated from the state directory (`-d`), so the
//! new filesystems are never mounted on the running appliance. It writes
//! only the disk it is given; whether that disk may be written is
//! [`crate::target::decide`]'s call, made before.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

pub use crate::disk_io::{BootFile, Slice, Window};
use crate::layout::{self, Layout, DATA_LABEL, ESP_PARTNAME, MIB, SECTOR};

/// What goes onto the disk.
pub struct Inputs<'a> {
    /// Slot A's UKI, whole (assembled and checked by [`crate::uki`]).
    pub uki: &'a [u8],
    pub systemd_boot: BootFile<'a>,
    /// The image version (slot A's file name).
    pub version: &'a str,
    /// The state to copy onto the data partition; `None`: an empty one.
    pub state_dir: Option<&'a Path>,
    /// e2fsprogs' mke2fs (`/bin/mke2fs` in the image).
    pub mke2fs: &'a Path,
}

/// A failed write: which step, and why.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {reason}")]
pub struct WriteError {
    pub step: &'static str,
    pub reason: String,
}

fn fail<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> WriteError {
    move |e| WriteError {
        step,
        reason: e.to_string(),
    }
}

/// `O_EXCL` on a block device: the open fails while anything (a mount,
/// another opener with O_EXCL) holds the disk or one of its partitions.
const O_EXCL: i32 = 0o200;

fn open_disk(disk: &Path) -> io::Result<File> {
    let block = std::fs::metadata(disk)?.file_type().is_block_device();
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if block {
        options.custom_flags(O_EXCL);
    }
    options.open(disk)
}

/// The largest FAT32 cluster (512 B … 4 KiB) that still gives the volume
/// the 65525 clusters FAT32 needs (with room for the FATs).
pub fn fat32_cluster(esp_size: u64) -> u32 {
    [4096u32, 2048, 1024]
        .into_iter()
        .find(|c| esp_size / u64::from(*c) >= 66_000)
        .unwrap_or(512)
}

/// Writes the layout onto `disk` (a block device, opened exclusively, or
/// an image file of at least `layout.disk_size`). `say` hears each step.
pub fn write(
    disk: &Path,
    layout: &Layout,
    inputs: &Inputs<'_>,
    say: &mut dyn FnMut(&str),
) -> Result<(), WriteError> {
    let file = open_disk(disk).map_err(fail("opening the disk"))?;
    say("erasing the old partition table and signatures");
    let zeros = vec![0u8; MIB as usize];
    file.write_all_at(&zeros, 0)
        .map_err(fail("erasing the disk's start"))?;
    file.write_all_at(&zeros, layout.disk_size - MIB)
        .map_err(fail("erasing the disk's end"))?;
    // Old filesystem signatures at the data partition's start.
    file.write_all_at(&zeros, layout.data_start)
        .map_err(fail("erasing the data partition's start"))?;

    say("writing the GPT");
    write_gpt(&file, layout).map_err(fail("writing the GPT"))?;

    say(&format!(
        "formatting the ESP (FAT32, {}) with systemd-boot and slot A",
        layout::human(layout.esp_size)
    ));
    write_esp(&file, layout, inputs).map_err(fail("writing the ESP"))?;
    file.sync_all().map_err(fail("syncing the disk"))?;
    drop(file);

    say(&format!(
        "making the data partition (ext4 {DATA_LABEL}, {}){}",
        layout::human(layout.data_size),
        if inputs.state_dir.is_some() {
            " with this boot's state"
        } else {
            ""
        }
    ));
    make_data(disk, layout, inputs).map_err(fail("making the data partition"))?;
    let file = File::open(disk).map_err(fail("opening the disk"))?;
    file.sync_all().map_err(fail("syncing the disk"))?;
    Ok(())
}

fn write_gpt(file: &File, layout: &Layout) -> Result<(), String> {
    let sectors = layout.disk_size / SECTOR;
    let mbr = gpt::mbr::ProtectiveMBR::with_lb_size(u32::try_from(sectors - 1).unwrap_or(u32::MAX));
    let mut device = file;
    mbr.overwrite_lba0(&mut device).map_err(|e| e.to_string())?;
    let mut gpt = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(device, None)
        .map_err(|e| e.to_string())?;
    gpt.add_partition_at(
        ESP_PARTNAME,
        1,
        layout.esp_start / SECTOR,
        layout.esp_size / SECTOR,
        gpt::partition_types::EFI,
        0,
    )
    .map_err(|e| format!("the ESP: {e}"))?;
    gpt.add_partition_at(
        DATA_LABEL,
        2,
        layout.data_start / SECTOR,
        layout.data_size / SECTOR,
        gpt::partition_types::LINUX_FS,
        0,
    )
    .map_err(|e| format!("the data partition: {e}"))?;
    gpt.write().map_err(|e| e.to_string())?;
    Ok(())
}

fn write_esp(file: &File, layout: &Layout, inputs: &Inputs<'_>) -> io::Result<()> {
    use crate::fat32::{Content, Node};
    let dir = |children: Vec<(&str, Node<'static>)>| -> Node<'static> {
        Node::Dir(
            children
                .into_iter()
                .map(|(n, c)| (n.to_string(), c))
                .collect(),
        )
    };
    let boot = || Node::File(Content::File(inputs.systemd_boot));
    let tree: Vec<(String, Node<'_>)> = vec![
        (
            "EFI".to_string(),
            Node::Dir(vec![
                (
                    "BOOT".to_string(),
                    Node::Dir(vec![("BOOTX64.EFI".to_string(), boot())]),
                ),
                (
                    "systemd".to_string(),
                    Node::Dir(vec![("systemd-bootx64.efi".to_string(), boot())]),
                ),
                (
                    "Linux".to_string(),
                    Node::Dir(vec![(
                        layout::slot_a_name(inputs.version),
                        Node::File(Content::Slice(inputs.uki)),
                    )]),
                ),
            ]),
        ),
        (
            "loader".to_string(),
            Node::Dir(vec![
                (
                    "loader.conf".to_string(),
                    Node::File(Content::Bytes(layout::loader_conf().as_bytes().to_vec())),
                ),
                ("entries".to_string(), dir(Vec::new())),
            ]),
        ),
    ];
    crate::fat32::write(
        &Window::new(file, layout.esp_start, layout.esp_size),
        layout.esp_size,
        layout.esp_start / SECTOR,
        u64::from(fat32_cluster(layout.esp_size)),
        layout::ESP_LABEL,
        0x4b49_4e44,
        &tree,
    )?;
    Ok(())
}

/// The mke2fs command that makes the data partition at its offset.
pub fn mke2fs_command(disk: &Path, layout: &Layout, inputs: &Inputs<'_>) -> Command {
    let mut cmd = Command::new(inputs.mke2fs);
    cmd.args(["-q", "-F", "-t", "ext4", "-L", DATA_LABEL, "-m", "1", "-E"])
        .arg(format!(
            "offset={},nodiscard,root_owner=0:0",
            layout.data_start
        ));
    if let Some(state) = inputs.state_dir {
        cmd.arg("-d").arg(state);
    }
    cmd.arg(disk)
        .arg(format!("{}k", layout.data_size / 1024))
        // Its built-in profile (the image has no /etc/mke2fs.conf).
        .env_clear()
        .env("PATH", "/bin")
        .env("MKE2FS_CONFIG", "/nonexistent/mke2fs.conf")
        .stdin(Stdio::null());
    cmd
}

fn make_data(disk: &Path, layout: &Layout, inputs: &Inputs<'_>) -> Result<(), String> {
    let out = mke2fs_command(disk, layout, inputs)
        .output()
        .map_err(|e| format!("running {}: {e}", inputs.mke2fs.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}{}",
            inputs.mke2fs.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// What [`verify`] read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// (GPT name, first byte, size in bytes) per partition, in order.
    pub partitions: Vec<(String, u64, u64)>,
    /// Files on the ESP with their sizes.
    pub esp_files: Vec<(String, u64)>,
    /// The data partition's ext label.
    pub data_label: Option<String>,
}

/// Reads the layout back from `disk`: the GPT (with the `gpt` crate), the
/// ESP's files (with `fatfs`; slot A's UKI byte for byte), the data
/// partition's ext4 label; fails when any of them is not what [`write`]
/// makes.
pub fn verify(disk: &Path, layout: &Layout, inputs: &Inputs<'_>) -> Result<Written, String> {
    let file = File::open(disk).map_err(|e| format!("opening {}: {e}", disk.display()))?;
    let gpt = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .open_from_device(&file)
        .map_err(|e| format!("reading the GPT: {e}"))?;
    let partitions: Vec<(String, u64, u64)> = gpt
        .partitions()
        .values()
        .filter(|p| p.is_used())
        .map(|p| {
            (
                p.name.clone(),
                p.first_lba * SECTOR,
                (p.last_lba + 1 - p.first_lba) * SECTOR,
            )
        })
        .collect();
    let want = vec![
        (ESP_PARTNAME.to_string(), layout.esp_start, layout.esp_size),
        (DATA_LABEL.to_string(), layout.data_start, layout.data_size),
    ];
    if partitions != want {
        return Err(format!(
            "the GPT reads back as {partitions:?}, not {want:?}"
        ));
    }
    let fs = fatfs::FileSystem::new(
        Slice::new(&file, layout.esp_start, layout.esp_size),
        fatfs::FsOptions::new(),
    )
    .map_err(|e| format!("reading the ESP: {e}"))?;
    if fs.fat_type() != fatfs::FatType::Fat32 {
        return Err(format!("the ESP is {:?}, not FAT32", fs.fat_type()));
    }
    let slot_a = format!("EFI/Linux/{}", layout::slot_a_name(inputs.version));
    let mut esp_files = Vec::new();
    for (path, size) in [
        ("EFI/BOOT/BOOTX64.EFI", inputs.systemd_boot.extent.size),
        (
            "EFI/systemd/systemd-bootx64.efi",
            inputs.systemd_boot.extent.size,
        ),
        ("loader/loader.conf", layout::loader_conf().len() as u64),
        (slot_a.as_str(), inputs.uki.len() as u64),
    ] {
        let mut f = fs
            .root_dir()
            .open_file(path)
            .map_err(|e| format!("the ESP has no {path}: {e}"))?;
        let got = f
            .seek(SeekFrom::End(0))
            .map_err(|e| format!("reading {path} on the ESP: {e}"))?;
        if got != size {
            return Err(format!("{path} on the ESP is {got} bytes, not {size}"));
        }
        esp_files.push((path.to_string(), got));
    }
    // Slot A byte for byte, a chunk at a time (the UKI is tens of MiB).
    let mut slot = fs
        .root_dir()
        .open_file(&slot_a)
        .map_err(|e| format!("the ESP has no {slot_a}: {e}"))?;
    let mut chunk = vec![0u8; MIB as usize];
    let mut at = 0usize;
    loop {
        let n = io::Read::read(&mut slot, &mut chunk)
            .map_err(|e| format!("reading {slot_a} on the ESP: {e}"))?;
        if n == 0 {
            break;
        }
        let want = inputs.uki.get(at..).unwrap_or_default();
        if let Some(i) = (0..n).find(|i| want.get(*i) != chunk.get(*i)) {
            return Err(format!(
                "{slot_a} on the ESP reads back with other bytes than the UKI written, \
                 from byte {} on",
                at + i
            ));
        }
        at += n;
    }
    if at != inputs.uki.len() {
        return Err(format!(
            "{slot_a} on the ESP reads back {at} bytes, not {}",
            inputs.uki.len()
        ));
    }
    let mut superblock = [0u8; 1024];
    file.read_exact_at(&mut superblock, layout.data_start + 1024)
        .map_err(|e| format!("reading the data partition: {e}"))?;
    let data_label = ext_label(&superblock);
    if data_label.as_deref() != Some(DATA_LABEL) {
        return Err(format!(
            "the data partition's label reads back as {data_label:?}, not {DATA_LABEL}"
        ));
    }
    Ok(Written {
        partitions,
        esp_files,
        data_label,
    })
}

/// The volume label of an ext2/3/4 superblock (the 1024 bytes at 1024).
pub fn ext_label(block: &[u8]) -> Option<String> {
    if block.get(0x38..0x3a) != Some(&[0x53, 0xEF][..]) {
        return None;
    }
    let raw = block.get(0x78..0x88)?;
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    Some(String::from_utf8_lossy(&raw[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fat32_clusters_fit_the_esp() {
        assert_eq!(fat32_cluster(64 * MIB), 512);
        assert_eq!(fat32_cluster(108 * MIB), 1024);
        assert_eq!(fat32_cluster(600 * MIB), 4096);
    }

    #[test]
    fn a_slice_stays_inside_its_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0u8; 100]).unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut slice = Slice::new(&file, 10, 20);
        slice.write_all(b"0123456789").unwrap();
        assert_eq!(slice.seek(SeekFrom::End(-5)).unwrap(), 15);
        assert!(slice.write_all(b"toolong").is_err());
        assert!(slice.seek(SeekFrom::Start(21)).is_err());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[10..20], b"0123456789");
        assert_eq!(bytes[9], 0);
    }
}
