//! Which disk an install is asked for, and whether it may be written.
//!
//! [`request`] reads the ask (kernel command line before site), [`resolve`]
//! turns `/dev/disk/by-id/…` or a path into a kernel block device (the
//! appliance has no udev, so by-id names are matched against what sysfs
//! says of each disk), [`gather`] collects the facts about it and
//! [`decide`] — pure — says install, already installed, or why not. Every
//! refusal names the disk, what was found and, where one exists, the
//! option that would allow it. Nothing here writes.

use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::layout::human;

/// The kernel command line's way to ask: `kindling.install=<disk>`.
pub const CMDLINE_KEY: &str = "kindling.install";
/// …and to allow overwriting a disk that holds something:
/// `kindling.install.wipe=1`.
pub const CMDLINE_WIPE: &str = "kindling.install.wipe";

/// Where the ask came from (it decides how a refusal names the option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    CommandLine,
    Site,
}

/// An install asked for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Request {
    /// As written: `/dev/disk/by-id/…`, `/dev/vdb` or `vdb`.
    pub disk: String,
    pub wipe: bool,
    pub source: Source,
}

impl Request {
    /// The option that allows overwriting a disk that holds something.
    pub fn wipe_option(&self) -> &'static str {
        match self.source {
            Source::CommandLine => "kindling.install.wipe=1 on the kernel command line",
            Source::Site => "`wipe = true` under [install] in the site",
        }
    }
}

/// The install asked for by the kernel command line, else by the site's
/// `[install]` (`site_disk`, `site_wipe`); `None`: none.
pub fn request(cmdline: &str, site_disk: Option<&str>, site_wipe: bool) -> Option<Request> {
    let mut disk = None;
    let mut wipe = false;
    for word in cmdline.split_whitespace() {
        if let Some(value) = word.strip_prefix("kindling.install=") {
            disk = Some(value.to_string()).filter(|d| !d.is_empty());
        } else if let Some(value) = word.strip_prefix("kindling.install.wipe=") {
            wipe = matches!(value, "1" | "true" | "yes");
        }
    }
    match disk {
        Some(disk) => Some(Request {
            disk,
            wipe,
            source: Source::CommandLine,
        }),
        None => site_disk.filter(|d| !d.is_empty()).map(|disk| Request {
            disk: disk.to_string(),
            wipe: site_wipe,
            source: Source::Site,
        }),
    }
}

/// Why a disk is not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotFound {
        disk: String,
        available: String,
    },
    NotBlockDevice {
        disk: String,
        is: String,
    },
    Partition {
        disk: String,
        name: String,
        whole: String,
    },
    BootMedium {
        disk: String,
    },
    InUse {
        disk: String,
        mounted: String,
    },
    ReadOnly {
        disk: String,
    },
    TooSmall {
        disk: String,
        size: u64,
        min: u64,
    },
    NotBlank {
        disk: String,
        found: String,
        option: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotFound { disk, available } => write!(
                f,
                "no disk {disk}: nothing by that name; disks here: {available}"
            ),
            Refusal::NotBlockDevice { disk, is } => {
                write!(f, "{disk} is not a block device ({is})")
            }
            Refusal::Partition { disk, name, whole } => write!(
                f,
                "{disk} ({name}) is a partition of /dev/{whole}: name the whole disk, \
                 the install writes its own partition table"
            ),
            Refusal::BootMedium { disk } => write!(
                f,
                "{disk} is the medium this appliance booted from (the kindling ISO); \
                 it is never overwritten, wipe or not"
            ),
            Refusal::InUse { disk, mounted } => write!(
                f,
                "{disk} is in use: {mounted}; it is never overwritten while mounted, wipe or not"
            ),
            Refusal::ReadOnly { disk } => write!(f, "{disk} is read-only"),
            Refusal::TooSmall { disk, size, min } => write!(
                f,
                "{disk} is too small: {} ({size} bytes); the install needs at least {} ({min} bytes)",
                human(*size),
                human(*min)
            ),
            Refusal::NotBlank {
                disk,
                found,
                option,
            } => write!(
                f,
                "{disk} is not blank: it holds {found}; refusing to overwrite it \
                 (set {option} to erase it)"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// What is known of the disk an install targets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskFacts {
    /// How the operator named it, with the kernel's name: `/dev/disk/by-id/virtio-x (vdb)`.
    pub shown: String,
    /// The kernel's name (`vdb`).
    pub name: String,
    /// The device node the install writes (`/dev/vdb`).
    pub node: PathBuf,
    /// `Some(disk)`: this is a partition of `disk`.
    pub partition_of: Option<String>,
    pub size: u64,
    pub read_only: bool,
    /// Partitions the kernel knows on it (`vdb1`, `vdb2`).
    pub partitions: Vec<String>,
    /// Signatures in its first bytes ([`crate::probe::signatures`]).
    pub signatures: Vec<String>,
    /// Mounted filesystems on it or its partitions: (device, mount point).
    pub mounted: Vec<(String, String)>,
    /// It carries the kindling ISO this appliance booted from.
    pub boot_medium: bool,
}

/// What [`decide`] allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Write the layout.
    Install,
    /// The disk already holds this boot's data partition (the firmware
    /// booted the ISO although the disk was installed): nothing to do.
    AlreadyInstalled { device: String },
}

/// Whether the install may write the disk `facts` describes. `state_mount`
/// is where this boot's state lives (`/var/lib/kindling`); `min_size` the
/// smallest disk the layout fits on.
pub fn decide(
    facts: &DiskFacts,
    request: &Request,
    state_mount: &str,
    min_size: u64,
) -> Result<Verdict, Refusal> {
    let disk = facts.shown.clone();
    if let Some(whole) = &facts.partition_of {
        return Err(Refusal::Partition {
            disk,
            name: facts.name.clone(),
            whole: whole.clone(),
        });
    }
    if facts.boot_medium {
        return Err(Refusal::BootMedium { disk });
    }
    if let Some((device, _)) = facts.mounted.iter().find(|(_, at)| at == state_mount) {
        return Ok(Verdict::AlreadyInstalled {
            device: device.clone(),
        });
    }
    if !facts.mounted.is_empty() {
        let mounted = facts
            .mounted
            .iter()
            .map(|(dev, at)| format!("{dev} is mounted on {at}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Refusal::InUse { disk, mounted });
    }
    if facts.read_only {
        return Err(Refusal::ReadOnly { disk });
    }
    if facts.size < min_size {
        return Err(Refusal::TooSmall {
            disk,
            size: facts.size,
            min: min_size,
        });
    }
    let mut found = facts.signatures.clone();
    if !facts.partitions.is_empty() {
        found.push(format!(
            "{} partition(s) the kernel sees ({})",
            facts.partitions.len(),
            facts.partitions.join(" ")
        ));
    }
    if !found.is_empty() && !request.wipe {
        return Err(Refusal::NotBlank {
            disk,
            found: found.join(", "),
            option: request.wipe_option().to_string(),
        });
    }
    Ok(Verdict::Install)
}

/// One block device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysDisk {
    pub name: String,
    pub dev: (u64, u64),
    /// `Some(disk)` for a partition.
    pub partition_of: Option<String>,
    /// Serial numbers sysfs gives for it (virtio `serial`, NVMe
    /// `device/serial`, SCSI/ATA VPD page 0x80).
    pub serial: Option<String>,
    pub model: Option<String>,
    pub size: u64,
}

fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Every block device in `<sys>/class/block`, sorted by name.
pub fn sys_disks(sys: &Path) -> Vec<SysDisk> {
    let Ok(entries) = std::fs::read_dir(sys.join("class/block")) else {
        return Vec::new();
    };
    let mut out: Vec<SysDisk> = entries
        .flatten()
        .filter_map(|e| {
            let dir = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let dev = read_trim(&dir.join("dev"))?;
            let (major, minor) = dev.split_once(':')?;
            let partition_of = if dir.join("partition").exists() {
                std::fs::canonicalize(&dir).ok().and_then(|real| {
                    Some(real.parent()?.file_name()?.to_string_lossy().into_owned())
                })
            } else {
                None
            };
            let vpd_serial = std::fs::read(dir.join("device/vpd_pg80"))
                .ok()
                .and_then(|b| {
                    let text = String::from_utf8_lossy(b.get(4..)?).trim().to_string();
                    Some(text).filter(|t| !t.is_empty())
                });
            let serial = read_trim(&dir.join("serial"))
                .or_else(|| read_trim(&dir.join("device/serial")))
                .or(vpd_serial);
            Some(SysDisk {
                name,
                dev: (major.parse().ok()?, minor.parse().ok()?),
                partition_of,
                serial,
                model: read_trim(&dir.join("device/model")),
                size: read_trim(&dir.join("size"))
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 512,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether the by-id name `id` (the file name under /dev/disk/by-id)
/// names `disk`: udev's `virtio-SERIAL`, `nvme-MODEL_SERIAL`,
/// `ata-MODEL_SERIAL`, `scsi-…_SERIAL`, `usb-…_SERIAL-0:0` all carry the
/// serial as the last `_`-separated part (before a `-0:0` LUN suffix).
pub fn by_id_matches(id: &str, disk: &SysDisk) -> bool {
    let Some(serial) = disk.serial.as_deref() else {
        return false;
    };
    let serial = serial.replace(' ', "_");
    if id == format!("virtio-{serial}") {
        return true;
    }
    let id = match id.rsplit_once('-') {
        Some((head, lun)) if lun.contains(':') => head,
        _ => id,
    };
    id.ends_with(&format!("_{serial}"))
}

/// The disks sysfs lists, for a refusal: `vda (2.0 GiB, serial x) sr0 (…)`.
pub fn describe_disks(disks: &[SysDisk]) -> String {
    let list: Vec<String> = disks
        .iter()
        .filter(|d| d.partition_of.is_none() && d.size > 0)
        .map(|d| {
            let mut s = format!("/dev/{} ({}", d.name, human(d.size));
            if let Some(serial) = &d.serial {
                s.push_str(&format!(", serial {serial}"));
            }
            s.push(')');
            s
        })
        .collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

/// The kernel block device `disk` names: a by-id path (followed when udev
/// made it, else matched by serial), a device path, or a bare kernel name
/// (`vdb`). Returns its sysfs entry and the node to open.
pub fn resolve(disk: &str, sys: &Path, dev_dir: &Path) -> Result<(SysDisk, PathBuf), Refusal> {
    let disks = sys_disks(sys);
    let not_found = || Refusal::NotFound {
        disk: disk.to_string(),
        available: describe_disks(&disks),
    };
    let path = if disk.starts_with('/') {
        PathBuf::from(disk)
    } else {
        dev_dir.join(disk)
    };
    let by_id = Path::new(disk)
        .parent()
        .is_some_and(|p| p.ends_with("disk/by-id"));
    if by_id && !path.exists() {
        let id = Path::new(disk)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let matching: Vec<&SysDisk> = disks
            .iter()
            .filter(|d| d.partition_of.is_none() && by_id_matches(&id, d))
            .collect();
        return match matching.as_slice() {
            [one] => Ok(((*one).clone(), dev_dir.join(&one.name))),
            _ => Err(not_found()),
        };
    }
    let meta = std::fs::metadata(&path).map_err(|_| not_found())?;
    let kind = meta.file_type();
    if !kind.is_block_device() {
        let is = if kind.is_file() {
            "a regular file"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_char_device() {
            "a character device"
        } else {
            "not a device"
        };
        return Err(Refusal::NotBlockDevice {
            disk: disk.to_string(),
            is: is.to_string(),
        });
    }
    let rdev = meta.rdev();
    let numbers = (u64::from(nix_major(rdev)), u64::from(nix_minor(rdev)));
    let found = disks
        .iter()
        .find(|d| d.dev == numbers)
        .cloned()
        .ok_or_else(not_found)?;
    Ok((found, path))
}

/// Major and minor of a `dev_t` (glibc's encoding).
fn nix_major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32
}

fn nix_minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32
}

/// Mounted filesystems from `/proc/self/mountinfo` text: (major, minor,
/// mount point).
pub fn mounts(mountinfo: &str) -> Vec<((u64, u64), String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let dev = fields.nth(2)?;
            let at = fields.nth(1)?;
            let (major, minor) = dev.split_once(':')?;
            Some((
                (major.parse().ok()?, minor.parse().ok()?),
                at.replace("\\040", " "),
            ))
        })
        .collect()
}

/// The facts [`decide`] needs about `target` (from [`resolve`]): its
/// partitions and size from sysfs, what is mounted from it (`mountinfo`),
/// its first bytes (`head`) and whether it is the boot medium.
pub fn gather(
    shown: &str,
    target: &SysDisk,
    node: &Path,
    sys: &Path,
    mountinfo: &str,
    head: &[u8],
    boot_medium: bool,
) -> DiskFacts {
    let disks = sys_disks(sys);
    let partitions: Vec<&SysDisk> = disks
        .iter()
        .filter(|d| d.partition_of.as_deref() == Some(target.name.as_str()))
        .collect();
    let mounted = mounts(mountinfo)
        .into_iter()
        .filter_map(|(dev, at)| {
            if dev == target.dev {
                return Some((target.name.clone(), at));
            }
            partitions
                .iter()
                .find(|p| p.dev == dev)
                .map(|p| (p.name.clone(), at))
        })
        .collect();
    let read_only = read_trim(&sys.join("class/block").join(&target.name).join("ro"))
        .is_some_and(|ro| ro == "1");
    let shown = if shown.ends_with(&format!("/{}", target.name)) || shown == target.name {
        format!("/dev/{}", target.name)
    } else {
        format!("{shown} (/dev/{})", target.name)
    };
    DiskFacts {
        shown,
        name: target.name.clone(),
        node: node.to_path_buf(),
        partition_of: target.partition_of.clone(),
        size: target.size,
        read_only,
        partitions: partitions.iter().map(|p| p.name.clone()).collect(),
        signatures: crate::probe::signatures(head),
        mounted,
        boot_medium,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::MIB;

    fn site(disk: &str, wipe: bool) -> Request {
        Request {
            disk: disk.into(),
            wipe,
            source: Source::Site,
        }
    }

    fn blank() -> DiskFacts {
        DiskFacts {
            shown: "/dev/vdb".into(),
            name: "vdb".into(),
            node: "/dev/vdb".into(),
            size: 2048 * MIB,
            ..DiskFacts::default()
        }
    }

    const MIN: u64 = 400 * MIB;
    const STATE: &str = "/var/lib/kindling";

    #[test]
    fn the_command_line_comes_before_the_site() {
        assert_eq!(request("console=ttyS0", None, true), None);
        assert_eq!(request("kindling.install=", None, false), None);
        let r = request("quiet kindling.install=/dev/vdb", Some("/dev/sda"), true).unwrap();
        assert_eq!(
            (r.disk.as_str(), r.wipe, r.source),
            ("/dev/vdb", false, Source::CommandLine)
        );
        let r = request(
            "kindling.install=/dev/disk/by-id/virtio-x kindling.install.wipe=1",
            None,
            false,
        )
        .unwrap();
        assert!(r.wipe);
        let r = request("console=ttyS0", Some("/dev/sda"), true).unwrap();
        assert_eq!(
            (r.disk.as_str(), r.wipe, r.source),
            ("/dev/sda", true, Source::Site)
        );
        assert_eq!(request("", Some(""), true), None);
    }

    #[test]
    fn a_blank_disk_of_enough_size_is_installed() {
        assert_eq!(
            decide(&blank(), &site("vdb", false), STATE, MIN),
            Ok(Verdict::Install)
        );
    }

    #[test]
    fn a_disk_that_holds_something_needs_wipe_and_the_refusal_says_so() {
        let mut facts = blank();
        facts.signatures = vec!["a GPT partition table".into()];
        facts.partitions = vec!["vdb1".into(), "vdb2".into()];
        let err = decide(&facts, &site("vdb", false), STATE, MIN).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/vdb is not blank: it holds a GPT partition table, 2 partition(s) the kernel \
             sees (vdb1 vdb2); refusing to overwrite it (set `wipe = true` under [install] in \
             the site to erase it)"
        );
        let cmdline = Request {
            source: Source::CommandLine,
            ..site("vdb", false)
        };
        let err = decide(&facts, &cmdline, STATE, MIN)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kindling.install.wipe=1 on the kernel command line"),
            "{err}"
        );
        assert_eq!(
            decide(&facts, &site("vdb", true), STATE, MIN),
            Ok(Verdict::Install)
        );
        // Partitions alone (a table this probe does not know) count too.
        facts.signatures.clear();
        assert!(decide(&facts, &site("vdb", false), STATE, MIN).is_err());
    }

    #[test]
    fn some_disks_are_never_written_wipe_or_not() {
        let wipe = site("vdb", true);
        let mut medium = blank();
        medium.boot_medium = true;
        let err = decide(&medium, &wipe, STATE, MIN).unwrap_err();
        assert!(matches!(err, Refusal::BootMedium { .. }), "{err}");

        let mut mounted = blank();
        mounted.mounted = vec![("vdb1".into(), "/mnt".into())];
        let err = decide(&mounted, &wipe, STATE, MIN).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/vdb is in use: vdb1 is mounted on /mnt; it is never overwritten while \
             mounted, wipe or not"
        );

        let mut partition = blank();
        partition.partition_of = Some("vdb".into());
        partition.name = "vdb1".into();
        partition.shown = "/dev/vdb1".into();
        let err = decide(&partition, &wipe, STATE, MIN)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a partition of /dev/vdb"), "{err}");

        let mut ro = blank();
        ro.read_only = true;
        assert_eq!(
            decide(&ro, &wipe, STATE, MIN),
            Err(Refusal::ReadOnly {
                disk: "/dev/vdb".into()
            })
        );
    }

    #[test]
    fn a_small_disk_is_refused_with_the_minimum() {
        let mut small = blank();
        small.size = 100 * MIB;
        let err = decide(&small, &site("vdb", true), STATE, MIN).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/vdb is too small: 100 MiB (104857600 bytes); the install needs at least \
             400 MiB (419430400 bytes)"
        );
    }

    #[test]
    fn the_disk_this_boot_runs_from_is_already_installed() {
        let mut facts = blank();
        facts.mounted = vec![("vdb2".into(), STATE.into())];
        facts.partitions = vec!["vdb1".into(), "vdb2".into()];
        assert_eq!(
            decide(&facts, &site("vdb", false), STATE, MIN),
            Ok(Verdict::AlreadyInstalled {
                device: "vdb2".into()
            })
        );
    }

    #[test]
    fn by_id_names_match_by_serial() {
        let disk = SysDisk {
            name: "vdb".into(),
            dev: (254, 16),
            partition_of: None,
            serial: Some("kindling-target".into()),
            model: None,
            size: 0,
        };
        assert!(by_id_matches("virtio-kindling-target", &disk));
        assert!(by_id_matches("ata-QEMU_HARDDISK_kindling-target", &disk));
        assert!(by_id_matches(
            "usb-Kingston_DataTraveler_kindling-target-0:0",
            &disk
        ));
        assert!(!by_id_matches("virtio-other", &disk));
        assert!(!by_id_matches("ata-QEMU_HARDDISK_kindling", &disk));
        let no_serial = SysDisk {
            serial: None,
            ..disk
        };
        assert!(!by_id_matches("virtio-kindling-target", &no_serial));
    }

    #[test]
    fn mountinfo_is_parsed() {
        let text = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                    30 22 254:18 / /var/lib/kindling rw,noatime - ext4 /dev/vdb2 rw\n\
                    31 22 254:17 / /run/kindling/esp rw - vfat /dev/vdb1 rw\n";
        let m = mounts(text);
        assert_eq!(m[1], ((254, 18), "/var/lib/kindling".to_string()));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn a_regular_file_is_not_a_block_device() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disk.img");
        std::fs::write(&file, b"x").unwrap();
        let err = resolve(file.to_str().unwrap(), dir.path(), Path::new("/dev")).unwrap_err();
        assert!(
            matches!(&err, Refusal::NotBlockDevice { is, .. } if is == "a regular file"),
            "{err}"
        );
        let err = resolve(
            "/dev/disk/by-id/virtio-nothing",
            dir.path(),
            Path::new("/dev"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no disk /dev/disk/by-id/virtio-nothing: nothing by that name; disks here: none"
        );
    }

    /// The host's own disks resolve through their nodes (skipped where /dev
    /// has none, as in a container).
    #[test]
    fn host_disks_resolve() {
        for disk in sys_disks(Path::new("/sys")) {
            let node = Path::new("/dev").join(&disk.name);
            if !node.exists() {
                continue;
            }
            let (found, path) = resolve(&disk.name, Path::new("/sys"), Path::new("/dev")).unwrap();
            assert_eq!(found.name, disk.name);
            assert_eq!(path, node);
        }
    }
}
