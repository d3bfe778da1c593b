//! What hardware asks for: the `modalias` of every device under `/sys/bus`.
//!
//! Owns reading sysfs only; it never loads anything.

use std::path::Path;

/// Every distinct `/sys/bus/*/devices/*/modalias` value, sorted.
pub fn device_modaliases(sys: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(buses) = std::fs::read_dir(sys.join("bus")) else {
        return found;
    };
    for bus in buses.flatten() {
        let Ok(devices) = std::fs::read_dir(bus.path().join("devices")) else {
            continue;
        };
        for device in devices.flatten() {
            if let Ok(alias) = std::fs::read_to_string(device.path().join("modalias")) {
                let alias = alias.trim();
                if !alias.is_empty() {
                    found.push(alias.to_string());
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn reads_a_fake_sysfs_tree() {
        let root = std::env::temp_dir().join(format!("ki-sysfs-{}", std::process::id()));
        let dev = root.join("bus/pci/devices/0000:00:03.0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("modalias"), "pci:v00008086d0000100Esv*\n").unwrap();
        let other = root.join("bus/virtio/devices/virtio0");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("modalias"), "virtio:d00000001v00001AF4\n").unwrap();
        std::fs::create_dir_all(root.join("bus/platform/devices/nomodalias")).unwrap();
        assert_eq!(
            device_modaliases(&root),
            ["pci:v00008086d0000100Esv*", "virtio:d00000001v00001AF4"]
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
