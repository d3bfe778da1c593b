//! A QEMU process the lab started, with its serial log watcher. Waiting for a
//! serial line ends early (with the reason) when QEMU exits, so a crashed or
//! powered-off VM never costs a whole timeout.

use crate::process::LabProcess;
use crate::vm::VmConfig;
use crate::watch::{SeenLine, SerialWatcher, WatchError};
use regex::Regex;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RunningVm {
    pub config: VmConfig,
    process: LabProcess,
    watcher: SerialWatcher,
    pub(crate) taps: Vec<String>,
    started: Instant,
}

impl RunningVm {
    pub(crate) fn new(config: VmConfig, process: LabProcess, taps: Vec<String>) -> Self {
        let watcher = SerialWatcher::new(&config.serial_log);
        Self {
            config,
            process,
            watcher,
            taps,
            started: Instant::now(),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The taps this VM's NICs use (in the LAN namespace).
    pub fn taps(&self) -> &[String] {
        &self.taps
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn serial_log(&self) -> &Path {
        &self.config.serial_log
    }

    /// Time since QEMU was started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for the next serial line matching `pattern` (regex, unanchored).
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<SeenLine, WatchError> {
        self.wait_for_unless(pattern, None, timeout)
    }

    /// As `wait_for`, but a line matching `fail` ends the wait with an error.
    pub fn wait_for_unless(
        &mut self,
        pattern: &str,
        fail: Option<&str>,
        timeout: Duration,
    ) -> Result<SeenLine, WatchError> {
        let bad_pattern = |p: &str, e: regex::Error| WatchError::Aborted {
            pattern: p.to_string(),
            why: format!("invalid pattern: {e}"),
            log: self.config.serial_log.clone(),
            tail: String::new(),
        };
        let re = Regex::new(pattern).map_err(|e| bad_pattern(pattern, e))?;
        let fail = match fail {
            Some(f) => Some(Regex::new(f).map_err(|e| bad_pattern(f, e))?),
            None => None,
        };
        let process = &mut self.process;
        let name = self.config.name.clone();
        self.watcher.wait_for(&re, fail.as_ref(), timeout, || {
            process
                .exited()
                .map(|status| format!("VM {name} exited ({status})"))
        })
    }

    /// Every serial line read so far (escape codes removed).
    pub fn lines(&mut self) -> Vec<SeenLine> {
        let _ = self.watcher.poll();
        self.watcher.lines().to_vec()
    }

    /// The first line read so far that matches `pattern`.
    pub fn find_seen(&mut self, pattern: &str) -> Option<SeenLine> {
        let re = Regex::new(pattern).ok()?;
        let _ = self.watcher.poll();
        self.watcher.find_seen(&re).cloned()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }

    /// Waits up to `timeout` for the VM to power off by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_timeout(timeout)
    }

    /// Pulls the plug: SIGKILL to this VM's QEMU (by the PID the lab
    /// started), no shutdown, no flush the guest did not do itself.
    pub fn power_cut(&mut self) -> Option<ExitStatus> {
        self.process.kill_now()
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }
}
