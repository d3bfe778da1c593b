//! The build's manifest: hashes of every staged artifact and of the inputs
//! (binaries, overlays), with the kernel, modules and firmware that went in.
//!
//! Owns assembling the `Manifest` from a finished staging directory. Must
//! never change an artifact: it only reads and hashes.

use super::error::BuildError;
use super::initramfs::ImageContents;
use super::kernel;
use super::manifest::{
    self, ArtifactRecord, BinaryRecord, FirmwareRecord, Manifest, ModulesRecord, OverlayRecord,
};
use super::options::{BuildOptions, Format, CMDLINE};
use std::path::Path;

pub(super) fn make_manifest(
    options: &BuildOptions,
    contents: &ImageContents,
    kernel: &kernel::Kernel,
    entries: usize,
    stage: &Path,
) -> Result<Manifest, BuildError> {
    let mut artifacts = Vec::new();
    let mut paths = vec!["initramfs.cpio.zst".to_string(), "vmlinuz".to_string()];
    if options.formats.contains(&Format::Iso) {
        paths.push("kindling.iso".to_string());
    }
    if options.formats.contains(&Format::Disk) {
        paths.push("kindling.img".to_string());
        paths.push("kindling.efi".to_string());
    }
    if options.formats.contains(&Format::Pxe) {
        for name in ["boot.ipxe", "initramfs.cpio.zst", "vmlinuz"] {
            paths.push(format!("pxe/{name}"));
        }
    }
    for path in paths {
        let full = stage.join(&path);
        let (size, sha256) = manifest::hash_file(&full).map_err(BuildError::io("hash", &full))?;
        artifacts.push(ArtifactRecord { path, size, sha256 });
    }
    let mut binaries = Vec::new();
    for binary in contents.init.iter().chain(contents.binaries.iter()) {
        let (size, sha256) =
            manifest::hash_file(&binary.source).map_err(BuildError::io("hash", &binary.source))?;
        binaries.push(BinaryRecord {
            name: binary.name.clone(),
            image_path: binary.image_path.clone(),
            source: binary.source.display().to_string(),
            linkage: binary.linkage.to_string(),
            size,
            sha256,
            debug_sections_removed: binary.installed.is_some(),
        });
    }
    let mut overlays = Vec::new();
    for overlay in &contents.overlays {
        let (_, sha256) =
            manifest::hash_file(&overlay.path).map_err(BuildError::io("hash", &overlay.path))?;
        overlays.push(OverlayRecord {
            file: overlay.file_name.clone(),
            name: overlay.name.clone(),
            version: overlay.version,
            sha256,
            signed_by: overlay.signed_by.display().to_string(),
        });
    }
    Ok(Manifest {
        version: options.version.clone(),
        kernel_version: kernel.version.clone(),
        kernel_source: kernel.path.display().to_string(),
        cmdline: CMDLINE.to_string(),
        source_date_epoch: options.source_date_epoch,
        formats: options
            .formats
            .iter()
            .map(|f| f.name().to_string())
            .collect(),
        artifacts,
        binaries,
        overlays,
        trust_keys: contents
            .trust_keys
            .iter()
            .map(|k| k.file_name.clone())
            .collect(),
        modules: ModulesRecord {
            load: contents.modules.load.clone(),
            drivers: contents.modules.drivers.clone(),
            builtin: contents.modules.builtin.clone(),
            absent: contents.modules.absent.clone(),
            files: contents.modules.files.len(),
        },
        firmware: FirmwareRecord {
            included: contents
                .firmware
                .iter()
                .map(|(name, _)| name.clone())
                .collect(),
            missing: contents.firmware_missing.clone(),
        },
        debug_shell: options.debug_shell,
        initramfs_entries: entries,
    })
}
