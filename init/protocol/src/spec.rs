//! The service table's types (`services.json`): what one boot supervises.
//!
//! Owns the serde shape of the table `kindlingd config apply` writes and init
//! supervises (see docs/contracts.md) and the defaults of every field. It only
//! describes: checking a table is `table`'s job, ordering it `graph`'s, and
//! nothing here ever starts or stops a process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One boot's service table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServiceTable {
    /// Hostname init sets before starting services (none: keep the current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Services, in any order; dependencies decide the start order.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// Bound on the files init keeps of every child's output (none: init's
    /// own defaults, `log_file_bytes` and `log_files` of init.json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_logs: Option<OutputLogLimits>,
    /// A syslog server (`ADDR:PORT`) that gets every service line too
    /// (RFC 5424 over UDP); none: lines stay on the appliance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SocketAddr>,
}

/// How much of each service's output init keeps: `files` files of at most
/// `file_bytes` each (`NAME.log`, `NAME.log.1` … `NAME.log.<files - 1>`),
/// so at most `files * file_bytes` per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputLogLimits {
    /// Largest size of one file; the current file is rotated before a write
    /// would take it past this.
    pub file_bytes: u64,
    /// Files kept per service, the current one included (at least 1).
    pub files: u32,
}

/// One supervised child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unique name: `[a-z0-9][a-z0-9_-]*`, used for logs, cgroup and socket commands.
    pub name: String,
    /// Program (absolute path) and arguments.
    pub argv: Vec<String>,
    /// Environment of the child; init passes nothing else except `KINDLING_NOTIFY_FD`
    /// (notify readiness) and a default `PATH`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Numeric user id the child runs as.
    #[serde(default)]
    pub user: u32,
    /// Numeric group id the child runs as.
    #[serde(default)]
    pub group: u32,
    /// Supplementary group ids (shared directories, init's control socket);
    /// every other supplementary group is cleared. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<u32>,
    /// Capabilities kept (`CAP_NET_ADMIN`, ...); every other one is dropped from
    /// the bounding, permitted, effective and inheritable sets. Default: none.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Services that must be ready before this one starts.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// When the child counts as ready. Default: `started`.
    #[serde(default)]
    pub readiness: Readiness,
    /// Restart policy. Default: `always` (`on_failure` is the sensible choice for one-shots).
    #[serde(default)]
    pub restart: RestartPolicy,
    /// A one-shot runs to completion; exit 0 means done and is never restarted.
    #[serde(default)]
    pub oneshot: bool,
    /// A required service that is not ready makes the appliance `degraded`.
    #[serde(default = "default_required")]
    pub required: bool,
    /// Time between SIGTERM and SIGKILL when stopping.
    #[serde(default = "default_stop_grace_ms")]
    pub stop_grace_ms: u64,
    /// Boot phase in which the service starts.
    #[serde(default)]
    pub phase: Phase,
    /// Files the child appends to that init keeps within a size bound: it
    /// rotates each and signals the child to reopen it. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLimit>,
}

/// A file a service writes and never rotates itself (Vault's audit log):
/// once it is larger than `max_bytes`, init renames it to `PATH.1` (older
/// copies move up, `PATH.<keep>` is deleted) and sends `reopen_signal` to the
/// service, which then starts a new file. At most `(keep + 1) * max_bytes`
/// plus what is written between two checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLimit {
    /// Absolute path of the file.
    pub path: String,
    /// Rotate when the file is larger than this.
    pub max_bytes: u64,
    /// Rotated copies kept (`PATH.1` … `PATH.<keep>`); 0 deletes instead.
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// Signal that makes the service reopen the file (`SIGHUP`).
    #[serde(default = "default_reopen_signal")]
    pub reopen_signal: String,
}

impl LogLimit {
    /// The reopen signal's number (`SIGHUP`, `SIGUSR1`, `SIGUSR2`).
    pub fn signal(&self) -> Result<i32, String> {
        match self.reopen_signal.as_str() {
            "SIGHUP" => Ok(1),
            "SIGUSR1" => Ok(10),
            "SIGUSR2" => Ok(12),
            other => Err(format!(
                "{other:?} is not a reopen signal (SIGHUP, SIGUSR1, SIGUSR2)"
            )),
        }
    }
}

fn default_keep() -> u32 {
    3
}

fn default_reopen_signal() -> String {
    "SIGHUP".to_string()
}

fn default_required() -> bool {
    true
}

/// Default grace between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_GRACE_MS: u64 = 5000;

fn default_stop_grace_ms() -> u64 {
    DEFAULT_STOP_GRACE_MS
}

/// When a child counts as ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Readiness {
    /// The child writes a line to the fd named in env `KINDLING_NOTIFY_FD`.
    Notify,
    /// A TCP connect to `addr` succeeds.
    Tcp { addr: SocketAddr },
    /// A plain-HTTP GET of `url` answers with a status in `ok`.
    Http {
        url: String,
        #[serde(default = "default_http_ok")]
        ok: Vec<u16>,
    },
    /// Ready as soon as it was spawned.
    #[default]
    Started,
    /// One-shot: ready when it exited with status 0.
    Exited,
}

fn default_http_ok() -> Vec<u16> {
    vec![200]
}

/// What to do when the child exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Restart after every exit (a one-shot: after every failed exit).
    #[default]
    Always,
    /// Restart only after a non-zero exit or a signal.
    OnFailure,
    /// Never restart.
    Never,
}

/// Boot phase in which a service starts.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Started (and waited for, bounded) before the services phase.
    Network,
    /// Started in the services phase.
    #[default]
    Services,
}

/// A plain-HTTP URL split into what a GET needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// `host:port` to connect to.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpTarget {
    /// Parses `http://host[:port][/path]`; `https` is refused (readiness probes are local).
    pub fn parse(url: &str) -> Result<HttpTarget, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?} is not a plain http:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(HttpTarget {
            authority,
            path: path.to_string(),
        })
    }
}

impl ServiceSpec {
    /// A spec with the given name and argv and every other field at its default.
    pub fn new(name: &str, argv: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.to_string(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: BTreeMap::new(),
            user: 0,
            group: 0,
            groups: Vec::new(),
            capabilities: Vec::new(),
            depends_on: Vec::new(),
            readiness: Readiness::default(),
            restart: RestartPolicy::default(),
            oneshot: false,
            required: default_required(),
            stop_grace_ms: DEFAULT_STOP_GRACE_MS,
            phase: Phase::default(),
            logs: Vec::new(),
        }
    }

    /// The capability set this spec keeps, parsed.
    pub fn kept_capabilities(&self) -> Result<Vec<caps::Capability>, String> {
        self.capabilities
            .iter()
            .map(|c| caps::Capability::from_str(c).map_err(|_| format!("unknown capability {c:?}")))
            .collect()
    }
}
