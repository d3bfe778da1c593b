//! The control-socket protocol (`/run/kindling/init.sock`) and its client.
//!
//! Owns the request/response types and the one blocking client (used by
//! `kindlingd`, the stack bootstrap and tests). One JSON request line, one JSON response line per connection.
//! It must never act on services itself: the server side lives in init's run
//! loop (`control_server`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::credentials::ProcessCredentials;

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/kindling/init.sock";
/// Where init mounts the EFI system partition of the disk it booted from
/// (owned by `accounts::UPDATE`), when there is one.
pub const ESP_MOUNT: &str = "/run/kindling/esp";

/// Longest request or response line either side accepts.
pub const MAX_LINE: usize = 1 << 20;

/// A request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Phases and services with their state.
    List,
    /// Stop (if running) and start one service again; resets its backoff.
    Restart { name: String },
    /// Re-read the service table: start new services, stop removed ones,
    /// restart changed ones.
    Reload,
}

/// Answer to `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    pub phases: Vec<PhaseStatus>,
    pub services: Vec<ServiceStatus>,
    /// Every phase ran and every required service is ready.
    pub ready: bool,
    /// One line per problem: `<phase|service>: <why>`.
    pub degraded: Vec<String>,
    /// Where the services' output is kept (absent from an older init).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogsStatus>,
}

/// Where init keeps every child's output, and how much of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsStatus {
    /// The directory of `NAME.log`, `NAME.log.1`, …
    pub dir: String,
    /// `data`: on the data partition, kept across reboots; `ram`: lost at
    /// reboot (no data partition, or writing to it failed).
    pub storage: LogStorage,
    /// Why the logs are in RAM, when they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Largest size of one file.
    pub file_bytes: u64,
    /// Files kept per service, the current one included.
    pub files: u32,
    /// Where every line is forwarded too, when the table names a server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogStatus>,
}

/// The syslog forwarding's target and counts since it began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyslogStatus {
    pub server: String,
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Lines dropped because the datagram could not be sent at once.
    pub dropped: u64,
}

/// Where the logs live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStorage {
    Data,
    Ram,
}

/// One boot phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseStatus {
    pub name: String,
    pub state: PhaseState,
    /// Milliseconds the phase took (or has taken so far).
    pub ms: u64,
    /// What happened, one line.
    pub detail: String,
}

/// State of a boot phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseState {
    Pending,
    Running,
    Done,
    /// Finished, but something in it failed (see `detail`).
    Degraded,
    Skipped,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub state: ServiceState,
    /// Main process id while one runs.
    pub pid: Option<u32>,
    /// Times the service was started again after its first start.
    pub restarts: u32,
    /// Milliseconds since the current process started.
    pub uptime_ms: Option<u64>,
    pub ready: bool,
    /// Why it is not running or not ready (last exit, missing binary, ...).
    pub reason: Option<String>,
    /// The uid the table runs it as.
    #[serde(default)]
    pub user: u32,
    /// The capabilities the table gives it (every other one is dropped).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// What the running process really holds (`/proc/PID/status`), while one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessCredentials>,
}

/// State of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Waiting for its phase or its dependencies.
    Waiting,
    /// Running, not ready yet.
    Starting,
    /// Running and ready.
    Running,
    /// One-shot that finished successfully.
    Exited,
    /// Exited; restarts after the backoff delay.
    Backoff,
    /// Exited and will not be restarted (policy, or spawn error).
    Failed,
    /// The program does not exist in the image.
    NotInstalled,
    /// SIGTERM sent, waiting for it to exit.
    Stopping,
    /// Stopped on request (shutdown, reload).
    Stopped,
}

/// Answer to `restart` and `reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Ack {
    pub fn ok() -> Ack {
        Ack {
            ok: true,
            error: None,
        }
    }
    pub fn error(message: impl Into<String>) -> Ack {
        Ack {
            ok: false,
            error: Some(message.into()),
        }
    }
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("connecting to init's control socket {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to init's control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("init's control socket {path} closed the connection without an answer")]
    NoAnswer { path: PathBuf },
    #[error("decoding init's answer from {path}: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("init refused the request: {0}")]
    Refused(String),
}

/// Blocking client; one connection per request.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
    timeout: Duration,
}

impl Default for Client {
    fn default() -> Client {
        Client::new(DEFAULT_SOCKET)
    }
}

impl Client {
    /// A client for the socket at `path` with a 10 s timeout.
    pub fn new(path: impl AsRef<Path>) -> Client {
        Client {
            path: path.as_ref().to_path_buf(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Changes the per-request read/write timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Phases, services and overall state.
    pub fn list(&self) -> Result<ListResponse, ControlError> {
        self.call(&Request::List)
    }

    /// Restarts one service.
    pub fn restart(&self, name: &str) -> Result<(), ControlError> {
        self.ack(&Request::Restart {
            name: name.to_string(),
        })
    }

    /// Makes init re-read its service table.
    pub fn reload(&self) -> Result<(), ControlError> {
        self.ack(&Request::Reload)
    }

    fn ack(&self, request: &Request) -> Result<(), ControlError> {
        let ack: Ack = self.call(request)?;
        if ack.ok {
            Ok(())
        } else {
            Err(ControlError::Refused(
                ack.error.unwrap_or_else(|| "no reason given".to_string()),
            ))
        }
    }

    fn call<T: for<'de> Deserialize<'de>>(&self, request: &Request) -> Result<T, ControlError> {
        let io = |source| ControlError::Io {
            path: self.path.clone(),
            source,
        };
        let mut stream =
            UnixStream::connect(&self.path).map_err(|source| ControlError::Connect {
                path: self.path.clone(),
                source,
            })?;
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let mut line = serde_json::to_vec(request).map_err(|source| ControlError::Decode {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        stream.write_all(&line).map_err(io)?;
        let mut reader = BufReader::new(stream).take(MAX_LINE as u64);
        let mut answer = Vec::new();
        reader.read_until(b'\n', &mut answer).map_err(io)?;
        if answer.is_empty() {
            return Err(ControlError::NoAnswer {
                path: self.path.clone(),
            });
        }
        serde_json::from_slice(&answer).map_err(|source| ControlError::Decode {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn requests_match_the_contract() {
        assert_eq!(
            serde_json::to_string(&Request::List).unwrap(),
            r#"{"cmd":"list"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"restart","name":"pxe"}"#).unwrap(),
            Request::Restart { name: "pxe".into() }
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"reload"}"#).unwrap(),
            Request::Reload
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
    }

    #[test]
    fn ack_shapes() {
        assert_eq!(serde_json::to_string(&Ack::ok()).unwrap(), r#"{"ok":true}"#);
        assert_eq!(
            serde_json::to_string(&Ack::error("no service \"x\"")).unwrap(),
            r#"{"ok":false,"error":"no service \"x\""}"#
        );
    }

    fn sample_list() -> ListResponse {
        ListResponse {
            phases: vec![PhaseStatus {
                name: crate::BootPhase::Config.name().to_string(),
                state: PhaseState::Degraded,
                ms: 12,
                detail: "config command failed; using the fallback table".into(),
            }],
            services: vec![ServiceStatus {
                name: "pxe".into(),
                state: ServiceState::NotInstalled,
                pid: None,
                restarts: 2,
                uptime_ms: None,
                ready: false,
                reason: Some("/bin/kindlingd is not in this image".into()),
                user: 402,
                capabilities: vec!["CAP_NET_BIND_SERVICE".into()],
                process: None,
            }],
            ready: false,
            degraded: vec!["pxe: not_installed: /bin/kindlingd is not in this image".into()],
            logs: Some(LogsStatus {
                dir: "/var/lib/kindling/log".into(),
                storage: LogStorage::Data,
                reason: None,
                file_bytes: 1 << 20,
                files: 4,
                syslog: None,
            }),
        }
    }

    #[test]
    fn list_response_round_trips_with_the_contract_names() {
        let list = sample_list();
        let json = serde_json::to_value(&list).unwrap();
        assert_eq!(json["phases"][0]["name"], "config");
        assert_eq!(json["phases"][0]["state"], "degraded");
        assert_eq!(json["services"][0]["state"], "not_installed");
        assert_eq!(json["services"][0]["pid"], serde_json::Value::Null);
        let back: ListResponse = serde_json::from_value(json).unwrap();
        assert_eq!(back, list);
        for (state, word) in [
            (ServiceState::Waiting, "waiting"),
            (ServiceState::Backoff, "backoff"),
            (ServiceState::Stopping, "stopping"),
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), word);
        }
    }

    /// A one-connection stand-in for init: checks the request line, answers `answer`.
    fn serve_once(
        answer: String,
        expect: Request,
    ) -> (tempfile::TempDir, Client, std::thread::JoinHandle<()>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("init.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(line.ends_with('\n'), "{line:?}");
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), expect);
            let mut stream = stream;
            stream.write_all(answer.as_bytes()).unwrap();
            stream.write_all(b"\n").unwrap();
        });
        let client = Client::new(&path).with_timeout(Duration::from_secs(5));
        (dir, client, server)
    }

    #[test]
    fn client_lists() {
        let list = sample_list();
        let (_dir, client, server) =
            serve_once(serde_json::to_string(&list).unwrap(), Request::List);
        assert_eq!(client.list().unwrap(), list);
        server.join().unwrap();
    }

    #[test]
    fn client_restart_and_reload_acks() {
        let (_dir, client, server) = serve_once(
            serde_json::to_string(&Ack::ok()).unwrap(),
            Request::Restart { name: "pxe".into() },
        );
        client.restart("pxe").unwrap();
        server.join().unwrap();

        let (_dir, client, server) = serve_once(
            serde_json::to_string(&Ack::error("the config phase has not finished yet")).unwrap(),
            Request::Reload,
        );
        let err = client.reload().unwrap_err();
        assert!(
            matches!(&err, ControlError::Refused(why) if why == "the config phase has not finished yet"),
            "{err}"
        );
        server.join().unwrap();
    }

    #[test]
    fn client_names_a_bad_answer() {
        let (_dir, client, server) = serve_once("not json".into(), Request::List);
        let err = client.list().unwrap_err();
        assert!(matches!(err, ControlError::Decode { .. }), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn connect_error_names_the_socket() {
        let err = Client::new("/nonexistent/ki-init.sock").list().unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/ki-init.sock"),
            "{err}"
        );
    }
}
