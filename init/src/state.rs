//! The state phase: find the data partition (ext4 label or GPT partition name
//! `KINDLING-DATA`) and mount it at `/var/lib/kindling`; without one, a tmpfs.
//!
//! Owns recognising the partition by reading the ext4 superblock directly (no
//! blkid, no udev). It never formats, fscks or writes a device.

use std::fs::File;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, MsFlags};

/// ext4 superblock: at byte 1024; magic at +0x38, volume name (16 bytes) at +0x78.
const SUPERBLOCK: u64 = 1024;
const MAGIC_OFFSET: usize = 0x38;
const LABEL_OFFSET: usize = 0x78;
const EXT_MAGIC: u16 = 0xEF53;

/// Volume label of an ext2/3/4 superblock (`block` = the 1024 bytes at offset 1024).
pub fn ext4_label(block: &[u8]) -> Option<String> {
    let magic = block.get(MAGIC_OFFSET..MAGIC_OFFSET + 2)?;
    if u16::from_le_bytes([magic[0], magic[1]]) != EXT_MAGIC {
        return None;
    }
    let raw = block.get(LABEL_OFFSET..LABEL_OFFSET + 16)?;
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Some(String::from_utf8_lossy(&raw[..end]).into_owned())
}

/// Reads the ext label of a device or image file; `None` if not ext2/3/4.
pub fn read_label(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    let mut block = [0u8; 1024];
    file.read_exact_at(&mut block, SUPERBLOCK).ok()?;
    ext4_label(&block)
}

/// A block device the kernel knows, from /sys/class/block.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockDevice {
    pub name: String,
    pub major: u64,
    pub minor: u64,
    /// GPT partition name, if any.
    pub partname: Option<String>,
}

/// Every block device in `<sys>/class/block`.
pub fn block_devices(sys: &Path) -> Vec<BlockDevice> {
    let Ok(entries) = std::fs::read_dir(sys.join("class/block")) else {
        return Vec::new();
    };
    let mut out: Vec<BlockDevice> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let dev = std::fs::read_to_string(e.path().join("dev")).ok()?;
            let (major, minor) = dev.trim().split_once(':')?;
            let uevent = std::fs::read_to_string(e.path().join("uevent")).unwrap_or_default();
            let partname = uevent
                .lines()
                .find_map(|l| l.strip_prefix("PARTNAME="))
                .map(str::to_string);
            Some(BlockDevice {
                name,
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                partname,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A device node for `dev`: `/dev/<name>` if it is the right block device,
/// else one made with mknod under `node_dir`.
fn device_node(dev: &BlockDevice, node_dir: &Path) -> Option<PathBuf> {
    let rdev = nix::sys::stat::makedev(dev.major, dev.minor);
    let standard = Path::new("/dev").join(&dev.name);
    if let Ok(meta) = std::fs::metadata(&standard) {
        if meta.file_type().is_block_device() && meta.rdev() == rdev {
            return Some(standard);
        }
    }
    let _ = std::fs::create_dir_all(node_dir);
    let node = node_dir.join(&dev.name);
    let _ = std::fs::remove_file(&node);
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        rdev,
    )
    .ok()?;
    Some(node)
}

/// The data partition's device node, waiting up to `wait` for it to appear.
pub fn find_data_partition(label: &str, wait: Duration) -> Option<PathBuf> {
    let deadline = Instant::now() + wait;
    loop {
        for dev in block_devices(Path::new("/sys")) {
            let Some(node) = device_node(&dev, Path::new("/run/kindling/dev")) else {
                continue;
            };
            let fs_label = read_label(&node);
            let by_fs_label = fs_label.as_deref() == Some(label);
            let by_partname = dev.partname.as_deref() == Some(label) && fs_label.is_some();
            if by_fs_label || by_partname {
                return Some(node);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where the state lives after the phase.
#[derive(Debug, PartialEq)]
pub enum StateOutcome {
    /// The data partition is mounted.
    Persistent(PathBuf),
    /// A tmpfs; the reason says why.
    RamOnly(String),
}

/// Runs the state phase. `tmpfs` says whether to mount a tmpfs when there is no
/// data partition (on the appliance; a test or benchmark run keeps the directory).
pub fn run(label: Option<&str>, mount_point: &Path, wait: Duration, tmpfs: bool) -> StateOutcome {
    let _ = std::fs::create_dir_all(mount_point);
    let reason = match label {
        None => "no data partition configured".to_string(),
        Some(label) => match find_data_partition(label, wait) {
            Some(device) => {
                let flags = MsFlags::MS_NOATIME | MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
                match mount(
                    Some(&device),
                    mount_point,
                    Some("ext4"),
                    flags,
                    None::<&str>,
                ) {
                    Ok(()) => return StateOutcome::Persistent(device),
                    Err(e) => format!("mounting {} (label {label}) failed: {e}", device.display()),
                }
            }
            None => format!("no partition labelled {label} found"),
        },
    };
    if !tmpfs {
        return StateOutcome::RamOnly(reason);
    }
    let flags = MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
    match mount(
        Some("tmpfs"),
        mount_point,
        Some("tmpfs"),
        flags,
        Some("mode=0755"),
    ) {
        Ok(()) => StateOutcome::RamOnly(reason),
        Err(e) => StateOutcome::RamOnly(format!(
            "{reason}; tmpfs on {} failed too: {e}",
            mount_point.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn label_from_a_real_mkfs_ext4_image() {
        let dir = std::env::temp_dir().join(format!("ki-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("data.img");
        File::create(&image).unwrap().set_len(8 << 20).unwrap();
        let status = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "KINDLING-DATA"])
            .arg(&image)
            .status();
        match status {
            Ok(s) if s.success() => {
                assert_eq!(read_label(&image).as_deref(), Some("KINDLING-DATA"));
            }
            _ => eprintln!("skipping: mkfs.ext4 not available (e2fsprogs)"),
        }
        // Not ext: no label.
        let plain = dir.join("plain.img");
        std::fs::write(&plain, vec![0u8; 4096]).unwrap();
        assert_eq!(read_label(&plain), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn superblock_parsing() {
        let mut block = [0u8; 1024];
        block[MAGIC_OFFSET..MAGIC_OFFSET + 2].copy_from_slice(&EXT_MAGIC.to_le_bytes());
        block[LABEL_OFFSET..LABEL_OFFSET + 4].copy_from_slice(b"DATA");
        assert_eq!(ext4_label(&block).as_deref(), Some("DATA"));
        block[LABEL_OFFSET..LABEL_OFFSET + 16].copy_from_slice(b"0123456789abcdef");
        assert_eq!(ext4_label(&block).as_deref(), Some("0123456789abcdef"));
        assert_eq!(ext4_label(&block[..10]), None);
    }

    #[test]
    fn host_block_devices_are_listed_with_numbers() {
        for dev in block_devices(Path::new("/sys")) {
            assert!(!dev.name.is_empty());
            assert!(dev.major > 0 || dev.minor > 0, "{dev:?}");
        }
    }
}
