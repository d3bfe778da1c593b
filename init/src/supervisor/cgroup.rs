//! Per-service cgroups (v2): `<root>/<service>`.
//!
//! Owns creating, signalling and removing service cgroups, so every process a
//! service forked is stopped with it. Without cgroup v2 (old host, test
//! namespace without it) it falls back to the service's process group, which
//! `setsid` in the child makes equal to its pid. It must never touch cgroups
//! outside its root.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Why cgroups cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{0} is not on a cgroup2 filesystem")]
    NotCgroup2(PathBuf),
    #[error("creating cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening {path}: {source}")]
    OpenProcs {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The service cgroups, or the process-group fallback.
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: Option<PathBuf>,
}

impl Cgroups {
    /// Uses `root` (created if missing) if its parent is cgroup2.
    pub fn prepare(root: &Path) -> Result<Cgroups, CgroupError> {
        let parent = root.parent().unwrap_or(Path::new("/"));
        let on_cgroup2 = nix::sys::statfs::statfs(parent)
            .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            .unwrap_or(false);
        if !on_cgroup2 {
            return Err(CgroupError::NotCgroup2(parent.to_path_buf()));
        }
        std::fs::create_dir_all(root).map_err(|source| CgroupError::Create {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Cgroups {
            root: Some(root.to_path_buf()),
        })
    }

    /// Process groups only.
    pub fn disabled() -> Cgroups {
        Cgroups { root: None }
    }

    /// Whether real cgroups are in use.
    pub fn enabled(&self) -> bool {
        self.root.is_some()
    }

    fn dir(&self, service: &str) -> Option<PathBuf> {
        self.root.as_ref().map(|r| r.join(service))
    }

    /// Creates the service's cgroup and opens its `cgroup.procs` for the child to join.
    pub fn create(&self, service: &str) -> Result<Option<File>, CgroupError> {
        let Some(dir) = self.dir(service) else {
            return Ok(None);
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupError::Create { path: dir, source }),
        }
        let procs = dir.join("cgroup.procs");
        OpenOptions::new()
            .write(true)
            .open(&procs)
            .map(Some)
            .map_err(|source| CgroupError::OpenProcs {
                path: procs,
                source,
            })
    }

    /// Pids in the service's cgroup (empty without cgroups).
    pub fn pids(&self, service: &str) -> Vec<i32> {
        let Some(dir) = self.dir(service) else {
            return Vec::new();
        };
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Sends `signal` to every process of the service (main pid `main` for the fallback).
    pub fn signal(&self, service: &str, main: Option<i32>, signal: Signal) {
        if self.enabled() {
            if signal == Signal::SIGKILL && self.kill_via_cgroup_kill(service) {
                return;
            }
            for pid in self.pids(service) {
                let _ = kill(Pid::from_raw(pid), signal);
            }
        }
        if let Some(pid) = main.filter(|p| *p > 1) {
            // The main process and, via its process group, what it forked without
            // leaving the group. Covers the no-cgroup case and a racing exec.
            let _ = kill(Pid::from_raw(-pid), signal);
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    fn kill_via_cgroup_kill(&self, service: &str) -> bool {
        let Some(dir) = self.dir(service) else {
            return false;
        };
        OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.kill"))
            .and_then(|mut f| f.write_all(b"1"))
            .is_ok()
    }

    /// Whether any process of the service is still alive.
    pub fn is_populated(&self, service: &str) -> bool {
        !self.pids(service).is_empty()
    }

    /// Removes the service's cgroup if it is empty; a busy one stays.
    pub fn remove(&self, service: &str) {
        if let Some(dir) = self.dir(service) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
