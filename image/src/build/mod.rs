//! `kindling image build`: from checked inputs to boot media in one pass.
//!
//! Order: check every input (nothing written yet) → lay out and write the
//! initramfs → kernel → ISO, UKI + raw disk, PXE directory → hash everything
//! → manifest. All of it happens in a staging directory inside `--out`;
//! only a complete build is moved into place (rename), manifest last, so a
//! failed build never leaves artifacts that look valid.
//!
//! This module owns that order and the staging directory. What a build is
//! asked for is in `options`, progress and the result in `report`, input
//! checking in `resolve`, the manifest in `checksums` and the final move in
//! `publish`; each artifact format has its own module (`initramfs`, `iso`,
//! `uki`, `disk`, `pxe`).

pub mod cpio;
pub mod disk;
pub mod elf;
pub mod error;
pub mod initramfs;
pub mod inputs;
pub mod iso;
pub mod kernel;
pub mod manifest;
pub mod modules;
pub mod pxe;
pub mod rootfs;
pub mod services;
pub mod strip;
pub mod tool;
pub mod uki;

mod checksums;
mod options;
mod publish;
mod report;
mod resolve;

use std::fs;

pub use error::BuildError;
pub use options::{
    check_version, BuildOptions, Format, CMDLINE, DEFAULT_EPOCH, DEFAULT_ZSTD_LEVEL,
};
pub use report::{human_size, BuildReport, Reporter, Silent};

/// The whole build. On error nothing in `out_dir` changes.
pub fn build(options: &BuildOptions, reporter: &dyn Reporter) -> Result<BuildReport, BuildError> {
    check_version(&options.version)?;
    let contents_and_kernel = resolve::resolve(options, reporter)?;
    let (mut contents, kernel) = contents_and_kernel;

    fs::create_dir_all(&options.out_dir).map_err(|err| BuildError::OutDirUnwritable {
        path: options.out_dir.clone(),
        reason: err.to_string(),
    })?;
    let staging = tempfile::Builder::new()
        .prefix(".kindling-build-")
        .tempdir_in(&options.out_dir)
        .map_err(|err| BuildError::OutDirUnwritable {
            path: options.out_dir.clone(),
            reason: err.to_string(),
        })?;
    let stage = staging.path();
    let work = stage.join(".work");
    fs::create_dir_all(&work).map_err(BuildError::io("create", &work))?;

    if !options.keep_debug {
        for binary in contents
            .binaries
            .iter_mut()
            .filter(|b| b.image_path != "/bin/kindlingd")
        {
            if strip::has_debug_sections(&binary.source) {
                reporter.step(&format!("removing debug sections from {}", binary.name));
                let before = fs::metadata(&binary.source).map(|m| m.len()).unwrap_or(0);
                binary.installed = Some(strip::strip_debug(&binary.source, &binary.name, &work)?);
                let after = binary
                    .installed
                    .as_ref()
                    .and_then(|p| fs::metadata(p).ok())
                    .map(|m| m.len())
                    .unwrap_or(0);
                reporter.done(&format!("{} → {}", human_size(before), human_size(after)));
            }
        }
    }

    reporter.step("initramfs");
    let tree = initramfs::layout(&contents);
    let initramfs_path = stage.join("initramfs.cpio.zst");
    initramfs::write_compressed(
        &tree,
        options.source_date_epoch,
        options.zstd_level,
        &initramfs_path,
    )?;
    let initramfs_size = fs::metadata(&initramfs_path)
        .map_err(BuildError::io("read", &initramfs_path))?
        .len();
    reporter.done(&format!(
        "{} entries, {}",
        tree.len(),
        human_size(initramfs_size)
    ));

    let kernel_path = stage.join("vmlinuz");
    fs::copy(&kernel.path, &kernel_path).map_err(BuildError::io("copy kernel", &kernel.path))?;

    // The UKI: slot A of the raw disk, and on the ISO for the installer
    // (docs/install.md), which also takes systemd-boot from there.
    let systemd_boot = options.systemd_boot_dir.join("systemd-bootx64.efi");
    let uki_path = stage.join("kindling.efi");
    if options.formats.contains(&Format::Iso) || options.formats.contains(&Format::Disk) {
        reporter.step("UKI");
        uki::build(
            &uki::UkiInputs {
                stub: &options.systemd_boot_dir.join("linuxx64.efi.stub"),
                kernel: &kernel_path,
                initramfs: &initramfs_path,
                cmdline: CMDLINE,
                version: &options.version,
                kernel_version: &kernel.version,
            },
            &work,
            &uki_path,
        )?;
        let size = fs::metadata(&uki_path)
            .map_err(BuildError::io("read", &uki_path))?
            .len();
        reporter.done(&human_size(size));
    }
    if options.formats.contains(&Format::Iso) {
        reporter.step("ISO (grub-mkrescue)");
        let iso = stage.join("kindling.iso");
        iso::build(
            &iso::IsoInputs {
                kernel: &kernel_path,
                initramfs: &initramfs_path,
                uki: &uki_path,
                systemd_boot: &systemd_boot,
                version: &options.version,
                cmdline: CMDLINE,
            },
            &work,
            &iso,
        )?;
        reporter.done("hybrid BIOS+UEFI, with the UKI for the installer");
    }
    if options.formats.contains(&Format::Disk) {
        reporter.step("raw GPT disk");
        disk::build(
            &disk::DiskInputs {
                uki: &uki_path,
                systemd_boot: &systemd_boot,
                version: &options.version,
                data_size_mib: options.data_size_mib,
                epoch: options.source_date_epoch,
            },
            &work,
            &stage.join("kindling.img"),
        )?;
        reporter.done(&format!(
            "slot A = EFI/Linux/{}",
            disk::slot_a_name(&options.version)
        ));
    }
    if !options.formats.contains(&Format::Disk) && uki_path.exists() {
        // Published with the disk only (`kindling update build` bundles it).
        fs::remove_file(&uki_path).map_err(BuildError::io("remove", &uki_path))?;
    }
    if options.formats.contains(&Format::Pxe) {
        pxe::build(
            &kernel_path,
            &initramfs_path,
            &options.version,
            CMDLINE,
            &stage.join("pxe"),
        )?;
    }
    fs::remove_dir_all(&work).map_err(BuildError::io("clean up", &work))?;

    reporter.step("checksums");
    let manifest = checksums::make_manifest(options, &contents, &kernel, tree.len(), stage)?;
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(|err| BuildError::Io {
        action: "serialize manifest",
        path: stage.join("manifest.json"),
        source: err.into(),
    })?;
    let manifest_path = stage.join("manifest.json");
    fs::write(&manifest_path, [manifest_json.as_slice(), b"\n"].concat())
        .map_err(BuildError::io("write", &manifest_path))?;
    reporter.done(&format!("{} artifacts", manifest.artifacts.len()));

    publish::publish(stage, &options.out_dir)?;
    Ok(BuildReport {
        out_dir: options.out_dir.clone(),
        manifest,
    })
}
