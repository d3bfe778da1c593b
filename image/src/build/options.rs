//! What a build is asked for: the formats, the host paths and settings of
//! `kindling image build`, and the fixed kernel command line and default
//! epoch every build shares.
//!
//! Owns the options' defaults and their validation. Must never read or
//! write a file: checking that inputs exist is `resolve`'s job.

use super::error::BuildError;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Kernel command line of every boot path: the screen and the first serial
/// port, the serial port last so it is /dev/console (tests and IPMI SOL
/// read it).
pub const CMDLINE: &str = "console=tty0 console=ttyS0,115200";

/// Default epoch when neither SOURCE_DATE_EPOCH nor git gives one
/// (2024-01-01T00:00:00Z): any fixed value keeps builds reproducible.
pub const DEFAULT_EPOCH: u32 = 1_704_067_200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    Initramfs,
    Iso,
    Disk,
    Pxe,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Initramfs => "initramfs",
            Format::Iso => "iso",
            Format::Disk => "disk",
            Format::Pxe => "pxe",
        }
    }

    /// Parses `initramfs,iso,disk,pxe` (any subset; the initramfs and
    /// kernel are always built since every other format carries them).
    pub fn parse_list(value: &str) -> Result<BTreeSet<Format>, BuildError> {
        let mut formats = BTreeSet::from([Format::Initramfs]);
        for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let format = match word {
                "initramfs" => Format::Initramfs,
                "iso" => Format::Iso,
                "disk" => Format::Disk,
                "pxe" => Format::Pxe,
                _ => {
                    return Err(BuildError::FormatUnknown {
                        value: value.to_string(),
                        format: word.to_string(),
                    })
                }
            };
            formats.insert(format);
        }
        Ok(formats)
    }
}

/// Everything `kindling image build` takes. Host paths default to Debian's.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub sites: Vec<PathBuf>,
    pub trust_keys: Vec<PathBuf>,
    pub out_dir: PathBuf,
    pub kernel: Option<PathBuf>,
    pub kernel_version: Option<String>,
    pub boot_dir: PathBuf,
    pub modules_dir: Option<PathBuf>,
    pub modules_list: Option<PathBuf>,
    pub drivers_list: Option<PathBuf>,
    pub firmware_dir: PathBuf,
    pub extra_bins: Vec<String>,
    pub artifacts: Vec<String>,
    pub debug_shell: bool,
    pub busybox: PathBuf,
    pub bin_dir: PathBuf,
    /// PID 1's binary; `None`: `kindling-init` in `bin_dir`.
    pub init_bin: Option<PathBuf>,
    pub version: String,
    pub formats: BTreeSet<Format>,
    pub source_date_epoch: u32,
    pub ca_bundle: PathBuf,
    pub ipxe_dir: PathBuf,
    pub systemd_boot_dir: PathBuf,
    /// e2fsprogs' mke2fs, put in the image (with its libraries) for the
    /// installer (docs/install.md).
    pub mke2fs: PathBuf,
    pub data_size_mib: u64,
    pub zstd_level: i32,
    /// Keep DWARF sections of extra binaries (default: removed).
    pub keep_debug: bool,
}

/// The initramfs's zstd level. 19, not 12: 1.9 MB smaller for the base
/// image (16.1 against 18.0 MB), which every boot over IPMI virtual media
/// pays for (4 s at 4 Mbit/s) and which keeps the base ISO under its
/// 30 MB bound, for about 25 s more per build. Decompression at boot costs
/// the same at any level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 19;

impl BuildOptions {
    /// Debian host paths, all formats, the crate version.
    pub fn new(sites: Vec<PathBuf>, trust_keys: Vec<PathBuf>, out_dir: PathBuf) -> Self {
        Self {
            sites,
            trust_keys,
            out_dir,
            kernel: None,
            kernel_version: None,
            boot_dir: PathBuf::from("/boot"),
            modules_dir: None,
            modules_list: None,
            drivers_list: None,
            firmware_dir: PathBuf::from("/lib/firmware"),
            extra_bins: Vec::new(),
            artifacts: Vec::new(),
            debug_shell: false,
            busybox: PathBuf::from("/bin/busybox"),
            bin_dir: PathBuf::from("target/x86_64-unknown-linux-gnu/release"),
            init_bin: None,
            version: env!("CARGO_PKG_VERSION").to_string(),
            formats: BTreeSet::from([Format::Initramfs, Format::Iso, Format::Disk, Format::Pxe]),
            source_date_epoch: DEFAULT_EPOCH,
            ca_bundle: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            ipxe_dir: PathBuf::from("/usr/lib/ipxe"),
            systemd_boot_dir: PathBuf::from("/usr/lib/systemd/boot/efi"),
            mke2fs: PathBuf::from("/sbin/mke2fs"),
            data_size_mib: 256,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            keep_debug: false,
        }
    }
}

/// Validates a version for file names and the UKI's boot-counting suffix.
pub fn check_version(version: &str) -> Result<(), BuildError> {
    let bad = |reason: &str| BuildError::VersionInvalid {
        version: version.to_string(),
        reason: reason.to_string(),
    };
    if version.is_empty() || version.len() > 64 {
        return Err(bad("use 1 to 64 characters"));
    }
    if !version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '^' | '-'))
    {
        return Err(bad(
            "use only letters, digits and . _ ~ ^ - ('+' is reserved for boot counting)",
        ));
    }
    Ok(())
}
