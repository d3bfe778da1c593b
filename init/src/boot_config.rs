//! init's own boot configuration (`/etc/kindling/init.json`, or the file named
//! by env `KINDLING_INIT_CONFIG`).
//!
//! Owns the defaults of a real boot; tests use the same file to switch off what
//! only makes sense on the appliance (early mounts, module loading, the console
//! device). It never acts on the settings itself.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default location of the file.
pub const DEFAULT_PATH: &str = "/etc/kindling/init.json";
/// Env var naming another file.
pub const PATH_ENV: &str = "KINDLING_INIT_CONFIG";

/// What to do once every service is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownAction {
    #[default]
    Reboot,
    Poweroff,
}

/// init.json. Every field is optional; the defaults are a real boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootConfig {
    /// Mount proc, sys, dev, run, tmp, cgroup2 (off in tests: the namespace has them).
    pub early_mounts: bool,
    /// Modules to load in the early phase (`null`: load none, also none by modalias).
    pub modules_list: Option<PathBuf>,
    /// Where `<kernel release>/modules.dep` lives.
    pub modules_dir: PathBuf,
    /// Also load the drivers that `/sys/bus/*/devices/*/modalias` asks for.
    pub modalias_drivers: bool,
    /// Filesystem or GPT partition label of the data partition (`null`: RAM only).
    pub data_label: Option<String>,
    /// Where the data partition (or a tmpfs) is mounted.
    pub data_mount: PathBuf,
    /// The longest wait for the data partition's device. Used in full only
    /// while USB storage may still be enumerating; otherwise the search ends
    /// once the block devices have settled (`state::SETTLE`). The kernel
    /// command line `kindling.data=none` skips the search.
    pub data_wait_ms: u64,
    /// The config phase's one-shot command (`null` or empty: skip the phase).
    pub config_command: Option<Vec<String>>,
    /// Time the config command may take before it is killed.
    pub config_timeout_ms: u64,
    /// Service tables to try in order; the first that loads wins.
    pub service_tables: Vec<PathBuf>,
    /// Per-service log files when there is no data partition (RAM), and
    /// where they move if writing to the data partition fails.
    pub log_dir: PathBuf,
    /// Per-service log files while the data partition is mounted (`null`:
    /// always `log_dir`).
    pub data_log_dir: Option<PathBuf>,
    /// Rotate a service log to `.1` when it would grow past this size
    /// (the service table's `output_logs` overrides it).
    pub log_max_bytes: u64,
    /// Files kept per service, the current one included (the service
    /// table's `output_logs` overrides it).
    pub log_files: u32,
    /// init's control socket.
    pub control_socket: PathBuf,
    /// Parent cgroup (cgroup v2) of the per-service cgroups.
    pub cgroup_root: PathBuf,
    /// Console device (`null`: stdout).
    pub console: Option<PathBuf>,
    /// Set the hostname from the service table.
    pub set_hostname: bool,
    /// Bound on waiting for network-phase services to become ready.
    pub network_timeout_ms: u64,
    /// Bound on waiting for the remaining services before `ready`/`degraded` is decided.
    pub services_timeout_ms: u64,
    /// What SIGTERM leads to (SIGUSR2 always powers off, SIGINT always reboots).
    pub shutdown: ShutdownAction,
    /// A file of the image whose mtime is the build's epoch: the wall clock
    /// is raised to it if it is behind (`null`: leave the clock alone).
    pub clock_floor_from: Option<PathBuf>,
}

impl Default for BootConfig {
    fn default() -> BootConfig {
        BootConfig {
            early_mounts: true,
            modules_list: Some(PathBuf::from("/etc/kindling/modules.list")),
            modules_dir: PathBuf::from("/lib/modules"),
            modalias_drivers: true,
            data_label: Some("KINDLING-DATA".to_string()),
            data_mount: PathBuf::from("/var/lib/kindling"),
            data_wait_ms: 2000,
            config_command: Some(vec![
                "/bin/kindlingd".to_string(),
                "config".to_string(),
                "apply".to_string(),
            ]),
            config_timeout_ms: 60_000,
            service_tables: vec![
                PathBuf::from("/run/kindling/services.json"),
                PathBuf::from("/etc/kindling/services.json"),
            ],
            log_dir: PathBuf::from("/run/log"),
            data_log_dir: Some(PathBuf::from("/var/lib/kindling/log")),
            log_max_bytes: 1 << 20,
            log_files: 4,
            control_socket: PathBuf::from(kindling_init_protocol::control::DEFAULT_SOCKET),
            cgroup_root: PathBuf::from("/sys/fs/cgroup/kindling"),
            console: Some(PathBuf::from("/dev/console")),
            set_hostname: true,
            network_timeout_ms: 60_000,
            services_timeout_ms: 120_000,
            shutdown: ShutdownAction::Reboot,
            clock_floor_from: Some(PathBuf::from("/etc/kindling/version")),
        }
    }
}

/// Why init.json could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BootConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl BootConfig {
    /// Reads the file named by `KINDLING_INIT_CONFIG`, else `/etc/kindling/init.json`;
    /// a missing default file means all defaults.
    pub fn load_from_env() -> Result<(BootConfig, Option<PathBuf>), BootConfigError> {
        match std::env::var_os(PATH_ENV) {
            Some(path) => {
                let path = PathBuf::from(path);
                BootConfig::load(&path).map(|c| (c, Some(path)))
            }
            None => {
                let path = Path::new(DEFAULT_PATH);
                if path.exists() {
                    BootConfig::load(path).map(|c| (c, Some(path.to_path_buf())))
                } else {
                    Ok((BootConfig::default(), None))
                }
            }
        }
    }

    /// Reads and parses one file.
    pub fn load(path: &Path) -> Result<BootConfig, BootConfigError> {
        let bytes = std::fs::read(path).map_err(|source| BootConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| BootConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn contract_example_matches_defaults() {
        let json = r#"{
          "early_mounts": true,
          "modules_list": "/etc/kindling/modules.list",
          "modules_dir": "/lib/modules",
          "data_label": "KINDLING-DATA",
          "data_mount": "/var/lib/kindling",
          "config_command": ["/bin/kindlingd", "config", "apply"],
          "service_tables": ["/run/kindling/services.json", "/etc/kindling/services.json"],
          "log_dir": "/run/log",
          "data_log_dir": "/var/lib/kindling/log",
          "log_files": 4,
          "control_socket": "/run/kindling/init.sock",
          "shutdown": "reboot"
        }"#;
        let parsed: BootConfig = serde_json::from_str(json).unwrap();
        assert_eq!(parsed, BootConfig::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = serde_json::from_str::<BootConfig>(r#"{"early_mount": false}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("early_mount"), "{err}");
    }

    #[test]
    fn nulls_switch_things_off() {
        let c: BootConfig = serde_json::from_str(
            r#"{"modules_list": null, "data_label": null, "console": null, "config_command": null}"#,
        )
        .unwrap();
        assert!(c.modules_list.is_none() && c.data_label.is_none() && c.console.is_none());
        assert!(c.config_command.is_none());
    }
}
