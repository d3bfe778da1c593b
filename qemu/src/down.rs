//! `kindling-lab down`: removes what a crashed or killed lab left behind.
//! Only the lab's own things: processes living inside `kl-*` namespaces (every
//! one of them was started by a lab), processes named in the run directory's
//! pidfiles whose command line is one the lab starts, and the `kl-*`
//! namespaces themselves. Nothing is matched by process name machine-wide.

use crate::cmd;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::time::{Duration, Instant};

/// Programs the lab starts; a pidfile naming anything else is stale.
const LAB_PROGRAMS: &[&str] = &["qemu-system-x86_64", "dnsmasq", "python3", "ntp-daemon"];

#[derive(Debug, Default)]
pub struct DownReport {
    pub killed: Vec<(u32, String)>,
    pub namespaces: Vec<String>,
}

/// Lab namespaces present on this host (`kl-*`).
pub fn lab_namespaces(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| n.starts_with(prefix));
    names.sort();
    names
}

fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .trim()
            .to_string(),
    )
}

fn is_lab_program(cmdline: &str) -> bool {
    let program = cmdline.split_whitespace().next().unwrap_or("");
    let base = program.rsplit('/').next().unwrap_or(program);
    LAB_PROGRAMS.iter().any(|p| base.starts_with(p))
}

fn terminate(pids: &[u32]) {
    for &pid in pids {
        if let Ok(raw) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline
        && pids
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists())
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    for &pid in pids {
        if Path::new(&format!("/proc/{pid}")).exists() {
            if let Ok(raw) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
            }
        }
    }
}

/// Stops the lab's leftover processes and deletes its namespaces.
pub fn down(prefix: &str, run_dir: Option<&Path>) -> DownReport {
    let mut report = DownReport::default();
    let mut pids: Vec<u32> = Vec::new();
    for ns in lab_namespaces(prefix) {
        if let Ok(out) = cmd::ip(&["netns", "pids", &ns]) {
            pids.extend(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    if let Some(dir) = run_dir {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pid") {
                let pid = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok());
                if let Some(pid) = pid {
                    if command_line(pid).is_some_and(|c| is_lab_program(&c)) {
                        pids.push(pid);
                    }
                }
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids.retain(|&p| p != std::process::id());
    for &pid in &pids {
        report
            .killed
            .push((pid, command_line(pid).unwrap_or_default()));
    }
    terminate(&pids);
    for ns in lab_namespaces(prefix) {
        if cmd::ip(&["netns", "del", &ns]).is_ok() {
            report.namespaces.push(ns);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lab_programs_are_recognised() {
        assert!(is_lab_program("qemu-system-x86_64 -name appliance"));
        assert!(is_lab_program("/usr/sbin/dnsmasq --keep-in-foreground"));
        assert!(!is_lab_program("/usr/bin/bash -c sleep"));
        assert!(!is_lab_program(""));
    }
}
