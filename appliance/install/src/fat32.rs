//! Formats the ESP as FAT32 and fills it with a fixed tree in one pass:
//! boot sector, FSInfo and their backups, both FATs, the directories
//! (long names as VFAT LFN entries) and each file in contiguous clusters.
//!
//! Written here rather than with the `fatfs` crate: its released 0.3.6
//! writes LFN entries before `.` and `..` in every new directory (and a
//! wrong `..` cluster under the root), which `fsck.fat` rejects (fixed only
//! in its unreleased master). `fatfs` still reads the result back in
//! [`crate::write::verify`], and the tests run `fsck.fat` on it. It only
//! writes inside the window it is given.

use std::io;

use crate::disk_io::{BootFile, Window};

const SECTOR: u64 = 512;
const RESERVED: u64 = 32;
const FATS: u64 = 2;
const EOC: u32 = 0x0FFF_FFFF;
const ATTR_DIR: u8 = 0x10;
const ATTR_VOLUME: u8 = 0x08;
const ATTR_LFN: u8 = 0x0F;
/// 1980-01-01, FAT's epoch: the files carry no build time.
const DATE: u16 = (1 << 5) | 1;

/// A file's bytes: from a boot file, or given (owned or borrowed).
pub enum Content<'a> {
    File(BootFile<'a>),
    Bytes(Vec<u8>),
    Slice(&'a [u8]),
}

impl Content<'_> {
    fn len(&self) -> u64 {
        match self {
            Content::File(f) => f.extent.size,
            Content::Bytes(b) => b.len() as u64,
            Content::Slice(b) => b.len() as u64,
        }
    }
}

/// A tree to write: directories hold named children.
pub enum Node<'a> {
    Dir(Vec<(String, Node<'a>)>),
    File(Content<'a>),
}

/// Where the volume goes: `write_at(offset within the volume, bytes)`.
pub trait Volume {
    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()>;
}

impl Volume for Window<'_> {
    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.write_at(offset, bytes)
    }
}

/// The volume's geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub total_sectors: u64,
    pub sectors_per_cluster: u64,
    pub fat_sectors: u64,
    pub clusters: u64,
}

impl Geometry {
    pub fn new(size: u64, cluster_bytes: u64) -> io::Result<Geometry> {
        let total_sectors = size / SECTOR;
        let spc = cluster_bytes / SECTOR;
        // An upper bound of the clusters gives FATs that are large enough.
        let upper = (total_sectors - RESERVED) / spc;
        let fat_sectors = ((upper + 2) * 4).div_ceil(SECTOR);
        let data = total_sectors - RESERVED - FATS * fat_sectors;
        let clusters = data / spc;
        if !(65_525..0x0FFF_FFF5).contains(&clusters) || total_sectors > u64::from(u32::MAX) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{clusters} clusters of {cluster_bytes} bytes cannot be FAT32"),
            ));
        }
        Ok(Geometry {
            total_sectors,
            sectors_per_cluster: spc,
            fat_sectors,
            clusters,
        })
    }

    fn cluster_bytes(&self) -> u64 {
        self.sectors_per_cluster * SECTOR
    }

    /// Byte offset of cluster `n` (2 is the first) in the volume.
    fn cluster_offset(&self, n: u32) -> u64 {
        (RESERVED + FATS * self.fat_sectors + (u64::from(n) - 2) * self.sectors_per_cluster)
            * SECTOR
    }
}

/// A short (8.3) name, and whether it is the name as given (no LFN needed).
fn short_name(name: &str, taken: &[[u8; 11]]) -> ([u8; 11], bool) {
    let (base, ext) = match name.rsplit_once('.') {
        Some((b, e)) if !b.is_empty() => (b, e),
        _ => (name, ""),
    };
    let valid = |s: &str| {
        s.bytes().all(|c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || b"_-~!#$%&'()@^`{}".contains(&c)
        })
    };
    let mut out = [b' '; 11];
    if !base.is_empty() && base.len() <= 8 && ext.len() <= 3 && valid(base) && valid(ext) {
        out[..base.len()].copy_from_slice(base.as_bytes());
        out[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
        if !taken.contains(&out) {
            return (out, true);
        }
    }
    let clean = |s: &str, n: usize| -> Vec<u8> {
        s.bytes()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .take(n)
            .collect()
    };
    let base = clean(base, 6);
    let ext = clean(ext, 3);
    for n in 1..=9u8 {
        let mut out = [b' '; 11];
        let stem = if base.is_empty() {
            b"X".to_vec()
        } else {
            base.clone()
        };
        out[..stem.len()].copy_from_slice(&stem);
        out[stem.len()] = b'~';
        out[stem.len() + 1] = b'0' + n;
        out[8..8 + ext.len()].copy_from_slice(&ext);
        if !taken.contains(&out) {
            return (out, false);
        }
    }
    // More than nine alike in one directory: the tree is fixed and has none.
    (out, false)
}

fn lfn_checksum(short: &[u8; 11]) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, b| (sum >> 1 | (sum & 1) << 7).wrapping_add(*b))
}

/// The LFN entries for `name` (in disk order: last part first).
fn lfn_entries(name: &str, short: &[u8; 11]) -> Vec<[u8; 32]> {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    if !units.len().is_multiple_of(13) {
        units.push(0);
        while !units.len().is_multiple_of(13) {
            units.push(0xFFFF);
        }
    }
    let parts = units.len() / 13;
    let sum = lfn_checksum(short);
    (0..parts)
        .rev()
        .map(|i| {
            let mut e = [0u8; 32];
            e[0] = (i as u8 + 1) | if i + 1 == parts { 0x40 } else { 0 };
            e[11] = ATTR_LFN;
            e[13] = sum;
            let chunk = &units[i * 13..i * 13 + 13];
            let slots = (1..11)
                .step_by(2)
                .chain((14..26).step_by(2))
                .chain((28..32).step_by(2));
            for (unit, at) in chunk.iter().zip(slots) {
                e[at..at + 2].copy_from_slice(&unit.to_le_bytes());
            }
            e
        })
        .collect()
}

fn dir_entry(short: &[u8; 11], attr: u8, cluster: u32, size: u32) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(short);
    e[11] = attr;
    e[16..18].copy_from_slice(&DATE.to_le_bytes());
    e[18..20].copy_from_slice(&DATE.to_le_bytes());
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[24..26].copy_from_slice(&DATE.to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

/// One allocated object: its first cluster and cluster count.
struct Placed {
    first: u32,
    count: u32,
}

struct Writer<'v, V: Volume> {
    volume: &'v V,
    geometry: Geometry,
    fat: Vec<u32>,
    next: u32,
}

impl<V: Volume> Writer<'_, V> {
    fn alloc(&mut self, bytes: u64) -> io::Result<Placed> {
        let count = bytes.div_ceil(self.geometry.cluster_bytes()).max(1) as u32;
        let first = self.next;
        if u64::from(first) + u64::from(count) > self.geometry.clusters + 2 {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "the ESP is too small for its files",
            ));
        }
        for c in first..first + count {
            self.fat[c as usize] = if c + 1 == first + count { EOC } else { c + 1 };
        }
        self.next += count;
        Ok(Placed { first, count })
    }

    /// Entries a directory needs (`.`/`..` unless root, the label in root).
    fn dir_slots(children: &[(String, Node<'_>)], root: bool) -> u64 {
        let mut taken = Vec::new();
        let mut slots = if root { 1 } else { 2 };
        for (name, _) in children {
            let (short, plain) = short_name(name, &taken);
            taken.push(short);
            slots += 1;
            if !plain {
                slots += name.encode_utf16().count().div_ceil(13) as u64;
            }
        }
        slots
    }

    /// Writes directory `children` at cluster `me` (parent `parent`, 0 =
    /// root), then everything below it.
    fn write_dir(
        &mut self,
        children: &[(String, Node<'_>)],
        me: &Placed,
        parent: u32,
        label: Option<&[u8; 11]>,
    ) -> io::Result<()> {
        let mut bytes: Vec<u8> = Vec::new();
        if let Some(label) = label {
            bytes.extend(dir_entry(label, ATTR_VOLUME, 0, 0));
        } else {
            bytes.extend(dir_entry(b".          ", ATTR_DIR, me.first, 0));
            bytes.extend(dir_entry(b"..         ", ATTR_DIR, parent, 0));
        }
        let mut taken: Vec<[u8; 11]> = Vec::new();
        let mut subdirs = Vec::new();
        for (name, node) in children {
            let (short, plain) = short_name(name, &taken);
            taken.push(short);
            if !plain {
                for e in lfn_entries(name, &short) {
                    bytes.extend(e);
                }
            }
            match node {
                Node::Dir(grand) => {
                    let slots = Self::dir_slots(grand, false);
                    let placed = self.alloc(slots * 32)?;
                    bytes.extend(dir_entry(&short, ATTR_DIR, placed.first, 0));
                    subdirs.push((grand, placed));
                }
                Node::File(content) => {
                    let size = content.len();
                    let placed = self.alloc(size)?;
                    bytes.extend(dir_entry(&short, 0x20, placed.first, size as u32));
                    self.write_file(content, &placed)?;
                }
            }
        }
        let room = u64::from(me.count) * self.geometry.cluster_bytes();
        bytes.resize(room as usize, 0);
        self.volume
            .write_at(self.geometry.cluster_offset(me.first), &bytes)?;
        // `..` of a directory in the root names cluster 0.
        let here = if label.is_some() { 0 } else { me.first };
        for (grand, placed) in subdirs {
            self.write_dir(grand, &placed, here, None)?;
        }
        Ok(())
    }

    fn write_file(&mut self, content: &Content<'_>, at: &Placed) -> io::Result<()> {
        let start = self.geometry.cluster_offset(at.first);
        match content {
            Content::Bytes(b) => self.volume.write_at(start, b),
            Content::Slice(b) => self.volume.write_at(start, b),
            Content::File(f) => {
                let mut buf = vec![0u8; 1 << 20];
                let mut done = 0u64;
                while done < f.extent.size {
                    let n = (f.extent.size - done).min(buf.len() as u64) as usize;
                    std::os::unix::fs::FileExt::read_exact_at(
                        f.file,
                        &mut buf[..n],
                        f.extent.offset + done,
                    )?;
                    self.volume.write_at(start + done, &buf[..n])?;
                    done += n as u64;
                }
                Ok(())
            }
        }
    }
}

/// Formats `volume` (`size` bytes, starting `hidden_sectors` into the
/// disk) as FAT32 with `label` and `volume_id`, holding `root`.
pub fn write<V: Volume>(
    volume: &V,
    size: u64,
    hidden_sectors: u64,
    cluster_bytes: u64,
    label: &str,
    volume_id: u32,
    root: &[(String, Node<'_>)],
) -> io::Result<Geometry> {
    let geometry = Geometry::new(size, cluster_bytes)?;
    let mut writer = Writer {
        volume,
        geometry,
        fat: vec![0u32; geometry.clusters as usize + 2],
        next: 2,
    };
    writer.fat[0] = 0x0FFF_FFF8;
    writer.fat[1] = EOC;
    let mut label_bytes = [b' '; 11];
    for (slot, b) in label_bytes.iter_mut().zip(label.bytes()) {
        *slot = b.to_ascii_uppercase();
    }
    let root_placed = writer.alloc(Writer::<V>::dir_slots(root, true) * 32)?;
    writer.write_dir(root, &root_placed, 0, Some(&label_bytes))?;

    // Boot sector, FSInfo, and their backups at sector 6.
    let mut boot = [0u8; 512];
    boot[..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    boot[3..11].copy_from_slice(b"KINDLING");
    boot[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    boot[13] = geometry.sectors_per_cluster as u8;
    boot[14..16].copy_from_slice(&(RESERVED as u16).to_le_bytes());
    boot[16] = FATS as u8;
    boot[21] = 0xF8;
    boot[24..26].copy_from_slice(&32u16.to_le_bytes());
    boot[26..28].copy_from_slice(&64u16.to_le_bytes());
    boot[28..32].copy_from_slice(&(hidden_sectors as u32).to_le_bytes());
    boot[32..36].copy_from_slice(&(geometry.total_sectors as u32).to_le_bytes());
    boot[36..40].copy_from_slice(&(geometry.fat_sectors as u32).to_le_bytes());
    boot[44..48].copy_from_slice(&root_placed.first.to_le_bytes());
    boot[48..50].copy_from_slice(&1u16.to_le_bytes());
    boot[50..52].copy_from_slice(&6u16.to_le_bytes());
    boot[64] = 0x80;
    boot[66] = 0x29;
    boot[67..71].copy_from_slice(&volume_id.to_le_bytes());
    boot[71..82].copy_from_slice(&label_bytes);
    boot[82..90].copy_from_slice(b"FAT32   ");
    boot[510] = 0x55;
    boot[511] = 0xAA;
    let used = u64::from(writer.next - 2);
    let mut info = [0u8; 512];
    info[..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    info[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    info[488..492].copy_from_slice(&((geometry.clusters - used) as u32).to_le_bytes());
    info[492..496].copy_from_slice(&writer.next.to_le_bytes());
    info[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    // Sector 2 of a FAT32 boot region ends in the signature as well.
    let mut third = [0u8; 512];
    third[510] = 0x55;
    third[511] = 0xAA;
    let mut region = vec![0u8; (RESERVED * SECTOR) as usize];
    for base in [0usize, 6] {
        let at = base * SECTOR as usize;
        region[at..at + 512].copy_from_slice(&boot);
        region[at + 512..at + 1024].copy_from_slice(&info);
        region[at + 1024..at + 1536].copy_from_slice(&third);
    }
    volume.write_at(0, &region)?;

    let mut fat = vec![0u8; (geometry.fat_sectors * SECTOR) as usize];
    for (i, entry) in writer.fat.iter().enumerate() {
        fat[i * 4..i * 4 + 4].copy_from_slice(&entry.to_le_bytes());
    }
    for n in 0..FATS {
        volume.write_at((RESERVED + n * geometry.fat_sectors) * SECTOR, &fat)?;
    }
    Ok(geometry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        assert_eq!(short_name("EFI", &[]), (*b"EFI        ", true));
        assert_eq!(short_name("BOOTX64.EFI", &[]), (*b"BOOTX64 EFI", true));
        assert_eq!(short_name("Linux", &[]), (*b"LINUX~1    ", false));
        assert_eq!(
            short_name("systemd-bootx64.efi", &[]),
            (*b"SYSTEM~1EFI", false)
        );
        let taken = [*b"SYSTEM~1EFI"];
        assert_eq!(
            short_name("systemd-other.efi", &taken),
            (*b"SYSTEM~2EFI", false)
        );
        assert_eq!(short_name("loader.conf", &[]).0, *b"LOADER~1CON");
    }

    #[test]
    fn lfn_parts_carry_the_name() {
        let short = *b"KINDLI~1EFI";
        let entries = lfn_entries("kindling-1.0+3-0.efi", &short);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0][0], 0x42, "last part first, flagged");
        assert_eq!(entries[1][0], 0x01);
        assert!(entries
            .iter()
            .all(|e| e[11] == ATTR_LFN && e[13] == lfn_checksum(&short)));
        assert_eq!(&entries[1][1..3], &[b'k', 0]);
    }

    #[test]
    fn too_few_clusters_is_no_fat32() {
        assert!(Geometry::new(32 << 20, 4096).is_err());
        let g = Geometry::new(64 << 20, 512).unwrap();
        assert!(g.clusters >= 65_525);
    }
}
