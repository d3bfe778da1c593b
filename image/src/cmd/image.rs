//! `kindling image build`: argument parsing, progress display and the final
//! summary table. The build itself is `kindling_image::build`.

use std::path::PathBuf;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use kindling_image::build::{self, BuildOptions, Format, Reporter};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Build the boot media: initramfs, kernel, hybrid ISO, raw GPT disk (UKI, A/B), PXE files, manifest.
    // Boxed: the argument set is large next to the other command groups.
    #[command(
        after_help = "Example:\n  kindling image build --site lab.kovl --trust-key keys/kindling.pub --out build/image"
    )]
    Build(Box<BuildArgs>),
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Signed site overlay NAME.kovl (with NAME.kovl.minisig beside it); repeat to stack, lowest first.
    #[arg(long = "site", value_name = "FILE.kovl", required = true)]
    sites: Vec<PathBuf>,
    /// Public key (minisign format) the appliance trusts for overlays; repeatable.
    #[arg(long = "trust-key", value_name = "PUB")]
    trust_keys: Vec<PathBuf>,
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Kernel bzImage (default: the newest /boot/vmlinuz-*-amd64).
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Kernel release, if it cannot be read from the kernel image.
    #[arg(long, value_name = "RELEASE")]
    kernel_version: Option<String>,
    /// Module tree of the kernel (default: /lib/modules/<release>).
    #[arg(long, value_name = "DIR")]
    modules_dir: Option<PathBuf>,
    /// Modules loaded at every boot (default: kernel-config/modules.list, built into this CLI).
    #[arg(long, value_name = "FILE")]
    modules_list: Option<PathBuf>,
    /// Hardware drivers carried and loaded by modalias (default: kernel-config/drivers.list, built in).
    #[arg(long, value_name = "FILE")]
    drivers_list: Option<PathBuf>,
    /// Firmware tree the modules' firmware is taken from.
    #[arg(long, value_name = "DIR", default_value = "/lib/firmware")]
    firmware_dir: PathBuf,
    /// Extra binary NAME=PATH installed as /bin/NAME (e.g. vault=build/tools/bao); repeatable.
    #[arg(long = "extra-bin", value_name = "NAME=PATH")]
    extra_bins: Vec<String>,
    /// File served to nodes as /usr/share/kindling/artifacts/NAME; repeatable.
    #[arg(long = "artifact", value_name = "NAME=PATH")]
    artifacts: Vec<String>,
    /// Keep DWARF debug sections of --extra-bin binaries (removed by default: OpenBao halves in size).
    #[arg(long)]
    keep_debug: bool,
    /// Add busybox and its applet links (troubleshooting only: the image is no longer sealed).
    #[arg(long)]
    debug_shell: bool,
    /// Static busybox used by --debug-shell.
    #[arg(long, value_name = "PATH", default_value = "/bin/busybox")]
    busybox: PathBuf,
    /// Where kindling-init and kindlingd are (built by `cargo build --release -p kindling-init -p kindlingd`).
    /// Default: target/x86_64-unknown-linux-gnu/release in the current directory, else the directory of this `kindling`.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// PID 1 (`/init`). Default: the musl build
    /// (`cargo build --release -p kindling-init --target x86_64-unknown-linux-musl`,
    /// 1.3 MB instead of 2.2 MB with glibc) when it exists, else kindling-init in --bin-dir.
    #[arg(long, value_name = "PATH")]
    init_bin: Option<PathBuf>,
    /// Image version (default: this CLI's version).
    #[arg(long, value_name = "V")]
    version: Option<String>,
    /// Formats to build, comma-separated: initramfs,iso,disk,pxe (kernel and initramfs always).
    #[arg(long, value_name = "LIST", default_value = "initramfs,iso,disk,pxe")]
    formats: String,
    /// Size of the empty KINDLING-DATA partition in the raw disk, MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    data_size_mib: u64,
    /// zstd level of the initramfs (1-19; higher is smaller and slower).
    #[arg(long, value_name = "N", default_value_t = build::DEFAULT_ZSTD_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    zstd_level: i32,
    /// CA bundle copied to /etc/ssl/certs/ca-certificates.crt.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/ssl/certs/ca-certificates.crt",
        hide = true
    )]
    ca_bundle: PathBuf,
    /// Directory with undionly.kpxe, ipxe.efi and snponly.efi.
    #[arg(long, value_name = "DIR", default_value = "/usr/lib/ipxe", hide = true)]
    ipxe_dir: PathBuf,
    /// Directory with systemd-bootx64.efi and linuxx64.efi.stub.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/usr/lib/systemd/boot/efi",
        hide = true
    )]
    systemd_boot_dir: PathBuf,
    /// e2fsprogs' mke2fs for the installer (copied with its libraries).
    #[arg(long, value_name = "PATH", default_value = "/sbin/mke2fs", hide = true)]
    mke2fs: PathBuf,
    /// Directory searched for the default kernel.
    #[arg(long, value_name = "DIR", default_value = "/boot", hide = true)]
    boot_dir: PathBuf,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Build(args) => build_image(*args),
    }
}

fn build_image(args: BuildArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut options = BuildOptions::new(args.sites, args.trust_keys, args.out);
    options.kernel = args.kernel;
    options.kernel_version = args.kernel_version;
    options.boot_dir = args.boot_dir;
    options.modules_dir = args.modules_dir;
    options.modules_list = args.modules_list;
    options.drivers_list = args.drivers_list;
    options.firmware_dir = args.firmware_dir;
    options.extra_bins = args.extra_bins;
    options.artifacts = args.artifacts;
    options.debug_shell = args.debug_shell;
    options.busybox = args.busybox;
    options.init_bin = args
        .init_bin
        .or_else(|| default_init_bin(args.bin_dir.is_some()));
    options.bin_dir = args.bin_dir.unwrap_or_else(default_bin_dir);
    if let Some(version) = args.version {
        options.version = version;
    }
    options.formats = Format::parse_list(&args.formats)?;
    options.source_date_epoch = source_date_epoch()?;
    options.ca_bundle = args.ca_bundle;
    options.ipxe_dir = args.ipxe_dir;
    options.systemd_boot_dir = args.systemd_boot_dir;
    options.mke2fs = args.mke2fs;
    options.data_size_mib = args.data_size_mib;
    options.zstd_level = args.zstd_level;
    options.keep_debug = args.keep_debug;

    let reporter = Spinner::new();
    let report = build::build(&options, &reporter)?;
    reporter.finish();

    let out = report.out_dir.display();
    println!();
    println!(
        "kindling image {} (kernel {}) in {out}",
        report.manifest.version, report.manifest.kernel_version
    );
    println!("  {:<22} {:>11}  sha256", "artifact", "size");
    for artifact in &report.manifest.artifacts {
        println!(
            "  {:<22} {:>11}  {}",
            artifact.path,
            build::human_size(artifact.size),
            &artifact.sha256[..16]
        );
    }
    let bins: Vec<&str> = report
        .manifest
        .binaries
        .iter()
        .map(|b| b.image_path.as_str())
        .collect();
    println!(
        "  binaries: {}; modules: {} files ({} loaded at boot, {} drivers by modalias); overlays: {}",
        bins.join(" "),
        report.manifest.modules.files,
        report.manifest.modules.load.len(),
        report.manifest.modules.drivers.len(),
        report
            .manifest
            .overlays
            .iter()
            .map(|o| o.file.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  manifest: {out}/manifest.json; built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The workspace's release directory when run from the workspace; else the
/// directory this CLI was started from, since `cargo build --release` puts
/// `kindling`, `kindling-init` and `kindlingd` side by side.
fn default_bin_dir() -> PathBuf {
    let workspace = PathBuf::from("target/x86_64-unknown-linux-gnu/release");
    if workspace.join("kindling-init").is_file() {
        return workspace;
    }
    let beside_me = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .filter(|dir| dir.join("kindling-init").is_file());
    beside_me.unwrap_or(workspace)
}

/// The workspace's musl build of PID 1, unless the caller named a bin dir
/// (then its kindling-init is the one meant).
fn default_init_bin(bin_dir_given: bool) -> Option<PathBuf> {
    let musl = PathBuf::from("target/x86_64-unknown-linux-musl/release/kindling-init");
    (!bin_dir_given && musl.is_file()).then_some(musl)
}

/// SOURCE_DATE_EPOCH if set, else the workspace's last commit time, else a
/// fixed default: builds from the same inputs stay byte-identical.
fn source_date_epoch() -> anyhow::Result<u32> {
    if let Ok(value) = std::env::var("SOURCE_DATE_EPOCH") {
        return value
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds: set it to e.g. $(git log -1 --format=%ct)"));
    }
    let git = Process::new("git")
        .args(["log", "-1", "--format=%ct"])
        .output();
    if let Ok(output) = git {
        if output.status.success() {
            if let Ok(epoch) = String::from_utf8_lossy(&output.stdout).trim().parse() {
                return Ok(epoch);
            }
        }
    }
    Ok(build::DEFAULT_EPOCH)
}

/// One spinner per slow step; warnings printed above it.
struct Spinner {
    bar: ProgressBar,
    started: std::cell::Cell<Instant>,
}

impl Spinner {
    fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar.set_message("checking inputs");
        Self {
            bar,
            started: std::cell::Cell::new(Instant::now()),
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// indicatif draws nothing when stderr is not a terminal (CI, logs);
    /// step results and warnings must still reach the operator there.
    fn line(&self, text: String) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }
}

impl Reporter for Spinner {
    fn step(&self, name: &str) {
        self.started.set(Instant::now());
        self.bar.set_message(name.to_string());
    }

    fn done(&self, detail: &str) {
        let message = self.bar.message();
        self.line(format!(
            "  done  {message}: {detail} ({:.1} s)",
            self.started.get().elapsed().as_secs_f64()
        ));
        self.bar.set_message("…");
    }

    fn warn(&self, message: &str) {
        self.line(format!("  warn  {message}"));
    }
}
