//! The input check of a build: kernel and modules, the appliance and extra
//! binaries, trust keys, signed site overlays, artifacts, firmware, the CA
//! bundle, iPXE and the optional debug shell, gathered into the image
//! contents.
//!
//! Owns deciding whether every input is usable before anything is written.
//! Must never write a file: a failed check leaves `--out` untouched.

use super::error::BuildError;
use super::initramfs::ImageContents;
use super::options::BuildOptions;
use super::report::Reporter;
use super::{elf, inputs, kernel, modules, tool};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Checks every input and gathers the image contents; writes nothing.
pub(super) fn resolve(
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<(ImageContents, kernel::Kernel), BuildError> {
    let kernel_path = match &options.kernel {
        Some(path) => path.clone(),
        None => kernel::find_default(&options.boot_dir)?,
    };
    let kernel = kernel::inspect(&kernel_path, options.kernel_version.as_deref())?;
    let modules_dir = options
        .modules_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/lib/modules").join(&kernel.version));
    if !modules_dir.join("modules.dep").is_file() {
        return Err(BuildError::ModulesDirMissing {
            version: kernel.version.clone(),
            path: modules_dir,
        });
    }

    let init = match &options.init_bin {
        Some(path) => inputs::init_binary(path)?,
        None => inputs::appliance_binary(&options.bin_dir, "kindling-init", "/init")?,
    };
    let kindlingd = inputs::appliance_binary(&options.bin_dir, "kindlingd", "/bin/kindlingd")?;
    // Not run on the appliance: the PXE service hands it to provisioned
    // nodes by its sha256 (kindling_pxe::node_files).
    let node_agent = inputs::appliance_binary(
        &options.bin_dir,
        "kindling-node",
        "/usr/share/kindling/node/kindling-node",
    )?;
    let mut binaries = vec![kindlingd, node_agent];
    let mut libraries = Vec::new();
    let mut names: BTreeSet<String> = BTreeSet::from([
        "kindlingd".to_string(),
        "kindling-node".to_string(),
        "busybox".to_string(),
        "mke2fs".to_string(),
    ]);
    // The installer's mke2fs (no Rust crate makes ext4), with its libraries.
    let (mke2fs, mke2fs_libs) =
        inputs::extra_binary("mke2fs", &options.mke2fs).map_err(|err| match err {
            BuildError::BinaryMissing { path, .. } => BuildError::HostFileMissing {
                input: "mke2fs (the installer formats the data partition with it)".to_string(),
                path,
                fix: "install it with `apt-get install e2fsprogs`".to_string(),
            },
            other => other,
        })?;
    binaries.push(mke2fs);
    libraries.extend(mke2fs_libs);
    for arg in &options.extra_bins {
        let (name, path) = inputs::parse_name_path(arg)
            .ok_or_else(|| BuildError::ExtraBinSyntax { arg: arg.clone() })?;
        if !names.insert(name.clone()) {
            return Err(BuildError::ExtraBinDuplicate { name });
        }
        let (binary, libs) = inputs::extra_binary(&name, &path)?;
        if binary.linkage == "dynamic" {
            reporter.warn(&format!(
                "--extra-bin {name} ({}) is dynamically linked: adding its loader and {} libraries to the image",
                path.display(),
                libs.len().saturating_sub(1)
            ));
        }
        binaries.push(binary);
        libraries.extend(libs);
    }
    libraries.sort_by(|a, b| a.image_path.cmp(&b.image_path));
    libraries.dedup_by(|a, b| a.image_path == b.image_path);

    if options.trust_keys.is_empty() {
        return Err(BuildError::TrustKeyNone);
    }
    let mut trust_keys = options
        .trust_keys
        .iter()
        .map(|p| inputs::trust_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    inputs::dedupe_key_names(&mut trust_keys);
    let mut overlays: Vec<inputs::Overlay> = Vec::new();
    for site in &options.sites {
        let overlay = inputs::overlay(site, &trust_keys)?;
        if let Some(first) = overlays.iter().find(|o| o.file_name == overlay.file_name) {
            return Err(BuildError::OverlayDuplicate {
                name: overlay.file_name,
                first: first.path.clone(),
                second: overlay.path,
            });
        }
        overlays.push(overlay);
    }

    let mut artifacts: Vec<(String, PathBuf)> = Vec::new();
    for arg in &options.artifacts {
        let (name, path) = inputs::parse_name_path(arg)
            .ok_or_else(|| BuildError::ArtifactSyntax { arg: arg.clone() })?;
        if artifacts.iter().any(|(n, _)| *n == name) {
            return Err(BuildError::ArtifactDuplicate { name });
        }
        let path = inputs::host_file(
            &format!("--artifact {name}"),
            &path,
            "pass the path of an existing file",
        )?;
        artifacts.push((name, path));
    }

    let list_text = match &options.modules_list {
        Some(path) => {
            fs::read_to_string(path).map_err(BuildError::io("read modules list", path))?
        }
        None => modules::DEFAULT_MODULES_LIST.to_string(),
    };
    let drivers_text = match &options.drivers_list {
        Some(path) => {
            fs::read_to_string(path).map_err(BuildError::io("read drivers list", path))?
        }
        None => modules::DEFAULT_DRIVERS_LIST.to_string(),
    };
    let tree = modules::ModuleTree::open(&modules_dir)?;
    let selection = tree.select(
        &modules::parse_list(&list_text),
        &modules::parse_list(&drivers_text),
    );
    if !selection.absent.is_empty() {
        reporter.warn(&format!(
            "kernel {} has no module {} (skipped)",
            kernel.version,
            selection.absent.join(", ")
        ));
    }
    let module_indexes = tree.filtered_indexes(&selection)?;
    let (firmware, firmware_missing) =
        modules::locate_firmware(&options.firmware_dir, &tree.firmware_names(&selection)?);
    if !firmware_missing.is_empty() {
        reporter.warn(&format!(
            "{} firmware files named by included modules are not in {} (e.g. {}); install Debian's firmware-* packages if the appliance's NICs need them",
            firmware_missing.len(),
            options.firmware_dir.display(),
            firmware_missing.first().map(String::as_str).unwrap_or("")
        ));
    }

    let ca_bundle = inputs::host_file(
        "CA bundle",
        &options.ca_bundle,
        "install it with `apt-get install ca-certificates`",
    )?;
    let mut ipxe = Vec::new();
    for name in ["undionly.kpxe", "ipxe.efi", "snponly.efi"] {
        let path = inputs::host_file(
            "iPXE binary",
            &options.ipxe_dir.join(name),
            "install it with `apt-get install ipxe`",
        )?;
        ipxe.push((name.to_string(), path));
    }

    let busybox = if options.debug_shell {
        Some(debug_shell(&options.busybox)?)
    } else {
        None
    };

    let contents = ImageContents {
        version: options.version.clone(),
        kernel_version: kernel.version.clone(),
        init: Some(init),
        binaries,
        libraries,
        overlays,
        trust_keys,
        modules_dir: Some(modules_dir),
        modules: selection,
        module_indexes,
        firmware,
        firmware_missing,
        ca_bundle: Some(ca_bundle),
        ipxe,
        artifacts,
        busybox,
    };
    Ok((contents, kernel))
}

/// Busybox (static) and the applet paths it provides.
fn debug_shell(busybox: &Path) -> Result<(PathBuf, Vec<String>), BuildError> {
    let path = inputs::host_file(
        "busybox (for --debug-shell)",
        busybox,
        "install it with `apt-get install busybox-static` or pass --busybox PATH",
    )?;
    let needs = elf::dynamic_needs(&path).map_err(|reason| BuildError::BinaryNotElf {
        what: "busybox".to_string(),
        path: path.clone(),
        reason,
    })?;
    if !needs.is_static() {
        return Err(BuildError::BinaryNotElf {
            what: "busybox".to_string(),
            path,
            reason: "dynamically linked; install busybox-static".to_string(),
        });
    }
    let listing = tool::BUSYBOX.run_program(
        path.as_os_str(),
        "listing busybox applets",
        ["--list-full"],
        &[],
        None,
    )?;
    let applets = String::from_utf8_lossy(&listing)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains(".."))
        .map(str::to_string)
        .collect();
    Ok((path, applets))
}
