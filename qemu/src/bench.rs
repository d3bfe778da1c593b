//! Boot-to-ready measurement from one appliance serial log: the kernel's own
//! time to reach /init (its "Run /init as init process" printk stamp) next to
//! the time from kernel start to kindling's ready line (kindling-init stamps
//! its console lines with CLOCK_BOOTTIME, the printk clock). Both numbers come
//! from the same run, so the kernel is the baseline userspace is compared to.

use crate::watch::{boot_time, SeenLine};
use std::time::Duration;

pub const RUN_INIT_PATTERN: &str = r"Run /init as init process";
pub const READY_PATTERN: &str = r"kindling: ready \(";
pub const DEGRADED_PATTERN: &str = r"kindling: degraded:";

#[derive(Debug, Clone, PartialEq)]
pub struct BootTimes {
    /// Kernel start → /init (printk clock).
    pub kernel_s: f64,
    /// Kernel start → `kindling: ready` (printk clock).
    pub ready_s: f64,
    /// What kindling-init itself reports on the ready line, if present.
    pub reported_ms: Option<u64>,
    /// QEMU start → ready line seen in the log (includes firmware and decompression).
    pub wall: Duration,
}

impl BootTimes {
    /// Userspace: /init → ready.
    pub fn userspace_s(&self) -> f64 {
        self.ready_s - self.kernel_s
    }
}

/// Extracts the times from a serial log's lines; `None` if either line is missing.
pub fn boot_times(lines: &[SeenLine]) -> Option<BootTimes> {
    let init = lines
        .iter()
        .find(|l| l.line.contains("Run /init as init process"))?;
    let ready = lines
        .iter()
        .find(|l| l.line.contains("kindling: ready ("))?;
    let kernel_s = boot_time(&init.line)?;
    let ready_s = boot_time(&ready.line)?;
    let reported_ms = ready
        .line
        .split(", ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    Some(BootTimes {
        kernel_s,
        ready_s,
        reported_ms,
        wall: ready.elapsed,
    })
}

/// The benchmark table, one row per run plus the mean.
pub fn table(boot: &str, accel: &str, runs: &[BootTimes]) -> String {
    let mut out = format!(
        "boot-to-ready ({boot} boot, {accel}; printk clock from kernel start)\n\
         {:<6} {:>14} {:>18} {:>16} {:>18} {:>12}\n",
        "run",
        "kernel→/init s",
        "/init→ready s",
        "kernel→ready s",
        "init reports ms",
        "qemu→ready s"
    );
    for (i, r) in runs.iter().enumerate() {
        out.push_str(&row(&format!("{}", i + 1), r));
    }
    if runs.len() > 1 {
        let n = runs.len() as f64;
        let mean = BootTimes {
            kernel_s: runs.iter().map(|r| r.kernel_s).sum::<f64>() / n,
            ready_s: runs.iter().map(|r| r.ready_s).sum::<f64>() / n,
            reported_ms: None,
            wall: runs.iter().map(|r| r.wall).sum::<Duration>() / runs.len() as u32,
        };
        out.push_str(&row("mean", &mean));
    }
    if let Some(worst) = runs.iter().map(BootTimes::userspace_s).reduce(f64::max) {
        let kernel = runs
            .iter()
            .map(|r| r.kernel_s)
            .reduce(f64::min)
            .unwrap_or(0.0);
        let verdict = if worst < kernel { "met" } else { "NOT met" };
        out.push_str(&format!(
            "goal: userspace adds less than the kernel takes: {verdict} (worst userspace {worst:.2} s vs fastest kernel {kernel:.2} s)\n"
        ));
    }
    out
}

/// Appends the runs to a `tests/bench` record file as
/// "scenario<TAB>side<TAB>value" lines: userspace (/init → ready) against
/// the kernel's own start → /init, and whether KVM was used.
pub fn record(path: &std::path::Path, accel: &str, runs: &[BootTimes]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for r in runs {
        writeln!(f, "boot_userspace\tkindling\t{:.3}", r.userspace_s())?;
        writeln!(f, "boot_userspace\tbaseline\t{:.3}", r.kernel_s)?;
    }
    writeln!(f, "lab_kvm\tkindling\t{}", u8::from(accel == "kvm"))
}

fn row(label: &str, r: &BootTimes) -> String {
    format!(
        "{:<6} {:>14.3} {:>18.3} {:>16.3} {:>18} {:>12.1}\n",
        label,
        r.kernel_s,
        r.userspace_s(),
        r.ready_s,
        r.reported_ms
            .map(|m| m.to_string())
            .unwrap_or_else(|| "-".into()),
        r.wall.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn seen(line: &str, secs: u64) -> SeenLine {
        SeenLine {
            line: line.into(),
            elapsed: Duration::from_secs(secs),
        }
    }

    #[test]
    fn times_come_from_the_printk_stamps() {
        let lines = vec![
            seen("[    0.000000] Linux version 6.1.0", 3),
            seen("[    2.500000] Run /init as init process", 6),
            seen("[    2.600000] kindling: early: done (12 ms)", 6),
            seen(
                "[    3.750000] kindling: ready (4 services, 1250 ms since /init)",
                7,
            ),
        ];
        let t = boot_times(&lines).unwrap();
        assert_eq!(t.kernel_s, 2.5);
        assert_eq!(t.ready_s, 3.75);
        assert!((t.userspace_s() - 1.25).abs() < 1e-9);
        assert_eq!(t.reported_ms, Some(1250));
        assert_eq!(t.wall, Duration::from_secs(7));
        let table = table("kernel", "tcg", &[t]);
        assert!(
            table.contains("2.500") && table.contains("1.250") && table.contains("met"),
            "{table}"
        );
    }

    #[test]
    fn a_log_without_ready_gives_no_times() {
        let lines = vec![seen("[    2.5] Run /init as init process", 1)];
        assert!(boot_times(&lines).is_none());
    }
}
