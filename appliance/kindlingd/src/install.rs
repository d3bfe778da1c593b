//! `kindlingd install`: the one-shot that installs an appliance booted from
//! its ISO (or a USB stick written from it) onto a local disk, when the
//! kernel command line (`kindling.install=<disk>`) or the site's
//! `[install] disk` asks for it (docs/install.md).
//!
//! It finds the disk and the boot medium, lets `kindling_install::target`
//! decide whether the disk may be written (a refusal names the disk, what
//! it holds and the option that would allow it), writes the raw A/B layout
//! with the UKI assembled from the medium's parts (checked against its
//! sha256 first), systemd-boot and this boot's state
//! (`/var/lib/kindling`), reads it back, and asks init to reboot into it.
//! Every step goes to the console and to `status/install.json`.
//!
//! Runs as root with CAP_DAC_READ_SEARCH only (it reads every service's
//! state to copy it; the disk's node and the status directory are root's):
//! see docs/security.md. Owns the wiring only; the decisions and the
//! writing are `kindling_install`'s.

use anyhow::anyhow;
use kindling_init_protocol::control::{Client, DEFAULT_SOCKET};
use kindling_install::iso::{self, Extent};
use kindling_install::layout;
use kindling_install::status::{InstallState, InstallStatus};
use kindling_install::target::{self, Request, Verdict};
use kindling_install::uki;
use kindling_install::write::{self, BootFile, Inputs};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// e2fsprogs' mke2fs in the image (`kindling image build` adds it).
const MKE2FS: &str = "/bin/mke2fs";
const VERSION_FILE: &str = "/etc/kindling/version";

#[derive(clap::Args)]
pub struct Args {
    /// The kernel command line to read the ask from (tests).
    #[arg(long, default_value = "/proc/cmdline", hide = true)]
    cmdline: PathBuf,
}

struct Paths {
    run_dir: PathBuf,
    state_dir: PathBuf,
    status: PathBuf,
}

fn paths() -> Paths {
    let run_dir = std::env::var_os("KINDLING_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/kindling"));
    let state_dir = std::env::var_os("KINDLING_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/kindling"));
    Paths {
        status: run_dir.join("status/install.json"),
        run_dir,
        state_dir,
    }
}

/// The install this boot is asked for, if any: the kernel command line's,
/// else the site's.
pub fn asked(cmdline: &str, site: Option<&kindling_site::SiteConfig>) -> Option<Request> {
    let (disk, wipe) = site
        .map(|s| (s.install.disk.as_deref(), s.install.wipe))
        .unwrap_or((None, false));
    target::request(cmdline, disk, wipe)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let paths = paths();
    let cmdline = std::fs::read_to_string(&args.cmdline).unwrap_or_default();
    let site =
        kindling_site::effective::load(&kindling_site::effective::in_run_dir(&paths.run_dir)).ok();
    let Some(request) = asked(&cmdline, site.as_ref()) else {
        println!("install: nothing asked (no kindling.install= and no [install] disk)");
        return Ok(());
    };
    let mut status = InstallStatus::new(&request);
    save(&paths.status, &status);
    println!(
        "install: asked by the {} to install to {}{}",
        match request.source {
            target::Source::CommandLine => "kernel command line",
            target::Source::Site => "site",
        },
        request.disk,
        if request.wipe { " (wipe allowed)" } else { "" }
    );
    match install(&request, &paths, &mut status) {
        Ok(Done::AlreadyInstalled(line)) => {
            status.state = InstallState::AlreadyInstalled;
            status.step = line.clone();
            save(&paths.status, &status);
            println!("install: {line}");
            Ok(())
        }
        Ok(Done::Installed(device)) => {
            status.state = InstallState::Installed;
            status.step = "installed; rebooting into it".to_string();
            save(&paths.status, &status);
            let reason = format!("installed to {device}: rebooting into it");
            println!("install: done: {reason}");
            Client::new(DEFAULT_SOCKET)
                .with_timeout(Duration::from_secs(10))
                .reboot(&reason)
                .map_err(|e| anyhow!("installed, but asking init to reboot failed: {e}"))
        }
        Err(Failure::Refused(why)) => {
            status.state = InstallState::Refused;
            status.error = Some(why.clone());
            save(&paths.status, &status);
            println!("install: refused: {why}");
            Err(anyhow!("refused: {why}"))
        }
        Err(Failure::Failed(why)) => {
            status.state = InstallState::Failed;
            status.error = Some(why.clone());
            save(&paths.status, &status);
            println!("install: FAILED: {why}");
            Err(anyhow!("failed: {why}"))
        }
    }
}

enum Done {
    AlreadyInstalled(String),
    Installed(String),
}

enum Failure {
    /// Nothing was written.
    Refused(String),
    /// Writing began and did not finish.
    Failed(String),
}

fn save(path: &Path, status: &InstallStatus) {
    let Ok(mut json) = serde_json::to_vec_pretty(status) else {
        return;
    };
    json.push(b'\n');
    if let Err(e) = kindling_atomic_write::write_atomic_with_mode(path, &json, 0o644) {
        eprintln!("install: writing {}: {e}", path.display());
    }
}

/// The kindling ISO this appliance booted from: a whole disk (a CD or a
/// USB stick) holding an ISO 9660 volume `KINDLING` with the UKI's parts.
struct Medium {
    name: String,
    file: File,
    uki: uki::OnMedium,
    systemd_boot: Extent,
}

fn find_medium(sys: &Path) -> Option<Medium> {
    for disk in target::sys_disks(sys) {
        if disk.partition_of.is_some() || disk.size == 0 {
            continue;
        }
        let Ok(file) = File::open(Path::new("/dev").join(&disk.name)) else {
            continue;
        };
        if iso::volume_id(&file).as_deref() != Some(iso::VOLUME_ID) {
            continue;
        }
        let (Ok(Some(uki)), Ok(Some(systemd_boot))) = (
            uki::OnMedium::find(&file),
            iso::find(&file, iso::SYSTEMD_BOOT_PATH),
        ) else {
            continue;
        };
        return Some(Medium {
            name: disk.name,
            file,
            uki,
            systemd_boot,
        });
    }
    None
}

fn install(request: &Request, paths: &Paths, status: &mut InstallStatus) -> Result<Done, Failure> {
    let sys = Path::new("/sys");
    let refused = |e: &dyn std::fmt::Display| Failure::Refused(e.to_string());
    let (disk, node) =
        target::resolve(&request.disk, sys, Path::new("/dev")).map_err(|e| refused(&e))?;
    status.device = Some(format!("/dev/{}", disk.name));
    let medium = find_medium(sys).ok_or_else(|| {
        Failure::Refused(format!(
            "the boot medium was not found: no disk here holds the kindling ISO \
             (volume {} with {}); the install runs only from the ISO or a USB stick \
             written from it. Disks: {}",
            iso::VOLUME_ID,
            iso::UKI_REST_PATH,
            target::describe_disks(&target::sys_disks(sys))
        ))
    })?;
    let head = File::open(&node)
        .and_then(|f| kindling_install::probe::read_head(&f))
        .map_err(|e| Failure::Refused(format!("reading {}: {e}", node.display())))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let facts = target::gather(
        &request.disk,
        &disk,
        &node,
        sys,
        &mountinfo,
        &head,
        medium.name == disk.name,
    );
    let (uki_rest, uki_sum) = medium
        .uki
        .read(&medium.file)
        .map_err(|e| Failure::Refused(format!("the UKI on /dev/{}: {e}", medium.name)))?;
    let min = layout::min_disk_size(uki_sum.size, medium.systemd_boot.size);
    let state_mount = paths.state_dir.to_string_lossy();
    match target::decide(&facts, request, &state_mount, min).map_err(|e| refused(&e))? {
        Verdict::AlreadyInstalled { device } => {
            return Ok(Done::AlreadyInstalled(format!(
                "already installed: this boot's state is on {device} of {}; the firmware \
                 booted the ISO instead of the disk (remove the ISO or put the disk first \
                 in the boot order)",
                facts.shown
            )))
        }
        Verdict::Install => {}
    }
    let sector = std::fs::read_to_string(
        sys.join("class/block")
            .join(&disk.name)
            .join("queue/logical_block_size"),
    )
    .map(|s| s.trim().to_string())
    .unwrap_or_else(|_| "512".to_string());
    if sector != "512" {
        return Err(Failure::Refused(format!(
            "{} has {sector}-byte logical sectors; the install writes 512-byte ones only",
            facts.shown
        )));
    }
    let version = std::fs::read_to_string(VERSION_FILE)
        .map(|v| v.trim().to_string())
        .map_err(|e| Failure::Refused(format!("reading {VERSION_FILE}: {e}")))?;
    // The rest holds the .osrel section.
    let uki_version = iso::uki_version(&uki_rest);
    if uki_version.as_deref() != Some(version.as_str()) {
        return Err(Failure::Refused(format!(
            "the UKI on /dev/{} is version {}, this appliance runs {version}: \
             boot the ISO you mean to install",
            medium.name,
            uki_version.as_deref().unwrap_or("unknown")
        )));
    }
    status.version = Some(version.clone());
    let Some(plan) = layout::plan(facts.size, uki_sum.size, medium.systemd_boot.size) else {
        return Err(Failure::Refused(format!("{} is too small", facts.shown)));
    };
    // Slot A from the ISO's rest of the UKI, initramfs and kernel, checked against
    // the recorded sha256 before the disk is touched.
    let uki = medium
        .uki
        .assemble(&medium.file, &uki_rest, &uki_sum)
        .map_err(|e| {
            Failure::Refused(format!(
                "the UKI on /dev/{} does not assemble: {e}; nothing was written",
                medium.name
            ))
        })?;
    status.state = InstallState::Writing;
    let state_dir = paths
        .state_dir
        .is_dir()
        .then_some(paths.state_dir.as_path());
    let inputs = Inputs {
        uki: &uki,
        systemd_boot: BootFile {
            file: &medium.file,
            extent: medium.systemd_boot,
        },
        version: &version,
        state_dir,
        mke2fs: Path::new(MKE2FS),
    };
    println!(
        "install: writing {} ({}): ESP {} with slot A kindling {version} from /dev/{}, data {}",
        facts.shown,
        layout::human(facts.size),
        layout::human(plan.esp_size),
        medium.name,
        layout::human(plan.data_size)
    );
    let status_path = paths.status.clone();
    let mut say = |step: &str| {
        println!("install: {step}");
        status.step = step.to_string();
        save(&status_path, status);
    };
    write::write(&node, &plan, &inputs, &mut say)
        .map_err(|e| Failure::Failed(format!("{}: {e}", facts.shown)))?;
    say("reading the disk back");
    write::verify(&node, &plan, &inputs)
        .map_err(|e| Failure::Failed(format!("{} does not read back: {e}", facts.shown)))?;
    Ok(Done::Installed(facts.shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_overrides_the_site() {
        let mut site = kindling_site::SiteConfig::default();
        assert!(asked("console=ttyS0", Some(&site)).is_none());
        site.install.disk = Some("/dev/sda".into());
        let r = asked("console=ttyS0", Some(&site)).unwrap();
        assert_eq!(r.disk, "/dev/sda");
        let r = asked("kindling.install=/dev/vdb", Some(&site)).unwrap();
        assert_eq!(r.disk, "/dev/vdb");
        assert!(asked("kindling.install=vdb", None).is_some());
    }
}
