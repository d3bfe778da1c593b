//! The UKI as the ISO carries it: only its *rest* (its bytes without the
//! `.initrd` and `.linux` sections' data: the head, i.e. systemd's stub and
//! the small sections `.osrel`, `.cmdline`, `.uname`, and the tail after
//! the sections, the stub's COFF symbol table) and a [`Sum`], because
//! `.initrd` and `.linux` are the ISO's own initramfs and kernel, which
//! GRUB boots: stored once, not twice (docs/install.md).
//!
//! The image build [`split`]s the UKI and proves the round trip; the
//! installer [`assemble`]s slot A from the rest, the initramfs and the
//! kernel at the file offsets the head's PE section table names (zeros
//! between), and checks every part and the whole against the sum before
//! anything is written. The section table is read with the `object`
//! crate; every offset is checked against the sizes before it is used.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use object::pe::ImageSectionHeader;
use object::read::pe::PeFile64;
use object::LittleEndian as LE;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::disk_io::BootFile;
use crate::iso::{self, Extent};

/// The section holding the initramfs.
pub const INITRD: &str = ".initrd";
/// The section holding the kernel (the stub wants it last).
pub const LINUX: &str = ".linux";
/// No UKI is this large; a sum naming more is refused before any
/// allocation.
pub const MAX_SIZE: u64 = 1 << 30;
/// The rest is the stub, a few small sections and the stub's symbols.
pub const MAX_REST: u64 = 16 << 20;

/// What the assembled UKI must be: its size and sha256, and each part's
/// sha256, so a mismatch names the part. Stored as JSON beside the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sum {
    pub size: u64,
    pub sha256: String,
    pub rest_sha256: String,
    pub initrd_sha256: String,
    pub linux_sha256: String,
}

/// Where one of the two big sections' bytes go in the whole UKI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// PointerToRawData: the file offset.
    pub offset: u64,
    /// VirtualSize: the section's own bytes (the file's size).
    pub size: u64,
    /// SizeOfRawData: the room in the file, padded with zeros.
    pub room: u64,
}

/// The `.initrd` and `.linux` sections of a UKI (or of its head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sections {
    pub initrd: Placement,
    pub linux: Placement,
}

impl Sections {
    /// Where the head ends: the first byte of either big section.
    pub fn head_len(&self) -> u64 {
        self.initrd.offset.min(self.linux.offset)
    }

    /// Where the sections' room ends: the tail may start there.
    pub fn end(&self) -> u64 {
        (self.initrd.offset + self.initrd.room).max(self.linux.offset + self.linux.room)
    }
}

/// Why a UKI cannot be split or assembled; each names what differs.
#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    #[error("{what} is not a PE image: {reason}")]
    NotPe { what: String, reason: String },
    #[error("{what} has no {section} section (or more than one)")]
    Section { what: String, section: &'static str },
    #[error("{what}: {reason}")]
    Layout { what: String, reason: String },
    #[error("{path} is {have} bytes; the UKI's {section} section holds {want}: it is not the file the UKI was built with")]
    Size {
        path: String,
        section: &'static str,
        have: u64,
        want: u64,
    },
    #[error("{what} has sha256 {have}; the UKI was built with {want}")]
    Digest {
        what: String,
        have: String,
        want: String,
    },
    #[error("{path} is no UKI sum: {reason}")]
    Sum { path: String, reason: String },
    #[error("reading {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of `bytes`, in hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn placement(header: &ImageSectionHeader) -> Placement {
    Placement {
        offset: u64::from(header.pointer_to_raw_data.get(LE)),
        size: u64::from(header.virtual_size.get(LE)),
        room: u64::from(header.size_of_raw_data.get(LE)),
    }
}

/// Reads the `.initrd` and `.linux` placements from the section table of
/// `data` (a whole UKI, or only its head: the table is at its start).
/// `what` names `data` in errors.
pub fn sections(data: &[u8], what: &str) -> Result<Sections, UkiError> {
    let pe = PeFile64::parse(data).map_err(|e| UkiError::NotPe {
        what: what.to_string(),
        reason: e.to_string(),
    })?;
    let find = |name: &'static str| -> Result<Placement, UkiError> {
        let mut found = pe
            .section_table()
            .iter()
            .filter(|s| s.raw_name() == name.as_bytes());
        match (found.next(), found.next()) {
            (Some(header), None) => Ok(placement(header)),
            _ => Err(UkiError::Section {
                what: what.to_string(),
                section: name,
            }),
        }
    };
    let sections = Sections {
        initrd: find(INITRD)?,
        linux: find(LINUX)?,
    };
    let layout = |reason: String| UkiError::Layout {
        what: what.to_string(),
        reason,
    };
    for (name, p) in [(INITRD, sections.initrd), (LINUX, sections.linux)] {
        if p.size > p.room {
            return Err(layout(format!(
                "the {name} section's {} bytes do not fit its {} bytes of room",
                p.size, p.room
            )));
        }
    }
    let (first, second) = if sections.initrd.offset <= sections.linux.offset {
        (sections.initrd, sections.linux)
    } else {
        (sections.linux, sections.initrd)
    };
    if first.offset + first.room > second.offset {
        return Err(layout(format!(
            "the {INITRD} and {LINUX} sections overlap in the file"
        )));
    }
    if sections.head_len() == 0 || sections.head_len() > MAX_REST {
        return Err(layout(format!(
            "the sections before {INITRD} and {LINUX} end at byte {} (not 1 … {MAX_REST})",
            sections.head_len()
        )));
    }
    Ok(sections)
}

/// What the ISO carries instead of the whole UKI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The rest: the UKI's first bytes, up to its `.initrd` and `.linux`
    /// data, then its bytes after them.
    pub rest: Vec<u8>,
    pub sum: Sum,
}

/// Splits a whole UKI into its rest and its [`Sum`]. The caller proves
/// the round trip with [`assemble`] from its own kernel and initramfs
/// (the build does).
pub fn split(uki: &[u8]) -> Result<Split, UkiError> {
    let what = "the UKI";
    let s = sections(uki, what)?;
    let end = |p: Placement| p.offset + p.size;
    let len = uki.len() as u64;
    if end(s.initrd).max(end(s.linux)) > len || len > MAX_SIZE {
        return Err(UkiError::Layout {
            what: what.to_string(),
            reason: format!("its sections reach past its {len} bytes"),
        });
    }
    let part = |p: Placement| &uki[p.offset as usize..end(p) as usize];
    let head = &uki[..s.head_len() as usize];
    let tail = &uki[s.end().min(len) as usize..];
    if (head.len() + tail.len()) as u64 > MAX_REST {
        return Err(UkiError::Layout {
            what: what.to_string(),
            reason: format!(
                "{} bytes besides its {INITRD} and {LINUX} sections, more than {MAX_REST}",
                head.len() + tail.len()
            ),
        });
    }
    let rest = [head, tail].concat();
    Ok(Split {
        sum: Sum {
            size: len,
            sha256: sha256(uki),
            rest_sha256: sha256(&rest),
            initrd_sha256: sha256(part(s.initrd)),
            linux_sha256: sha256(part(s.linux)),
        },
        rest,
    })
}

/// One of the two big sections' files: its path on the ISO (for
/// messages) and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    pub path: &'a str,
    pub file: BootFile<'a>,
}

/// Assembles the whole UKI in memory: the head (the start of `rest`, up
/// to where its section table puts `.initrd` and `.linux`), `initrd` and
/// `linux` at those offsets, the tail (the remainder of `rest`) at the
/// end, zeros between; checks the rest, each part and the whole against
/// `sum`. `rest_path` names the rest in errors. An `Err` names what
/// differs; nothing is returned then.
pub fn assemble(
    rest: &[u8],
    rest_path: &str,
    sum: &Sum,
    initrd: Part<'_>,
    linux: Part<'_>,
) -> Result<Vec<u8>, UkiError> {
    let digest = |what: String, have: String, want: &str| -> Result<(), UkiError> {
        if have == want {
            return Ok(());
        }
        Err(UkiError::Digest {
            what,
            have,
            want: want.to_string(),
        })
    };
    digest(
        format!("the UKI's rest {rest_path}"),
        sha256(rest),
        &sum.rest_sha256,
    )?;
    let s = sections(rest, rest_path)?;
    let layout = |reason: String| UkiError::Layout {
        what: rest_path.to_string(),
        reason,
    };
    if sum.size > MAX_SIZE {
        return Err(layout(format!(
            "the sum names a UKI of {} bytes, more than {MAX_SIZE}",
            sum.size
        )));
    }
    let head_len = s.head_len();
    let rest_len = rest.len() as u64;
    // The tail goes at the UKI's end, after the sections' room.
    let tail_start = (sum.size + head_len)
        .checked_sub(rest_len)
        .filter(|at| rest_len >= head_len && *at >= s.end().min(sum.size) && *at >= head_len)
        .ok_or_else(|| {
            layout(format!(
                "its {rest_len} bytes do not fit a {}-byte UKI whose {INITRD} and {LINUX} \
                 sections take bytes {head_len} to {}",
                sum.size,
                s.end()
            ))
        })?;
    let mut uki = Vec::new();
    uki.try_reserve_exact(sum.size as usize)
        .map_err(|e| layout(format!("no memory for the {}-byte UKI: {e}", sum.size)))?;
    uki.resize(sum.size as usize, 0u8);
    let (head, tail) = rest.split_at(head_len as usize);
    uki[..head.len()].copy_from_slice(head);
    uki[tail_start as usize..].copy_from_slice(tail);
    for (section, p, part, want) in [
        (INITRD, s.initrd, initrd, &sum.initrd_sha256),
        (LINUX, s.linux, linux, &sum.linux_sha256),
    ] {
        if part.file.extent.size != p.size {
            return Err(UkiError::Size {
                path: part.path.to_string(),
                section,
                have: part.file.extent.size,
                want: p.size,
            });
        }
        if p.offset + p.size > tail_start {
            return Err(layout(format!(
                "its {section} section ends at byte {}, past the UKI's {} bytes before its tail",
                p.offset + p.size,
                tail_start
            )));
        }
        let into = &mut uki[p.offset as usize..(p.offset + p.size) as usize];
        part.file
            .file
            .read_exact_at(into, part.file.extent.offset)
            .map_err(|source| UkiError::Io {
                what: part.path.to_string(),
                source,
            })?;
        digest(
            format!("{} (the UKI's {section})", part.path),
            sha256(into),
            want,
        )?;
    }
    digest("the assembled UKI".to_string(), sha256(&uki), &sum.sha256)?;
    Ok(uki)
}

/// Where the UKI's parts are on the ISO ([`iso::UKI_REST_PATH`] and the
/// others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnMedium {
    pub rest: Extent,
    pub sum: Extent,
    pub initrd: Extent,
    pub linux: Extent,
}

impl OnMedium {
    /// Finds the four files on the ISO `medium`; `None`: one is missing.
    pub fn find(medium: &File) -> io::Result<Option<OnMedium>> {
        let find = |path| iso::find(medium, path);
        Ok(
            match (
                find(iso::UKI_REST_PATH)?,
                find(iso::UKI_SUM_PATH)?,
                find(iso::INITRAMFS_PATH)?,
                find(iso::KERNEL_PATH)?,
            ) {
                (Some(rest), Some(sum), Some(initrd), Some(linux)) => Some(OnMedium {
                    rest,
                    sum,
                    initrd,
                    linux,
                }),
                _ => None,
            },
        )
    }

    /// Reads the rest and the sum from `medium` (both small; larger ones
    /// are refused unread).
    pub fn read(&self, medium: &File) -> Result<(Vec<u8>, Sum), UkiError> {
        let read = |path: &str, extent: Extent, max: u64| -> Result<Vec<u8>, UkiError> {
            if extent.size > max {
                return Err(UkiError::Layout {
                    what: path.to_string(),
                    reason: format!("{} bytes, more than {max}", extent.size),
                });
            }
            let mut bytes = vec![0u8; extent.size as usize];
            medium
                .read_exact_at(&mut bytes, extent.offset)
                .map_err(|source| UkiError::Io {
                    what: path.to_string(),
                    source,
                })?;
            Ok(bytes)
        };
        let rest = read(iso::UKI_REST_PATH, self.rest, MAX_REST)?;
        let sum = read(iso::UKI_SUM_PATH, self.sum, 64 * 1024)?;
        let sum = serde_json::from_slice(&sum).map_err(|e| UkiError::Sum {
            path: iso::UKI_SUM_PATH.to_string(),
            reason: e.to_string(),
        })?;
        Ok((rest, sum))
    }

    /// The whole UKI from `medium`, checked ([`assemble`]).
    pub fn assemble(&self, medium: &File, rest: &[u8], sum: &Sum) -> Result<Vec<u8>, UkiError> {
        let part = |path, extent| Part {
            path,
            file: BootFile {
                file: medium,
                extent,
            },
        };
        assemble(
            rest,
            iso::UKI_REST_PATH,
            sum,
            part(iso::INITRAMFS_PATH, self.initrd),
            part(iso::KERNEL_PATH, self.linux),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up PE32+ image: DOS header, NT headers, `.osrel`, `.initrd`
    /// and `.linux` last, 512-byte file alignment, and a symbol table after
    /// the sections (as objcopy lays out systemd's stub).
    fn fake_uki(initrd: &[u8], linux: &[u8]) -> Vec<u8> {
        let mut pe = vec![0u8; 0x400];
        pe[0..2].copy_from_slice(b"MZ");
        pe[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        pe[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        pe[coff + 2..coff + 4].copy_from_slice(&3u16.to_le_bytes());
        pe[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = coff + 20;
        pe[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        pe[opt + 32..opt + 36].copy_from_slice(&4096u32.to_le_bytes());
        pe[opt + 36..opt + 40].copy_from_slice(&512u32.to_le_bytes());
        pe[opt + 56..opt + 60].copy_from_slice(&0x10_0000u32.to_le_bytes());
        pe[opt + 60..opt + 64].copy_from_slice(&0x400u32.to_le_bytes());
        pe[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let table = opt + 240;
        let osrel = b"NAME=kindling\nIMAGE_VERSION=4.5.6\n";
        let round = |n: usize| n.div_ceil(512) * 512;
        let mut at = 0x400usize;
        let mut body = Vec::new();
        for (i, (name, data)) in [(".osrel", &osrel[..]), (INITRD, initrd), (LINUX, linux)]
            .into_iter()
            .enumerate()
        {
            let h = table + i * 40;
            pe[h..h + name.len()].copy_from_slice(name.as_bytes());
            pe[h + 8..h + 12].copy_from_slice(&(data.len() as u32).to_le_bytes());
            pe[h + 12..h + 16].copy_from_slice(&(0x1000 * (i as u32 + 1)).to_le_bytes());
            pe[h + 16..h + 20].copy_from_slice(&(round(data.len()) as u32).to_le_bytes());
            pe[h + 20..h + 24].copy_from_slice(&(at as u32).to_le_bytes());
            let mut padded = data.to_vec();
            padded.resize(round(data.len()), 0);
            body.extend(padded);
            at += round(data.len());
        }
        pe.extend(body);
        let symbols = pe.len() as u32;
        pe[coff + 8..coff + 12].copy_from_slice(&symbols.to_le_bytes());
        pe[coff + 12..coff + 16].copy_from_slice(&2u32.to_le_bytes());
        pe.extend((0..40u8).map(|i| i + 1));
        pe
    }

    fn file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> File {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        File::open(path).unwrap()
    }

    #[test]
    fn split_and_assemble_round_trip_and_refuse_a_changed_part() {
        let initrd: Vec<u8> = (0..3000u32).map(|i| (i % 253) as u8).collect();
        let linux: Vec<u8> = (0..5001u32).map(|i| (i % 241) as u8).collect();
        let uki = fake_uki(&initrd, &linux);
        let split = split(&uki).unwrap();
        assert_eq!(split.rest.len(), 0x600 + 40, "head and symbol table");
        assert_eq!(split.sum.size, uki.len() as u64);
        let head = &split.rest[..];
        assert_eq!(
            crate::iso::uki_version(head).as_deref(),
            Some("4.5.6"),
            "the version check reads the rest"
        );
        let dir = tempfile::tempdir().unwrap();
        let (fi, fl) = (file(&dir, "i", &initrd), file(&dir, "l", &linux));
        let part = |path, f| Part {
            path,
            file: BootFile::whole(f).unwrap(),
        };
        let whole = assemble(head, "head", &split.sum, part("i", &fi), part("l", &fl)).unwrap();
        assert!(whole == uki);

        // A kernel of the right size with one byte changed: named.
        let mut bad = linux.clone();
        bad[4000] ^= 1;
        let fb = file(&dir, "bad", &bad);
        let err = assemble(
            head,
            "head",
            &split.sum,
            part("i", &fi),
            part("/boot/vmlinuz", &fb),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/boot/vmlinuz (the UKI's .linux) has sha256"),
            "{err}"
        );
        // Another size: named with both sizes.
        let fs = file(&dir, "short", &initrd[..2999]);
        let err = assemble(
            head,
            "head",
            &split.sum,
            part("/boot/initramfs", &fs),
            part("l", &fl),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/boot/initramfs is 2999 bytes"), "{err}");
        assert!(err.contains("holds 3000"), "{err}");
        // Kernel and initramfs swapped.
        assert!(assemble(head, "head", &split.sum, part("l", &fl), part("i", &fi)).is_err());
        // A changed head, and a changed tail.
        let mut h = head.to_vec();
        h[0x500] ^= 1;
        let err = assemble(
            &h,
            "/boot/kindling.efi.rest",
            &split.sum,
            part("i", &fi),
            part("l", &fl),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("the UKI's rest /boot/kindling.efi.rest has sha256"),
            "{err}"
        );
        // A sum whose whole differs (padding would be wrong).
        let mut sum = split.sum.clone();
        sum.sha256 = sha256(b"other");
        let err = assemble(head, "head", &sum, part("i", &fi), part("l", &fl))
            .unwrap_err()
            .to_string();
        assert!(err.contains("the assembled UKI has sha256"), "{err}");
        // A sum naming a smaller UKI than the sections reach.
        let mut sum = split.sum.clone();
        sum.size = 0x700;
        assert!(assemble(head, "head", &sum, part("i", &fi), part("l", &fl)).is_err());
        let mut t = head.to_vec();
        *t.last_mut().unwrap() ^= 1;
        let mut sum = split.sum.clone();
        sum.rest_sha256 = sha256(&t);
        let err = assemble(&t, "head", &sum, part("i", &fi), part("l", &fl))
            .unwrap_err()
            .to_string();
        assert!(err.contains("the assembled UKI has sha256"), "{err}");
        // A rest longer than the UKI.
        let mut sum = split.sum.clone();
        let mut long = head.to_vec();
        long.extend(vec![0u8; uki.len()]);
        sum.rest_sha256 = sha256(&long);
        let err = assemble(&long, "head", &sum, part("i", &fi), part("l", &fl))
            .unwrap_err()
            .to_string();
        assert!(err.contains("do not fit"), "{err}");
    }

    #[test]
    fn hostile_heads_are_errors_not_panics() {
        let uki = fake_uki(&[1; 700], &[2; 900]);
        assert!(sections(b"", "x").is_err());
        assert!(sections(b"MZ", "x").is_err());
        for cut in [0x40, 0x90, 0x180, 0x1f0] {
            assert!(sections(&uki[..cut], "x").is_err(), "cut at {cut}");
        }
        // Every single byte of the headers flipped: never a panic.
        for at in 0..0x400 {
            let mut bad = uki.clone();
            bad[at] ^= 0xff;
            let _ = sections(&bad, "x");
            let _ = split(&bad);
        }
        // Overlapping sections.
        let mut bad = uki.clone();
        let linux_ptr = 0x84 + 20 + 240 + 2 * 40 + 20;
        bad[linux_ptr..linux_ptr + 4].copy_from_slice(&0x700u32.to_le_bytes());
        let err = sections(&bad, "x").unwrap_err().to_string();
        assert!(err.contains("overlap"), "{err}");
        // No .linux.
        let mut bad = uki.clone();
        let name = 0x84 + 20 + 240 + 2 * 40;
        bad[name..name + 6].copy_from_slice(b".linuy");
        let err = sections(&bad, "x").unwrap_err().to_string();
        assert!(err.contains("no .linux section"), "{err}");
    }
}
