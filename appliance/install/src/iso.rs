//! Reads files from the kindling ISO the appliance booted from (a CD, or a
//! USB stick written from the hybrid ISO): the installer takes the UKI's
//! parts and systemd-boot from its `/boot` ([`UKI_REST_PATH`],
//! [`UKI_SUM_PATH`], [`KERNEL_PATH`], [`INITRAMFS_PATH`],
//! [`SYSTEMD_BOOT_PATH`]).
//!
//! A minimal ISO 9660 reader over any block device or file: the primary
//! volume descriptor, directory records, Rock Ridge `NM` names when
//! present. Read-only; it never mounts anything (no isofs needed in the
//! kernel).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The ISO's volume id (`kindling image build` sets it).
pub const VOLUME_ID: &str = "KINDLING";
/// The image's UKI on the ISO without its `.initrd` and `.linux` sections'
/// data, which are the ISO's [`INITRAMFS_PATH`] and [`KERNEL_PATH`]
/// (`crate::uki` assembles the whole, the raw disk's slot A).
pub const UKI_REST_PATH: &str = "/boot/kindling.efi.rest";
/// The whole UKI's size and sha256 and its parts' (`crate::uki::Sum`, JSON).
pub const UKI_SUM_PATH: &str = "/boot/kindling.efi.sum";
/// The kernel GRUB boots, and the UKI's `.linux`.
pub const KERNEL_PATH: &str = "/boot/vmlinuz";
/// The initramfs GRUB boots, and the UKI's `.initrd`.
pub const INITRAMFS_PATH: &str = "/boot/initramfs.cpio.zst";
/// systemd-boot's EFI binary on the ISO.
pub const SYSTEMD_BOOT_PATH: &str = "/boot/bootx64.efi";

const BLOCK: u64 = 2048;

/// A file inside the image: where its bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub size: u64,
}

fn read_block(medium: &File, lba: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; BLOCK as usize];
    medium.read_exact_at(&mut buf, lba * BLOCK)?;
    Ok(buf)
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

/// The volume id of the ISO 9660 image on `medium`; `None`: not one.
pub fn volume_id(medium: &File) -> Option<String> {
    let pvd = read_block(medium, 16).ok()?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return None;
    }
    Some(String::from_utf8_lossy(&pvd[40..72]).trim().to_string())
}

/// One directory record's name: the Rock Ridge name when there is one,
/// else the ISO name without its `;1` version and trailing dot.
fn record_name(record: &[u8]) -> Option<String> {
    let name_len = *record.get(32)? as usize;
    let raw = record.get(33..33 + name_len)?;
    let mut at = 33 + name_len + usize::from(name_len.is_multiple_of(2));
    while at + 4 <= record.len() {
        let len = record[at + 2] as usize;
        if len < 4 || at + len > record.len() {
            break;
        }
        if &record[at..at + 2] == b"NM" && len > 5 {
            return Some(String::from_utf8_lossy(&record[at + 5..at + len]).into_owned());
        }
        at += len;
    }
    let name = String::from_utf8_lossy(raw);
    let name = name.split(';').next().unwrap_or("");
    Some(name.trim_end_matches('.').to_string())
}

/// The extent of `path` (`/boot/vmlinuz`) in the ISO on `medium`.
/// Names compare as Rock Ridge gives them, or case-blind against plain
/// ISO 9660 names.
pub fn find(medium: &File, path: &str) -> io::Result<Option<Extent>> {
    let pvd = read_block(medium, 16)?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return Ok(None);
    }
    let root = &pvd[156..190];
    let mut dir = Extent {
        offset: u64::from(u32_le(root, 2)) * BLOCK,
        size: u64::from(u32_le(root, 10)),
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut data = vec![0u8; dir.size.min(16 * 1024 * 1024) as usize];
        medium.read_exact_at(&mut data, dir.offset)?;
        let mut at = 0usize;
        let mut next = None;
        while at < data.len() {
            let len = data[at] as usize;
            if len == 0 {
                // Records never cross a block: skip to the next one.
                at = (at / BLOCK as usize + 1) * BLOCK as usize;
                continue;
            }
            let Some(record) = data.get(at..at + len) else {
                break;
            };
            let is_dir = record.get(25).is_some_and(|f| f & 2 != 0);
            if let Some(name) = record_name(record) {
                let same = name == *part || name.eq_ignore_ascii_case(part);
                if same && is_dir != last {
                    next = Some(Extent {
                        offset: u64::from(u32_le(record, 2)) * BLOCK,
                        size: u64::from(u32_le(record, 10)),
                    });
                    break;
                }
            }
            at += len;
        }
        match next {
            Some(extent) => dir = extent,
            None => return Ok(None),
        }
    }
    Ok(Some(dir))
}

/// `IMAGE_VERSION=` of the UKI's `.osrel` section, found in its head (or
/// its rest)
/// (the section comes right after the stub's own).
pub fn uki_version(bytes: &[u8]) -> Option<String> {
    let key = b"\nIMAGE_VERSION=";
    let at = bytes.windows(key.len()).position(|w| w == key)? + key.len();
    let end = bytes[at..].iter().position(|b| *b == b'\n' || *b == 0)?;
    Some(String::from_utf8_lossy(&bytes[at..at + end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_version_is_read_from_osrel() {
        let uki = b"MZ....\0NAME=kindling\nID=kindling\nVERSION_ID=1.2\nIMAGE_VERSION=1.2\n\0rest";
        assert_eq!(uki_version(uki).as_deref(), Some("1.2"));
        assert_eq!(uki_version(b"MZ nothing"), None);
    }

    #[test]
    fn not_an_iso() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blank");
        std::fs::write(&path, vec![0u8; 64 * 1024]).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(volume_id(&file), None);
        assert_eq!(find(&file, UKI_REST_PATH).unwrap(), None);
    }

    /// Against a real ISO made by xorriso (as grub-mkrescue makes the
    /// image's), with and without Rock Ridge; skipped without xorriso.
    #[test]
    fn files_are_found_in_a_real_iso() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("boot/grub")).unwrap();
        std::fs::write(root.join("boot/kindling.efi.rest"), b"the uki").unwrap();
        std::fs::write(root.join("boot/bootx64.efi"), vec![7u8; 5000]).unwrap();
        std::fs::write(root.join("boot/grub/grub.cfg"), b"x").unwrap();
        for rock_ridge in [true, false] {
            let iso = dir.path().join(format!("k-{rock_ridge}.iso"));
            let mut cmd = Command::new("xorriso");
            cmd.args(["-as", "mkisofs", "-quiet", "-V", VOLUME_ID, "-o"])
                .arg(&iso);
            if rock_ridge {
                cmd.arg("-r");
            }
            let Ok(out) = cmd.arg(&root).output() else {
                eprintln!("skipping: xorriso not installed");
                return;
            };
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let file = File::open(&iso).unwrap();
            assert_eq!(volume_id(&file).as_deref(), Some(VOLUME_ID));
            let uki = find(&file, UKI_REST_PATH).unwrap().unwrap();
            assert_eq!(uki.size, 7);
            let mut bytes = vec![0u8; 7];
            file.read_exact_at(&mut bytes, uki.offset).unwrap();
            assert_eq!(&bytes, b"the uki");
            let boot = find(&file, SYSTEMD_BOOT_PATH).unwrap().unwrap();
            assert_eq!(boot.size, 5000);
            assert_eq!(find(&file, "/boot/missing.efi").unwrap(), None);
            assert_eq!(
                find(&file, "/boot").unwrap(),
                None,
                "a directory is no file"
            );
        }
    }
}
