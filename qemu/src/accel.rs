//! Choosing QEMU's accelerator: KVM where it really runs guests, else TCG.
//! `/dev/kvm` existing is not enough: on these machines KVM opens, creates a
//! VM and then never gets the kernel past "Probing EDD". So the probe boots the
//! kernel under KVM for a few seconds and looks for its first printk line. The
//! answer is cached per host boot (`/tmp/kindling-lab-accel`);
//! `KINDLING_LAB_ACCEL=kvm|tcg` overrides it.

use crate::process::LabProcess;
use crate::qemu_lock::QemuLock;
use crate::watch::SerialWatcher;
use regex::Regex;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CACHE: &str = "/tmp/kindling-lab-accel";
/// A working KVM prints the kernel banner well under a second; TCG needs ~3 s.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// `-cpu` for this accelerator: TCG's default CPU lacks SSE4.2, so `max`.
    pub fn cpu(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }

    /// The probe's cached answer for this host boot, else TCG (never probes).
    pub fn cached_or_tcg() -> Accel {
        if let Some(forced) = std::env::var("KINDLING_LAB_ACCEL")
            .ok()
            .as_deref()
            .and_then(Accel::parse)
        {
            return forced;
        }
        cached().unwrap_or(Accel::Tcg)
    }

    /// Detects the accelerator. Boots `kernel` under KVM for the probe, so the
    /// caller must hold the QEMU lock.
    pub fn detect(kernel: &Path, _held: &QemuLock) -> Accel {
        if let Some(forced) = std::env::var("KINDLING_LAB_ACCEL")
            .ok()
            .as_deref()
            .and_then(Accel::parse)
        {
            return forced;
        }
        if std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_err()
        {
            return Accel::Tcg;
        }
        if let Some(accel) = cached() {
            return accel;
        }
        let accel = if kvm_boots_kernel(kernel) {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
        let _ = std::fs::write(CACHE, format!("{} {}\n", boot_id(), accel.as_str()));
        accel
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn cached() -> Option<Accel> {
    let text = std::fs::read_to_string(CACHE).ok()?;
    let (id, accel) = text.split_once(' ')?;
    (id == boot_id()).then(|| Accel::parse(accel)).flatten()
}

fn kvm_boots_kernel(kernel: &Path) -> bool {
    let Ok(dir) = tempfile_dir() else {
        return false;
    };
    let log = dir.join("serial.log");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-m",
        "256",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
    ])
    .arg("-serial")
    .arg(format!("file:{}", log.display()))
    .arg("-kernel")
    .arg(kernel)
    .args(["-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1"])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let result = match LabProcess::spawn("kvm-probe", cmd, None) {
        Ok(mut vm) => {
            let banner = Regex::new("Linux version").ok();
            let mut watcher = SerialWatcher::new(&log);
            let ok = banner.is_some_and(|re| {
                watcher
                    .wait_for(&re, None, PROBE_TIMEOUT, || {
                        vm.exited().map(|s| format!("the probe VM exited ({s})"))
                    })
                    .is_ok()
            });
            vm.stop();
            ok
        }
        Err(_) => false,
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("kindling-kvm-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
