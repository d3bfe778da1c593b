//! The early phase: kernel filesystems, the console, kernel modules.
//!
//! Owns the declarative mount table and the order of early steps. It must never
//! stop boot: every failure is recorded in the returned report and logged.

pub mod clock;
pub mod modalias;
pub mod modprobe;
pub mod modules;

use std::path::Path;

use kindling_init_protocol::phase::BootPhase;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;

use crate::boot_config::BootConfig;
use crate::say;

/// One early mount.
pub struct EarlyMount {
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
}

/// What the early phase mounts, in order (DESIGN.md: proc sys dev run tmp cgroup2).
pub fn mount_table() -> [EarlyMount; 7] {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    [
        EarlyMount {
            target: "/proc",
            fstype: "proc",
            flags: nosuid_nodev_noexec,
            data: None,
        },
        EarlyMount {
            target: "/sys",
            fstype: "sysfs",
            flags: nosuid_nodev_noexec,
            data: None,
        },
        EarlyMount {
            target: "/dev",
            fstype: "devtmpfs",
            flags: MsFlags::MS_NOSUID,
            data: Some("mode=0755"),
        },
        EarlyMount {
            target: "/dev/pts",
            fstype: "devpts",
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            data: Some("gid=5,mode=0620,ptmxmode=0666"),
        },
        EarlyMount {
            target: "/run",
            fstype: "tmpfs",
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            data: Some("mode=0755"),
        },
        EarlyMount {
            target: "/tmp",
            fstype: "tmpfs",
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            data: Some("mode=1777"),
        },
        EarlyMount {
            target: "/sys/fs/cgroup",
            fstype: "cgroup2",
            flags: nosuid_nodev_noexec,
            data: Some("nsdelegate"),
        },
    ]
}

/// What went wrong in the early phase (empty: all fine).
#[derive(Debug, Default)]
pub struct EarlyReport {
    pub problems: Vec<String>,
    pub mounted: usize,
    pub modules_loaded: usize,
}

/// Mounts the table; an already mounted target (EBUSY) counts as done.
pub fn mount_kernel_filesystems(report: &mut EarlyReport) {
    for m in mount_table() {
        let _ = std::fs::create_dir_all(m.target);
        match mount(Some(m.fstype), m.target, Some(m.fstype), m.flags, m.data) {
            Ok(()) => report.mounted += 1,
            Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => {
                let problem = format!("mount {} on {}: {e}", m.fstype, m.target);
                say!(BootPhase::Early, "{problem}");
                report.problems.push(problem);
            }
        }
    }
    // /dev/console, /dev/null must exist even if devtmpfs failed.
    for (path, major, minor) in [("/dev/console", 5, 1), ("/dev/null", 1, 3)] {
        if !Path::new(path).exists() {
            let _ = nix::sys::stat::mknod(
                path,
                nix::sys::stat::SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o600),
                nix::sys::stat::makedev(major, minor),
            );
        }
    }
}

/// Loads the listed modules, then the drivers the hardware asks for.
pub fn load_modules(config: &BootConfig, report: &mut EarlyReport) {
    let Some(list) = &config.modules_list else {
        return;
    };
    let release = match nix::sys::utsname::uname() {
        Ok(u) => u.release().to_string_lossy().into_owned(),
        Err(e) => {
            report.problems.push(format!("uname: {e}"));
            return;
        }
    };
    let dir = config.modules_dir.join(&release);
    let index = match modules::ModuleIndex::load(&dir) {
        Ok(index) => index,
        Err(e) => {
            // No modules in the image is fine if the list is empty too.
            let wanted = modules::read_list(list).unwrap_or_default();
            if !wanted.is_empty() {
                let problem = format!("{e}; {} listed modules not loaded", wanted.len());
                say!(BootPhase::Early, "{problem}");
                report.problems.push(problem);
            }
            return;
        }
    };
    let mut loader = modules::Loader::new(&index, &dir);
    match modules::read_list(list) {
        Ok(wanted) => {
            for name in &wanted {
                if let Err(e) = loader.load(name) {
                    let problem = e.to_string();
                    say!(BootPhase::Early, "{problem}");
                    report.problems.push(problem);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            let problem = format!("reading {}: {e}", list.display());
            say!(BootPhase::Early, "{problem}");
            report.problems.push(problem);
        }
    }
    if config.modalias_drivers {
        // Loading a bus driver (virtio_pci) makes new devices appear: a few rounds.
        for _ in 0..3 {
            let aliases = modalias::device_modaliases(Path::new("/sys"));
            let mut new = 0;
            for module in index.modules_for_aliases(&aliases) {
                match loader.load(&module) {
                    Ok(true) => new += 1,
                    Ok(false) => {}
                    // A driver for hardware we merely found is not worth a degraded boot.
                    Err(e) => say!(BootPhase::Early, "{e}"),
                }
            }
            if new == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    report.modules_loaded = loader.loaded();
    drop(loader);
    drop(index);
    release_freed_memory();
}

/// Gives the heap the module index used back to the kernel: PID 1 lives for the
/// whole uptime, and glibc keeps freed memory otherwise (measured in the VM:
/// 6 MiB resident instead of 2 MiB).
#[cfg(target_env = "gnu")]
fn release_freed_memory() {
    // SAFETY: malloc_trim only returns unused heap pages; no pointer is invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// musl's allocator returns freed pages by itself.
#[cfg(not(target_env = "gnu"))]
fn release_freed_memory() {}
