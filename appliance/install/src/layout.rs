//! The raw A/B disk layout, shared by the image builder (`kindling image
//! build`'s `kindling.img`) and the installer: partition names and types,
//! the ESP's size, the slot-A file name and systemd-boot's loader.conf.
//!
//! Owns the numbers only; pure. Init finds the ESP by [`ESP_PARTNAME`] on
//! the disk of the partition labelled [`DATA_LABEL`], and the update agent
//! finds slots by [`slot_a_name`]'s pattern: change them together.

pub const MIB: u64 = 1024 * 1024;
pub const SECTOR: u64 = 512;
/// GPT partition name of the EFI system partition (init looks for it).
pub const ESP_PARTNAME: &str = "EFI system";
/// ext4 label and GPT partition name of the data partition.
pub const DATA_LABEL: &str = "KINDLING-DATA";
/// FAT volume label of the ESP.
pub const ESP_LABEL: &str = "KINDLING";
/// GPT type GUIDs (as sfdisk and the `gpt` crate spell them).
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
pub const LINUX_DATA_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
/// The ESP starts 1 MiB in; 1 MiB at the end is left for the backup GPT.
pub const ESP_START: u64 = MIB;
pub const TAIL: u64 = MIB;
/// The smallest data partition the installer makes: the state, the
/// services' logs and update bundles in the spool must fit.
pub const MIN_DATA: u64 = 256 * MIB;

/// File name of slot A's UKI: three boot tries left, none used.
pub fn slot_a_name(version: &str) -> String {
    format!("kindling-{version}+3-0.efi")
}

/// systemd-boot's `loader/loader.conf`.
pub fn loader_conf() -> &'static str {
    // The newest kindling UKI boots at once; `editor no` keeps the command
    // line sealed.
    "timeout 0\ndefault kindling-*\neditor no\nconsole-mode keep\n"
}

/// The ESP holds two UKIs (A and B) plus systemd-boot, with headroom.
pub fn esp_size(uki_size: u64, boot_size: u64) -> u64 {
    let wanted = (uki_size * 2 + boot_size) * 5 / 4 + 8 * MIB;
    wanted.div_ceil(MIB).max(64) * MIB
}

/// Where each partition lies on a disk, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub disk_size: u64,
    pub esp_start: u64,
    pub esp_size: u64,
    pub data_start: u64,
    pub data_size: u64,
}

/// The smallest disk the installer accepts for these boot files.
pub fn min_disk_size(uki_size: u64, boot_size: u64) -> u64 {
    ESP_START + esp_size(uki_size, boot_size) + MIN_DATA + TAIL
}

/// The installer's layout on a disk of `disk_size` bytes: the ESP, then a
/// data partition over the rest (whole MiB). `None`: the disk is smaller
/// than [`min_disk_size`].
pub fn plan(disk_size: u64, uki_size: u64, boot_size: u64) -> Option<Layout> {
    if disk_size < min_disk_size(uki_size, boot_size) {
        return None;
    }
    let esp_size = esp_size(uki_size, boot_size);
    let data_start = ESP_START + esp_size;
    let data_size = (disk_size - data_start - TAIL) / MIB * MIB;
    Some(Layout {
        disk_size,
        esp_start: ESP_START,
        esp_size,
        data_start,
        data_size,
    })
}

/// `1.5 GiB`, `300 MiB`: sizes as the console shows them.
pub fn human(bytes: u64) -> String {
    const GIB: u64 = 1024 * MIB;
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else if bytes >= MIB {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_fits_two_slots() {
        let size = esp_size(100 * MIB, MIB);
        assert!(size >= 201 * MIB);
        assert_eq!(size % MIB, 0);
        assert_eq!(esp_size(1, 1), 64 * MIB);
    }

    #[test]
    fn the_data_partition_takes_the_rest() {
        let uki = 40 * MIB;
        let min = min_disk_size(uki, MIB);
        assert_eq!(plan(min - 1, uki, MIB), None);
        let layout = plan(2048 * MIB + 12345, uki, MIB).unwrap();
        assert_eq!(layout.esp_start, MIB);
        assert_eq!(layout.data_start, MIB + layout.esp_size);
        assert_eq!(layout.data_size % MIB, 0);
        assert!(layout.data_start + layout.data_size + TAIL <= layout.disk_size);
        assert!(layout.data_size >= MIN_DATA);
        let smallest = plan(min, uki, MIB).unwrap();
        assert_eq!(smallest.data_size, MIN_DATA);
    }

    #[test]
    fn names() {
        assert_eq!(slot_a_name("1.2"), "kindling-1.2+3-0.efi");
        assert_eq!(human(3 * 1024 * MIB / 2), "1.5 GiB");
        assert_eq!(human(300 * MIB), "300 MiB");
    }
}
