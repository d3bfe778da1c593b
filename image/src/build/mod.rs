//! `kindling image build`: from checked inputs to boot media in one pass.
//!
//! Order: check every input (nothing written yet) → lay out and write the
//! initramfs → kernel → ISO, UKI + raw disk, PXE directory → hash everything
//! → manifest. All of it happens in a staging directory inside `--out`;
//! only a complete build is moved into place (rename), manifest last, so a
//! failed build never leaves artifacts that look valid.

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

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

pub use error::BuildError;
use initramfs::ImageContents;
use manifest::{
    ArtifactRecord, BinaryRecord, FirmwareRecord, Manifest, ModulesRecord, OverlayRecord,
};

/// Kernel command line of every boot path: the screen and the first serial
/// port, the serial port last so it is /dev/console (tests and IPMI SOL
/// read it).
pub const CMDLINE: &str = "console=tty0 console=ttyS0,115200";

/// Default epoch when neither SOURCE_DATE_EPOCH nor git gives one
/// (2024-01-01T00:00:00Z): any fixed value keeps builds reproducible.
pub const DEFAULT_EPOCH: u32 = 1_704_067_200;

/// The artifact names a build may publish (stale ones from an earlier build
/// with other formats are removed so the directory matches the manifest).
const ARTIFACT_NAMES: &[&str] = &[
    "vmlinuz",
    "initramfs.cpio.zst",
    "kindling.iso",
    "kindling.img",
    "pxe",
];

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
    pub version: String,
    pub formats: BTreeSet<Format>,
    pub source_date_epoch: u32,
    pub ca_bundle: PathBuf,
    pub ipxe_dir: PathBuf,
    pub systemd_boot_dir: PathBuf,
    pub data_size_mib: u64,
    pub zstd_level: i32,
    /// Keep DWARF sections of extra binaries (default: removed).
    pub keep_debug: bool,
}

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
            version: env!("CARGO_PKG_VERSION").to_string(),
            formats: BTreeSet::from([Format::Initramfs, Format::Iso, Format::Disk, Format::Pxe]),
            source_date_epoch: DEFAULT_EPOCH,
            ca_bundle: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            ipxe_dir: PathBuf::from("/usr/lib/ipxe"),
            systemd_boot_dir: PathBuf::from("/usr/lib/systemd/boot/efi"),
            data_size_mib: 256,
            zstd_level: 12,
            keep_debug: false,
        }
    }
}

/// How the build tells its caller what it is doing (progress bars in the
/// CLI, nothing in tests).
pub trait Reporter {
    /// A slow step starts.
    fn step(&self, name: &str);
    /// The current step finished.
    fn done(&self, detail: &str);
    /// Something the operator should know that does not stop the build.
    fn warn(&self, message: &str);
}

/// A reporter that drops everything (tests, library callers).
pub struct Silent;

impl Reporter for Silent {
    fn step(&self, _name: &str) {}
    fn done(&self, _detail: &str) {}
    fn warn(&self, _message: &str) {}
}

#[derive(Debug, Clone)]
pub struct BuildReport {
    pub out_dir: PathBuf,
    pub manifest: Manifest,
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

/// The whole build. On error nothing in `out_dir` changes.
pub fn build(options: &BuildOptions, reporter: &dyn Reporter) -> Result<BuildReport, BuildError> {
    check_version(&options.version)?;
    let contents_and_kernel = resolve(options, reporter)?;
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

    if options.formats.contains(&Format::Iso) {
        reporter.step("ISO (grub-mkrescue)");
        let iso = stage.join("kindling.iso");
        iso::build(
            &kernel_path,
            &initramfs_path,
            &options.version,
            CMDLINE,
            &work,
            &iso,
        )?;
        reporter.done("hybrid BIOS+UEFI");
    }
    if options.formats.contains(&Format::Disk) {
        reporter.step("UKI + raw GPT disk");
        let uki_path = work.join("kindling.efi");
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
        disk::build(
            &disk::DiskInputs {
                uki: &uki_path,
                systemd_boot: &options.systemd_boot_dir.join("systemd-bootx64.efi"),
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
    let manifest = make_manifest(options, &contents, &kernel, tree.len(), stage)?;
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(|err| BuildError::Io {
        action: "serialize manifest",
        path: stage.join("manifest.json"),
        source: err.into(),
    })?;
    let manifest_path = stage.join("manifest.json");
    fs::write(&manifest_path, [manifest_json.as_slice(), b"\n"].concat())
        .map_err(BuildError::io("write", &manifest_path))?;
    reporter.done(&format!("{} artifacts", manifest.artifacts.len()));

    publish(stage, &options.out_dir)?;
    Ok(BuildReport {
        out_dir: options.out_dir.clone(),
        manifest,
    })
}

/// Checks every input and gathers the image contents; writes nothing.
fn resolve(
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

    let init = inputs::appliance_binary(&options.bin_dir, "kindling-init", "/init")?;
    let kindlingd = inputs::appliance_binary(&options.bin_dir, "kindlingd", "/bin/kindlingd")?;
    let mut binaries = vec![kindlingd];
    let mut libraries = Vec::new();
    let mut names: BTreeSet<String> =
        BTreeSet::from(["kindlingd".to_string(), "busybox".to_string()]);
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

fn make_manifest(
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

/// Moves the staged build into `out_dir`: artifacts first, manifest last;
/// artifacts of formats not built this time are removed so the directory
/// holds exactly what the manifest lists.
fn publish(stage: &Path, out_dir: &Path) -> Result<(), BuildError> {
    let manifest = out_dir.join("manifest.json");
    // Without a manifest the directory reads as "no complete build" while
    // the artifacts are being swapped.
    remove_any(&manifest)?;
    for name in ARTIFACT_NAMES {
        let from = stage.join(name);
        let to = out_dir.join(name);
        remove_any(&to)?;
        if from.exists() {
            fs::rename(&from, &to).map_err(BuildError::io("move into place", &to))?;
        }
    }
    fs::rename(stage.join("manifest.json"), &manifest)
        .map_err(BuildError::io("move into place", &manifest))
}

fn remove_any(path: &Path) -> Result<(), BuildError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(path).map_err(BuildError::io("replace", path))
        }
        Ok(_) => fs::remove_file(path).map_err(BuildError::io("replace", path)),
        Err(_) => Ok(()),
    }
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
