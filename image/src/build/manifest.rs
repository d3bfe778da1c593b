//! `manifest.json`: what one build produced and from what: version, kernel,
//! every artifact's size and sha256, the binaries, overlays, modules and
//! firmware in the image. Tests, the lab and operators read it; it is
//! written last, so its presence means the build completed.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub version: String,
    pub kernel_version: String,
    pub kernel_source: String,
    pub cmdline: String,
    pub source_date_epoch: u32,
    pub formats: Vec<String>,
    pub artifacts: Vec<ArtifactRecord>,
    pub binaries: Vec<BinaryRecord>,
    pub overlays: Vec<OverlayRecord>,
    pub trust_keys: Vec<String>,
    pub modules: ModulesRecord,
    pub firmware: FirmwareRecord,
    pub debug_shell: bool,
    pub initramfs_entries: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArtifactRecord {
    /// Path relative to the output directory (`pxe/boot.ipxe`).
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BinaryRecord {
    pub name: String,
    pub image_path: String,
    pub source: String,
    pub linkage: String,
    /// Size and sha256 of the source file (as the operator gave it).
    pub size: u64,
    pub sha256: String,
    /// The image holds a copy without DWARF sections (`--keep-debug` keeps them).
    pub debug_sections_removed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverlayRecord {
    pub file: String,
    /// Name and version from the overlay's signed manifest.
    pub name: String,
    pub version: u64,
    pub sha256: String,
    pub signed_by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModulesRecord {
    /// Loaded at every boot (/etc/kindling/modules.list).
    pub load: Vec<String>,
    /// Carried for init's modalias matching.
    pub drivers: Vec<String>,
    pub builtin: Vec<String>,
    pub absent: Vec<String>,
    pub files: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FirmwareRecord {
    pub included: Vec<String>,
    pub missing: Vec<String>,
}

/// (size, hex sha256) of a file, streamed.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
