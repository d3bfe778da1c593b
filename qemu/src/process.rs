//! A child process the lab started (dnsmasq, the HTTP target, QEMU), owned by
//! a guard that stops it by its own PID when dropped: SIGTERM, a short grace,
//! then SIGKILL. It never signals a process it did not start, and never by name.

use crate::cmd;
use crate::error::{LabError, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long a process gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub struct LabProcess {
    name: String,
    child: Child,
    /// Written so `kindling-lab down` can find it after a crash; removed on stop.
    pidfile: Option<PathBuf>,
    exit: Option<ExitStatus>,
}

impl LabProcess {
    /// Spawns `command`; if `pidfile` is given the PID is recorded there.
    pub fn spawn(name: &str, mut command: Command, pidfile: Option<&Path>) -> Result<Self> {
        let line = cmd::display(&command);
        let child = command.spawn().map_err(|source| LabError::Spawn {
            command: line,
            source,
        })?;
        if let Some(path) = pidfile {
            std::fs::write(path, format!("{}\n", child.id()))
                .map_err(|e| LabError::io("writing pidfile", path, e))?;
        }
        Ok(Self {
            name: name.to_string(),
            child,
            pidfile: pidfile.map(Path::to_path_buf),
            exit: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL now, with no grace, and reaps it: for a VM, a power cut
    /// (nothing the guest had not written to its disk survives). The
    /// pidfile stays until `stop` (a no-op on the exited process) drops it.
    pub fn kill_now(&mut self) -> Option<ExitStatus> {
        if self.exited().is_none() {
            // Our own child, not yet reaped: the PID cannot have been reused.
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
        self.exit
    }

    /// Stops the process (SIGTERM, grace, SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        if self.exited().is_none() {
            if let Ok(raw) = i32::try_from(self.child.id()) {
                // Our own child, not yet reaped: the PID cannot have been reused.
                let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
            }
            if self.wait_timeout(STOP_GRACE).is_none() {
                let _ = self.child.kill();
                self.exit = self.child.wait().ok();
            }
        }
        if let Some(path) = self.pidfile.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn drop_stops_the_process_and_removes_its_pidfile() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("sleep.pid");
        let mut command = Command::new("sleep");
        command.arg("600");
        let proc = LabProcess::spawn("sleep", command, Some(&pidfile)).unwrap();
        let pid = proc.pid();
        assert_eq!(
            std::fs::read_to_string(&pidfile).unwrap().trim(),
            pid.to_string()
        );
        drop(proc);
        assert!(!pidfile.exists());
        // The child was reaped by the guard; if the PID was reused since, it is
        // by another program.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmdline).contains("600"));
    }

    #[test]
    fn exited_reports_the_status_of_a_finished_process() {
        let mut command = Command::new("sh");
        command.args(["-c", "exit 4"]);
        let mut proc = LabProcess::spawn("sh", command, None).unwrap();
        let status = proc.wait_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), Some(4));
    }
}
