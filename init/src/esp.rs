//! The EFI system partition of the disk the data partition is on, mounted
//! at `ESP_MOUNT` for the update agent (`kindlingd update`): owned by its
//! account, nothing executable, nothing for anyone else. Also efivarfs,
//! read-only, so the agent can read which boot entry systemd-boot chose.
//!
//! Found by its GPT partition name (`kindling image build` names it "EFI
//! system") on the same disk as the data partition. A boot without one
//! (ISO, direct kernel, RAM only) simply has no slots: not a problem.

use crate::state::{block_devices, device_node};
use kindling_init_protocol::accounts::Account;
use nix::mount::{mount, MsFlags};
use std::path::{Path, PathBuf};

/// The GPT partition name of the ESP in kindling's disk layout.
pub const ESP_PARTNAME: &str = "EFI system";
const EFIVARS: &str = "/sys/firmware/efi/efivars";

/// Mounts the ESP beside `data_device` on `mount_point` for `owner`;
/// returns the device, or why there is none.
pub fn mount_slots(
    sys: &Path,
    node_dir: &Path,
    data_device: &Path,
    mount_point: &Path,
    owner: Account,
) -> Result<PathBuf, String> {
    let data_name = data_device
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or("the data partition has no device name")?;
    let disk = parent_disk(sys, &data_name).ok_or(format!("{data_name} is not a partition"))?;
    let esp = block_devices(sys)
        .into_iter()
        .find(|d| {
            d.partname.as_deref() == Some(ESP_PARTNAME)
                && parent_disk(sys, &d.name).as_deref() == Some(disk.as_str())
        })
        .ok_or(format!("no partition named {ESP_PARTNAME:?} on {disk}"))?;
    let node = device_node(&esp, node_dir).ok_or(format!("no device node for {}", esp.name))?;
    std::fs::create_dir_all(mount_point)
        .map_err(|e| format!("creating {}: {e}", mount_point.display()))?;
    let options = format!(
        "uid={},gid={},fmask=0077,dmask=0077,flush",
        owner.uid, owner.gid
    );
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME;
    mount(
        Some(&node),
        mount_point,
        Some("vfat"),
        flags,
        Some(options.as_str()),
    )
    .map_err(|e| format!("mounting {} as vfat: {e}", node.display()))?;
    mount_efivars();
    Ok(node)
}

/// `/sys/class/block/<name>` of a partition links into its disk's
/// directory: the disk is the parent's name.
fn parent_disk(sys: &Path, name: &str) -> Option<String> {
    let dir = sys.join("class/block").join(name);
    if !dir.join("partition").exists() {
        return None;
    }
    let real = std::fs::canonicalize(&dir).ok()?;
    Some(real.parent()?.file_name()?.to_string_lossy().into_owned())
}

/// efivarfs read-only; a firmware without EFI (BIOS) has no such directory.
fn mount_efivars() {
    if Path::new(EFIVARS).is_dir() {
        let flags =
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        // Already mounted (EBUSY) is as good.
        let _ = mount(
            Some("efivarfs"),
            EFIVARS,
            Some("efivarfs"),
            flags,
            None::<&str>,
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A fake sysfs: /sys/devices/.../block/vda/{vda1,vda2} with
    /// /sys/class/block/* links, as the kernel lays it out.
    fn sysfs() -> tempfile::TempDir {
        let sys = tempfile::tempdir().unwrap();
        let disk = sys.path().join("devices/pci0/virtio1/block/vda");
        let class = sys.path().join("class/block");
        std::fs::create_dir_all(&class).unwrap();
        for (name, dev, partname) in [
            ("vda", "254:0", None),
            ("vda1", "254:1", Some(ESP_PARTNAME)),
            ("vda2", "254:2", Some("KINDLING-DATA")),
            ("vdb1", "254:17", Some(ESP_PARTNAME)),
        ] {
            let dir = if name == "vda" {
                disk.clone()
            } else if name.starts_with("vda") {
                disk.join(name)
            } else {
                sys.path().join("devices/pci0/virtio2/block/vdb").join(name)
            };
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("dev"), dev).unwrap();
            let mut uevent = String::from("DEVTYPE=partition\n");
            if let Some(p) = partname {
                uevent.push_str(&format!("PARTNAME={p}\n"));
                std::fs::write(dir.join("partition"), "1").unwrap();
            }
            std::fs::write(dir.join("uevent"), uevent).unwrap();
            std::os::unix::fs::symlink(&dir, class.join(name)).unwrap();
        }
        sys
    }

    #[test]
    fn the_esp_is_the_one_on_the_data_partitions_disk() {
        let sys = sysfs();
        assert_eq!(parent_disk(sys.path(), "vda2").as_deref(), Some("vda"));
        assert_eq!(parent_disk(sys.path(), "vdb1").as_deref(), Some("vdb"));
        assert_eq!(
            parent_disk(sys.path(), "vda"),
            None,
            "a disk, not a partition"
        );
        let err = mount_slots(
            sys.path(),
            Path::new("/nonexistent"),
            Path::new("/dev/vdc1"),
            Path::new("/nonexistent"),
            kindling_init_protocol::accounts::UPDATE,
        )
        .unwrap_err();
        assert_eq!(err, "vdc1 is not a partition");
    }
}
