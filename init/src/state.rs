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
pub(crate) fn device_node(dev: &BlockDevice, node_dir: &Path) -> Option<PathBuf> {
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

/// How long the block-device set must stay unchanged before the search ends
/// (when nothing else may still bring a device).
pub const SETTLE: Duration = Duration::from_millis(200);
/// How often the block devices are looked at again.
const POLL: Duration = Duration::from_millis(50);

/// Why a device may still appear although the block-device set looks settled:
/// USB mass storage (a USB stick is a primary boot medium) enumerates
/// asynchronously, 1–3 s after its host controller, while PCI storage
/// (virtio_blk, nvme, ahci) registers its disks during the probe in the early
/// phase. `None`: nothing on USB is pending.
pub fn usb_storage_pending(sys: &Path) -> Option<String> {
    let Ok(entries) = std::fs::read_dir(sys.join("bus/usb/devices")) else {
        return None;
    };
    let mut root_hubs = Vec::new();
    let mut storage = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("usb") {
            root_hubs.push(name);
        } else if std::fs::read_to_string(entry.path().join("bInterfaceClass"))
            .is_ok_and(|class| class.trim() == "08")
        {
            storage.push((name, entry.path()));
        }
    }
    if root_hubs.is_empty() {
        return None;
    }
    root_hubs.sort();
    if storage.is_empty() {
        return Some(format!(
            "USB host controller(s) {} present, no mass-storage device yet",
            root_hubs.join(" ")
        ));
    }
    // Block devices live below their interface in /sys/devices.
    let block_paths: Vec<PathBuf> = std::fs::read_dir(sys.join("class/block"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::canonicalize(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    storage.sort();
    let without_disk: Vec<String> = storage
        .into_iter()
        .filter(|(_, path)| match std::fs::canonicalize(path) {
            Ok(interface) => !block_paths.iter().any(|b| b.starts_with(&interface)),
            Err(_) => false,
        })
        .map(|(name, _)| name)
        .collect();
    if without_disk.is_empty() {
        None
    } else {
        Some(format!(
            "USB mass-storage interface(s) {} without a block device yet",
            without_disk.join(" ")
        ))
    }
}

/// What the search for the data partition found, and what it waited for.
#[derive(Debug, PartialEq)]
pub struct Search {
    pub device: Option<PathBuf>,
    /// For the log: how the search ended.
    pub waited: String,
}

/// Looks for the data partition under `sys`, making device nodes under
/// `node_dir` where `/dev` has none. Ends as soon as it is found; without it,
/// once the block devices have not changed for `settle` and no USB storage is
/// pending, or at `wait` at the latest.
pub fn search_data_partition(
    sys: &Path,
    node_dir: &Path,
    label: &str,
    wait: Duration,
    settle: Duration,
) -> Search {
    let started = Instant::now();
    let deadline = started + wait;
    let mut seen: Vec<BlockDevice> = Vec::new();
    let mut stable_since = started;
    loop {
        let devices = block_devices(sys);
        for dev in &devices {
            let Some(node) = device_node(dev, node_dir) else {
                continue;
            };
            let fs_label = read_label(&node);
            let by_fs_label = fs_label.as_deref() == Some(label);
            let by_partname = dev.partname.as_deref() == Some(label) && fs_label.is_some();
            if by_fs_label || by_partname {
                return Search {
                    device: Some(node),
                    waited: format!("found after {} ms", started.elapsed().as_millis()),
                };
            }
        }
        let now = Instant::now();
        if devices != seen {
            seen = devices;
            stable_since = now;
        }
        let names = || {
            let list: Vec<&str> = seen.iter().map(|d| d.name.as_str()).collect();
            if list.is_empty() {
                "none".to_string()
            } else {
                list.join(" ")
            }
        };
        let pending = usb_storage_pending(sys);
        if now >= deadline {
            return Search {
                device: None,
                waited: match pending {
                    Some(why) => format!(
                        "waited the full {} ms for USB storage ({why}); block devices: {}",
                        wait.as_millis(),
                        names()
                    ),
                    None => format!(
                        "waited the full {} ms; block devices: {}",
                        wait.as_millis(),
                        names()
                    ),
                },
            };
        }
        if pending.is_none() && now.duration_since(stable_since) >= settle {
            return Search {
                device: None,
                waited: format!(
                    "block devices settled after {} ms, no USB storage pending; block devices: {}",
                    started.elapsed().as_millis(),
                    names()
                ),
            };
        }
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(now)));
    }
}

/// Whether the kernel command line switches the search off (`kindling.data=none`).
pub fn data_search_disabled(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .any(|w| w == "kindling.data=none")
}

/// Where the state lives after the phase.
#[derive(Debug, PartialEq)]
pub enum StateOutcome {
    /// The data partition is mounted.
    Persistent(PathBuf),
    /// No data partition (none configured, none found, or switched off): a
    /// tmpfs, by design; the reason says why.
    RamOnly(String),
    /// A data partition exists but could not be mounted: a tmpfs stands in so
    /// the appliance still comes up, but nothing it writes persists and the
    /// real state is out of reach. The appliance is degraded, never ready.
    Unmountable { device: PathBuf, reason: String },
}

/// Runs the state phase. `tmpfs` says whether to mount a tmpfs when there is no
/// data partition (on the appliance; a test or benchmark run keeps the directory).
pub fn run(label: Option<&str>, mount_point: &Path, wait: Duration, tmpfs: bool) -> StateOutcome {
    let _ = std::fs::create_dir_all(mount_point);
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let mut unmountable = None;
    let reason = match label {
        None => "no data partition configured".to_string(),
        Some(_) if data_search_disabled(&cmdline) => {
            "kindling.data=none on the kernel command line".to_string()
        }
        Some(label) => {
            let search = search_data_partition(
                Path::new("/sys"),
                Path::new("/run/kindling/dev"),
                label,
                wait,
                SETTLE,
            );
            match search.device {
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
                        Err(e) => {
                            let reason = format!(
                                "mounting {} (label {label}) as ext4 failed: {e}",
                                device.display()
                            );
                            unmountable = Some(device);
                            reason
                        }
                    }
                }
                None => format!("no partition labelled {label} found ({})", search.waited),
            }
        }
    };
    let reason = if tmpfs {
        let flags = MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
        match mount(
            Some("tmpfs"),
            mount_point,
            Some("tmpfs"),
            flags,
            Some("mode=0755"),
        ) {
            Ok(()) => reason,
            Err(e) => format!(
                "{reason}; tmpfs on {} failed too: {e}",
                mount_point.display()
            ),
        }
    } else {
        reason
    };
    match unmountable {
        Some(device) => StateOutcome::Unmountable { device, reason },
        None => StateOutcome::RamOnly(reason),
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

    /// A fake /sys: `devices/` holds the real directories, `class/block` and
    /// `bus/usb/devices` link into it, as in the kernel's sysfs.
    struct FakeSys(PathBuf);

    impl FakeSys {
        fn new(name: &str) -> FakeSys {
            let root = std::env::temp_dir().join(format!("ki-sys-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("class/block")).unwrap();
            FakeSys(root)
        }

        fn link(&self, from: &str, to_device: &str) {
            let from = self.0.join(from);
            std::fs::create_dir_all(from.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(self.0.join("devices").join(to_device), from).unwrap();
        }

        /// A block device at `devices/<path>` (dev 0:N: opening it fails, so
        /// it never has a label and nothing real is read).
        fn block(&self, path: &str, minor: u32) {
            let dir = self.0.join("devices").join(path);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("dev"), format!("0:{minor}\n")).unwrap();
            let name = path.rsplit('/').next().unwrap();
            self.link(&format!("class/block/{name}"), path);
        }

        fn usb(&self, name: &str, path: &str, class: Option<&str>) {
            let dir = self.0.join("devices").join(path);
            std::fs::create_dir_all(&dir).unwrap();
            if let Some(class) = class {
                std::fs::write(dir.join("bInterfaceClass"), format!("{class}\n")).unwrap();
            }
            self.link(&format!("bus/usb/devices/{name}"), path);
        }
    }

    impl Drop for FakeSys {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn without_usb_the_search_ends_once_the_devices_settle() {
        let sys = FakeSys::new("settle");
        sys.block("pci0/0000:00:05.0/virtio2/block/vdz", 1);
        sys.block("pci0/0000:00:01.1/ata1/host0/block/srz", 2);
        let search = search_data_partition(
            &sys.0,
            &sys.0.join("nodes"),
            "KINDLING-DATA",
            Duration::from_secs(30),
            Duration::from_millis(100),
        );
        assert_eq!(search.device, None);
        assert!(
            search.waited.starts_with("block devices settled after")
                && search.waited.ends_with("block devices: srz vdz"),
            "{}",
            search.waited
        );
    }

    #[test]
    fn a_usb_controller_without_storage_keeps_the_full_wait() {
        let sys = FakeSys::new("usbwait");
        sys.usb("usb1", "pci0/0000:00:1d.0/usb1", None);
        sys.usb("usb2", "pci0/0000:00:1d.1/usb2", None);
        // A USB keyboard: not storage.
        sys.usb("1-1:1.0", "pci0/0000:00:1d.0/usb1/1-1/1-1:1.0", Some("03"));
        let pending = usb_storage_pending(&sys.0).unwrap();
        assert_eq!(
            pending,
            "USB host controller(s) usb1 usb2 present, no mass-storage device yet"
        );
        let search = search_data_partition(
            &sys.0,
            &sys.0.join("nodes"),
            "KINDLING-DATA",
            Duration::from_millis(300),
            Duration::from_millis(10),
        );
        assert_eq!(search.device, None);
        assert!(
            search
                .waited
                .starts_with("waited the full 300 ms for USB storage (USB host controller(s)"),
            "{}",
            search.waited
        );
    }

    #[test]
    fn usb_storage_is_pending_until_its_block_device_exists() {
        let sys = FakeSys::new("usbdisk");
        sys.usb("usb1", "pci0/0000:00:14.0/usb1", None);
        let interface = "pci0/0000:00:14.0/usb1/1-2/1-2:1.0";
        sys.usb("1-2:1.0", interface, Some("08"));
        assert_eq!(
            usb_storage_pending(&sys.0).as_deref(),
            Some("USB mass-storage interface(s) 1-2:1.0 without a block device yet")
        );
        // A disk elsewhere does not count for the stick.
        sys.block("pci0/0000:00:05.0/virtio2/block/vdz", 1);
        assert!(usb_storage_pending(&sys.0).is_some());
        sys.block(
            &format!("{interface}/host6/target6:0:0/6:0:0:0/block/sdz"),
            2,
        );
        assert_eq!(usb_storage_pending(&sys.0), None);
    }

    #[test]
    fn no_usb_bus_means_nothing_pending() {
        let sys = FakeSys::new("nousb");
        assert_eq!(usb_storage_pending(&sys.0), None);
    }

    #[test]
    fn command_line_switch() {
        assert!(data_search_disabled(
            "BOOT_IMAGE=/vmlinuz console=ttyS0 kindling.data=none quiet"
        ));
        assert!(!data_search_disabled(
            "console=ttyS0 kindling.data=nonesuch"
        ));
        assert!(!data_search_disabled(""));
    }

    #[test]
    fn host_block_devices_are_listed_with_numbers() {
        for dev in block_devices(Path::new("/sys")) {
            assert!(!dev.name.is_empty());
            assert!(dev.major > 0 || dev.minor > 0, "{dev:?}");
        }
    }
}
