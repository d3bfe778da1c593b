//! The A/B slots on the EFI system partition: unified kernel images in
//! `EFI/Linux/` named `kindling-<version>[+<left>[-<done>]].efi`, the names
//! systemd-boot's boot counting reads and rewrites. A new image goes in as
//! `+3` (three tries); systemd-boot renames it on each try; the appliance
//! blesses a healthy boot by dropping the counter; an image whose tries
//! ran out sorts below the good one, so the firmware falls back to it
//! with no operator.
//!
//! Owns those names and the renames on a mounted ESP directory. Never
//! mounts, never reboots, never talks to the network.

use crate::version::Version;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Tries a new image gets before systemd-boot gives up on it.
pub const TRIES: u32 = 3;
/// Where a bundle's image lands before it gets its entry name: not
/// `*.efi`, so a power cut there never leaves a half-named boot entry.
pub const INCOMING: &str = "kindling-incoming.partial";

/// One `EFI/Linux/kindling-*.efi` entry's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryName {
    pub version: Version,
    /// `(left, done)` while counting; `None` once blessed.
    pub tries: Option<(u32, u32)>,
}

impl EntryName {
    pub fn parse(file_name: &str) -> Option<Self> {
        let stem = file_name.strip_prefix("kindling-")?.strip_suffix(".efi")?;
        let (version, counter) = match stem.split_once('+') {
            Some((v, c)) => (v, Some(c)),
            None => (stem, None),
        };
        let tries = match counter {
            None => None,
            Some(c) => {
                let (left, done) = c.split_once('-').unwrap_or((c, "0"));
                Some((left.parse().ok()?, done.parse().ok()?))
            }
        };
        Some(Self {
            version: version.parse().ok()?,
            tries,
        })
    }

    pub fn file_name(&self) -> String {
        match self.tries {
            None => format!("kindling-{}.efi", self.version),
            Some((left, 0)) => format!("kindling-{}+{left}.efi", self.version),
            Some((left, done)) => format!("kindling-{}+{left}-{done}.efi", self.version),
        }
    }

    /// Tried and given up on by systemd-boot.
    pub fn is_bad(&self) -> bool {
        matches!(self.tries, Some((0, _)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is the running image's entry; an update never replaces it")]
    Running(String),
}

/// The ESP's `EFI/Linux` directory.
pub struct Slots {
    dir: PathBuf,
}

impl Slots {
    pub fn new(esp_linux_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: esp_linux_dir.into(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> SlotError {
        let path = path.to_path_buf();
        move |source| SlotError::Io { path, source }
    }

    /// Every kindling entry, newest version first.
    pub fn entries(&self) -> Result<Vec<EntryName>, SlotError> {
        let mut out: Vec<EntryName> = std::fs::read_dir(&self.dir)
            .map_err(self.io(&self.dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| EntryName::parse(&e.file_name().to_string_lossy()))
            .collect();
        out.sort_by(|a, b| b.version.cmp(&a.version));
        Ok(out)
    }

    /// Makes room for a new image: removes every entry but the running
    /// one's, and any leftover incoming file. After this the ESP holds the
    /// running image alone, the fallback while the new one is tried.
    pub fn prepare(&self, running: &str) -> Result<(), SlotError> {
        let running = EntryName::parse(running).map(|e| e.version);
        for entry in self.entries()? {
            if Some(&entry.version) != running.as_ref() {
                let path = self.dir.join(entry.file_name());
                std::fs::remove_file(&path).map_err(self.io(&path))?;
            }
        }
        let incoming = self.dir.join(INCOMING);
        match std::fs::remove_file(&incoming) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.io(&incoming)(e)),
            _ => self.sync(),
        }
    }

    /// The name the running entry has on the ESP now. systemd-boot reports
    /// the name it found (`kindling-1+3-0.efi`) but counts the try by
    /// renaming the file before it starts it (`kindling-1+2-1.efi`), so the
    /// entry is found again by its version.
    pub fn on_disk(&self, selected: &str) -> Result<Option<EntryName>, SlotError> {
        let Some(selected) = EntryName::parse(selected) else {
            return Ok(None);
        };
        Ok(self
            .entries()?
            .into_iter()
            .find(|e| e.version == selected.version))
    }

    /// Gives the staged image (at [`INCOMING`]) its entry name with
    /// [`TRIES`] tries: from here systemd-boot tries it at the next boot.
    pub fn arm(&self, version: &Version, running: &str) -> Result<String, SlotError> {
        let name = EntryName {
            version: version.clone(),
            tries: Some((TRIES, 0)),
        }
        .file_name();
        if EntryName::parse(running).is_some_and(|r| r.version == *version) {
            return Err(SlotError::Running(name));
        }
        let from = self.dir.join(INCOMING);
        let to = self.dir.join(&name);
        std::fs::rename(&from, &to).map_err(self.io(&to))?;
        self.sync_renamed(&to)?;
        Ok(name)
    }

    /// The running image passed its health gate: its entry loses the
    /// counter, so systemd-boot boots it from now on. Returns the new name
    /// (the same when it had no counter).
    pub fn bless(&self, running: &str) -> Result<String, SlotError> {
        let Some(mut entry) = self.on_disk(running)? else {
            return Err(SlotError::Io {
                path: self.dir.join(running),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no entry of the running version on the ESP",
                ),
            });
        };
        let current = entry.file_name();
        if entry.tries.is_none() {
            return Ok(current);
        }
        entry.tries = None;
        let blessed = entry.file_name();
        let (from, to) = (self.dir.join(&current), self.dir.join(&blessed));
        std::fs::rename(&from, &to).map_err(self.io(&from))?;
        self.sync_renamed(&to)?;
        Ok(blessed)
    }

    /// Versions newer than `running` whose tries ran out: updates that
    /// failed here and were rolled back by the firmware.
    pub fn failed_updates(&self, running: &Version) -> Result<Vec<Version>, SlotError> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| e.is_bad() && e.version > *running)
            .map(|e| e.version)
            .collect())
    }

    /// After a rename on the ESP: the file first, then the directory.
    /// Linux's FAT driver writes a renamed file's new directory entry with
    /// no clusters and size 0 and fills it in only when the file's inode is
    /// written back (some 30 s later); syncing the directory alone removes
    /// the old entry for good. A power cut in between left the running
    /// image as an empty `kindling-V.efi` and nothing to boot (seen in the
    /// lab's power-loss scenario, docs/updates.md).
    fn sync_renamed(&self, renamed: &Path) -> Result<(), SlotError> {
        File::open(renamed)
            .and_then(|f| f.sync_all())
            .map_err(self.io(renamed))?;
        self.sync()
    }

    fn sync(&self) -> Result<(), SlotError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io(&self.dir))
    }
}

/// The entry systemd-boot booted, from its `LoaderEntrySelected` EFI
/// variable (efivarfs: 4 attribute bytes, then UTF-16LE with a NUL).
pub fn selected_entry(efivar: &[u8]) -> Option<String> {
    let text = efivar.get(4..)?;
    let units: Vec<u16> = text
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16(&units).ok().filter(|s| !s.is_empty())
}

/// efivarfs' name of that variable.
pub const LOADER_ENTRY_SELECTED: &str =
    "/sys/firmware/efi/efivars/LoaderEntrySelected-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn entry_names_round_trip_the_boot_counting_forms() {
        for (name, version, tries) in [
            ("kindling-1.4.efi", "1.4", None),
            ("kindling-1.4+3.efi", "1.4", Some((3, 0))),
            ("kindling-1.4+2-1.efi", "1.4", Some((2, 1))),
            ("kindling-0.1.0+0-3.efi", "0.1.0", Some((0, 3))),
        ] {
            let e = EntryName::parse(name).unwrap();
            assert_eq!((e.version.clone(), e.tries), (v(version), tries), "{name}");
            assert_eq!(e.file_name(), name);
        }
        for other in [
            "systemd-bootx64.efi",
            "kindling-.efi",
            "kindling-1.4+x.efi",
            "kindling-1.4.img",
        ] {
            assert_eq!(EntryName::parse(other), None, "{other}");
        }
        assert!(EntryName::parse("kindling-2+0-3.efi").unwrap().is_bad());
        assert!(!EntryName::parse("kindling-2+1-2.efi").unwrap().is_bad());
    }

    #[test]
    fn prepare_arm_bless_and_a_rollback_seen_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        for f in [
            "kindling-1.efi",
            "kindling-0.9.efi",
            "kindling-0.8+0-3.efi",
            "systemd-bootx64.efi",
        ] {
            std::fs::write(dir.path().join(f), f).unwrap();
        }
        std::fs::write(dir.path().join(INCOMING), "half").unwrap();
        slots.prepare("kindling-1.efi").unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["kindling-1.efi", "systemd-bootx64.efi"]);

        std::fs::write(dir.path().join(INCOMING), "v2").unwrap();
        let armed = slots.arm(&v("2"), "kindling-1.efi").unwrap();
        assert_eq!(armed, "kindling-2+3.efi");
        assert_eq!(std::fs::read(dir.path().join(&armed)).unwrap(), b"v2");

        // systemd-boot counted one try by renaming the file, but reports
        // the name it found (LoaderEntrySelected); the health gate passed.
        std::fs::rename(
            dir.path().join(&armed),
            dir.path().join("kindling-2+2-1.efi"),
        )
        .unwrap();
        assert_eq!(slots.bless("kindling-2+3.efi").unwrap(), "kindling-2.efi");
        assert_eq!(slots.bless("kindling-2.efi").unwrap(), "kindling-2.efi");
        assert!(slots.failed_updates(&v("2")).unwrap().is_empty());

        // The next update never came up: its tries ran out, 2 booted again.
        std::fs::write(dir.path().join("kindling-3+0-3.efi"), "v3").unwrap();
        assert_eq!(slots.failed_updates(&v("2")).unwrap(), [v("3")]);
        assert_eq!(
            slots
                .entries()
                .unwrap()
                .iter()
                .map(EntryName::file_name)
                .collect::<Vec<_>>(),
            ["kindling-3+0-3.efi", "kindling-2.efi", "kindling-1.efi"]
        );
        assert!(matches!(
            slots.arm(&v("2"), "kindling-2+3.efi"),
            Err(SlotError::Running(_))
        ));
    }

    #[test]
    fn the_selected_entry_is_read_from_its_efi_variable() {
        let mut var = vec![6, 0, 0, 0];
        for u in "kindling-2+2-1.efi".encode_utf16().chain([0]) {
            var.extend(u.to_le_bytes());
        }
        assert_eq!(selected_entry(&var).as_deref(), Some("kindling-2+2-1.efi"));
        assert_eq!(selected_entry(&[6, 0, 0, 0, 0, 0]), None);
        assert_eq!(selected_entry(&[1]), None);
    }
}
