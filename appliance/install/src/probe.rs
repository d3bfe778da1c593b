//! What a disk already holds, from its first and last bytes: partition
//! tables and filesystem signatures, named as an operator would know them.
//!
//! Pure over the bytes it is given ([`signatures`]); [`read_head`] reads
//! them. It never writes, and it is no blkid: it knows the signatures a
//! disk an appliance might be pointed at is likely to carry, and anything
//! it does not know counts as blank only if its first 64 KiB are zero or
//! unknown — which is why every refusal also looks at the kernel's own
//! list of partitions.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// How much of the start of a disk [`signatures`] looks at.
pub const HEAD: usize = 68 * 1024;

/// `Some(text)` when `head[at..]` starts with `magic`.
fn has(head: &[u8], at: usize, magic: &[u8]) -> bool {
    head.get(at..at + magic.len()) == Some(magic)
}

/// The signatures found in the first [`HEAD`] bytes of a disk (fewer bytes
/// are fine: what lies beyond is not looked at). Each entry is a short
/// human description ("GPT partition table", "ext4 filesystem").
pub fn signatures(head: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let gpt = has(head, 512, b"EFI PART") || has(head, 4096, b"EFI PART");
    if gpt {
        found.push("a GPT partition table".to_string());
    }
    let boot_signature = has(head, 510, &[0x55, 0xAA]);
    let fat = has(head, 54, b"FAT1") || has(head, 82, b"FAT32   ");
    if boot_signature && !gpt && !fat {
        let used = (0..4).any(|i| {
            let entry = 446 + i * 16;
            head.get(entry + 4).is_some_and(|t| *t != 0)
        });
        if used {
            found.push("an MBR (DOS) partition table".to_string());
        } else {
            found.push("an MBR boot sector".to_string());
        }
    }
    if boot_signature && fat {
        found.push("a FAT filesystem".to_string());
    }
    if has(head, 1024 + 0x38, &[0x53, 0xEF]) {
        found.push("an ext2/3/4 filesystem".to_string());
    }
    if has(head, 32769, b"CD001") {
        found.push("an ISO 9660 image (a CD or a USB stick written from an ISO)".to_string());
    }
    if has(head, 0, b"XFSB") {
        found.push("an XFS filesystem".to_string());
    }
    if has(head, 65600, b"_BHRfS_M") {
        found.push("a btrfs filesystem".to_string());
    }
    if has(head, 0, b"LUKS\xba\xbe") {
        found.push("a LUKS encrypted volume".to_string());
    }
    if has(head, 512, b"LABELONE") || has(head, 536, b"LVM2 001") {
        found.push("an LVM physical volume".to_string());
    }
    if has(head, 4096, &[0xfc, 0x4e, 0x2b, 0xa9]) {
        found.push("a Linux RAID member".to_string());
    }
    if has(head, 4086, b"SWAPSPACE2") || has(head, 4086, b"SWAP-SPACE") {
        found.push("Linux swap".to_string());
    }
    if has(head, 3, b"NTFS    ") {
        found.push("an NTFS filesystem".to_string());
    }
    found
}

/// The first [`HEAD`] bytes of `file` (fewer when it is smaller).
pub fn read_head(file: &File) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; HEAD];
    let mut filled = 0;
    while filled < HEAD {
        let n = file.read_at(&mut head[filled..], filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    head.truncate(filled);
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> Vec<u8> {
        vec![0u8; HEAD]
    }

    #[test]
    fn a_blank_disk_has_nothing() {
        assert!(signatures(&blank()).is_empty());
        assert!(signatures(&[]).is_empty());
    }

    #[test]
    fn each_signature_is_named() {
        let cases: &[(usize, &[u8], &str)] = &[
            (512, b"EFI PART", "a GPT partition table"),
            (1024 + 0x38, &[0x53, 0xEF], "an ext2/3/4 filesystem"),
            (32769, b"CD001", "an ISO 9660 image"),
            (0, b"XFSB", "an XFS filesystem"),
            (65600, b"_BHRfS_M", "a btrfs filesystem"),
            (0, b"LUKS\xba\xbe", "a LUKS encrypted volume"),
            (512, b"LABELONE", "an LVM physical volume"),
            (4086, b"SWAPSPACE2", "Linux swap"),
        ];
        for (at, magic, want) in cases {
            let mut head = blank();
            head[*at..*at + magic.len()].copy_from_slice(magic);
            let found = signatures(&head);
            assert_eq!(found.len(), 1, "{want}: {found:?}");
            assert!(found[0].starts_with(want), "{want}: {found:?}");
        }
    }

    #[test]
    fn mbr_and_fat_are_told_apart() {
        let mut head = blank();
        head[510] = 0x55;
        head[511] = 0xAA;
        assert_eq!(signatures(&head), ["an MBR boot sector"]);
        head[446 + 4] = 0x83;
        assert_eq!(signatures(&head), ["an MBR (DOS) partition table"]);
        head[446 + 4] = 0;
        head[82..90].copy_from_slice(b"FAT32   ");
        assert_eq!(signatures(&head), ["a FAT filesystem"]);
        // A protective MBR beside a GPT is the GPT.
        let mut head = blank();
        head[510] = 0x55;
        head[511] = 0xAA;
        head[446 + 4] = 0xEE;
        head[512..520].copy_from_slice(b"EFI PART");
        assert_eq!(signatures(&head), ["a GPT partition table"]);
    }
}
