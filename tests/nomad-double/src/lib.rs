//! A test double for the few Nomad HTTP API endpoints kindling's stack
//! bootstrap uses. Real Nomad cannot be installed on the build machines (no
//! Debian or PyPI package ships it), so the stack tests and the stack benchmark
//! run against this instead. It is never part of the appliance image.
//!
//! What it stands in for, and how faithfully:
//! - `POST /v1/acl/bootstrap`: 200 with a management `ACLToken` the first time;
//!   afterwards 400 `ACL bootstrap already done (reset index: N)`, like Nomad.
//!   Nomad's documented reset works too: writing `N` into
//!   `<data_dir>/server/acl-bootstrap-reset` allows one more bootstrap.
//! - `GET /v1/acl/token/self`: the token named by `X-Nomad-Token`, or 403.
//! - `GET /v1/status/leader`: the leader's RPC address as a JSON string.
//! - `GET /v1/agent/health`: `{"server":{"ok":true,…}}` (not in the OpenAPI
//!   document; shape from Nomad's API docs).
//! - `GET /v1/nodes`: the client nodes a test registered
//!   ([`NomadDouble::register_node`]) as `NodeListStub`s, to the management
//!   token only (403 `Permission denied` otherwise: listing nodes needs
//!   `node:read`, which an anonymous request lacks under ACLs).
//!
//! Response shapes are checked against an excerpt of the published Nomad
//! OpenAPI document in `openapi/` by this crate's tests. The double keeps its
//! state in memory, plus the bootstrap state in `<data_dir>/double-state.json`
//! when a data dir is given, so a restarted double remembers it was bootstrapped.
//! It must never be used for anything but tests and benchmarks.
//!
//! [`NomadAgent`] starts it the way `nomad agent -config=DIR` would start
//! Nomad: from kindling's rendered config directory, checked against
//! Nomad's documented parameters ([`agent_config`]), serving HTTPS with the
//! configured certificate and refusing clients without a certificate from
//! the configured CA ([`tls_front`]).

pub mod agent_config;
pub mod tls_front;

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One recorded request: method and path (tests count bootstrap calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Default)]
struct State {
    /// The management token, once bootstrapped.
    management: Option<Value>,
    /// Raft index of the bootstrap, reported in the "already done" error.
    bootstrap_index: u64,
    seen: Vec<SeenRequest>,
    /// Client nodes, as `NodeListStub`s.
    nodes: Vec<Value>,
}

/// A running double; stops when dropped.
pub struct NomadDouble {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    state: Arc<Mutex<State>>,
    thread: Option<JoinHandle<()>>,
}

/// Starting the double failed (the listen address could not be bound).
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "starting the Nomad test double: {}", self.0)
    }
}
impl std::error::Error for StartError {}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl NomadDouble {
    /// Listens on `listen` (use port 0 for a free port). `data_dir` plays the
    /// role of Nomad's `data_dir`: the bootstrap state survives a restart of
    /// the double and the `server/acl-bootstrap-reset` file is honoured.
    pub fn start(listen: &str, data_dir: Option<PathBuf>) -> Result<Self, StartError> {
        let server = tiny_http::Server::http(listen)
            .map_err(|e| StartError(format!("bind {listen}: {e}")))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| StartError("listener has no IP address".into()))?;
        let mut state = State {
            bootstrap_index: 0,
            ..State::default()
        };
        if let Some(dir) = &data_dir {
            if let Ok(text) = std::fs::read_to_string(dir.join("double-state.json")) {
                if let Ok(saved) = serde_json::from_str::<Value>(&text) {
                    state.management = saved.get("management").cloned().filter(|v| !v.is_null());
                    state.bootstrap_index = saved.get("index").and_then(Value::as_u64).unwrap_or(0);
                }
            }
        }
        let server = Arc::new(server);
        let state = Arc::new(Mutex::new(state));
        let thread = {
            let server = Arc::clone(&server);
            let state = Arc::clone(&state);
            std::thread::spawn(move || serve(&server, &state, data_dir.as_ref(), addr))
        };
        Ok(Self {
            addr,
            server,
            state,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request served so far.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.state
            .lock()
            .map(|s| s.seen.clone())
            .unwrap_or_default()
    }

    /// Registers a client node named `name` in datacenter `dc`, status
    /// `ready`, as a Nomad client does when it first reaches the servers;
    /// returns its node ID.
    pub fn register_node(&self, name: &str, dc: &str) -> String {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let id = pseudo_uuid(n, 0xc);
        let stub = json!({
            "Address": "127.0.0.1",
            "CreateIndex": 100 + n,
            "Datacenter": dc,
            "Drain": false,
            "ID": id,
            "ModifyIndex": 100 + n,
            "Name": name,
            "NodeClass": "",
            "SchedulingEligibility": "eligible",
            "Status": "ready",
            "StatusDescription": "",
            "Version": "1.1.4",
        });
        if let Ok(mut st) = self.state.lock() {
            st.nodes.push(stub);
        }
        id
    }

    /// Sets a registered node's `Status` (`ready`, `down`, `initializing`),
    /// as the servers do when its heartbeats stop or resume.
    pub fn set_node_status(&self, id: &str, status: &str) {
        if let Ok(mut st) = self.state.lock() {
            for node in st.nodes.iter_mut().filter(|n| n["ID"] == id) {
                node["Status"] = json!(status);
            }
        }
    }

    /// How many bootstrap requests succeeded (200).
    pub fn successful_bootstraps(&self) -> usize {
        self.seen()
            .iter()
            .filter(|r| r.path == "/v1/acl/bootstrap" && r.status == 200)
            .count()
    }
}

/// The double started from a Nomad agent config directory.
pub struct NomadAgent {
    pub double: NomadDouble,
    pub front: Option<tls_front::TlsFront>,
    pub config: agent_config::AgentConfig,
}

impl NomadAgent {
    /// Loads and checks `config_dir`, then serves on 127.0.0.1 at its HTTP
    /// port: over (mutual) TLS when its `tls` block says so.
    pub fn start(
        config_dir: &std::path::Path,
        data_dir: Option<PathBuf>,
    ) -> Result<Self, StartError> {
        let config = agent_config::AgentConfig::load(config_dir).map_err(|problems| {
            StartError(format!("{}: {}", config_dir.display(), problems.join("; ")))
        })?;
        let listen = format!("127.0.0.1:{}", config.http_port);
        match &config.tls {
            None => Ok(Self {
                double: NomadDouble::start(&listen, data_dir)?,
                front: None,
                config,
            }),
            Some(tls) => {
                let double = NomadDouble::start("127.0.0.1:0", data_dir)?;
                let front =
                    tls_front::TlsFront::start(&listen, double.addr(), tls).map_err(StartError)?;
                Ok(Self {
                    double,
                    front: Some(front),
                    config,
                })
            }
        }
    }

    /// `https://127.0.0.1:PORT` (or `http://` without TLS).
    pub fn url(&self) -> String {
        match &self.front {
            Some(f) => format!("https://{}", f.addr()),
            None => self.double.url(),
        }
    }

    pub fn successful_bootstraps(&self) -> usize {
        self.double.successful_bootstraps()
    }
}

impl Drop for NomadDouble {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    server: &tiny_http::Server,
    state: &Mutex<State>,
    data_dir: Option<&PathBuf>,
    addr: SocketAddr,
) {
    for mut request in server.incoming_requests() {
        let method = request.method().as_str().to_string();
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let token = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("X-Nomad-Token"))
            .map(|h| h.value.as_str().to_string());
        let mut body = String::new();
        let _ = request.as_reader().read_to_string(&mut body);
        let (status, payload) = match state.lock() {
            Ok(mut st) => {
                let answer = route(&mut st, &method, &path, token.as_deref(), data_dir, addr);
                st.seen.push(SeenRequest {
                    method: method.clone(),
                    path: path.clone(),
                    status: answer.0,
                });
                answer
            }
            Err(_) => (500, Payload::Text("double state poisoned".into())),
        };
        let (bytes, content_type) = match payload {
            Payload::Json(v) => (v.to_string().into_bytes(), "application/json"),
            Payload::Text(t) => (t.into_bytes(), "text/plain; charset=utf-8"),
        };
        let mut response = tiny_http::Response::from_data(bytes).with_status_code(status);
        if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", content_type) {
            response.add_header(h);
        }
        let _ = request.respond(response);
    }
}

enum Payload {
    Json(Value),
    Text(String),
}

fn route(
    st: &mut State,
    method: &str,
    path: &str,
    token: Option<&str>,
    data_dir: Option<&PathBuf>,
    addr: SocketAddr,
) -> (u16, Payload) {
    match (method, path) {
        ("PUT" | "POST", "/v1/acl/bootstrap") => bootstrap(st, data_dir),
        ("GET", "/v1/nodes") => match (&st.management, token) {
            (Some(m), Some(t)) if m.get("SecretID").and_then(Value::as_str) == Some(t) => {
                (200, Payload::Json(Value::Array(st.nodes.clone())))
            }
            _ => (403, Payload::Text("Permission denied".into())),
        },
        ("GET", "/v1/acl/token/self") => match (&st.management, token) {
            (Some(m), Some(t)) if m.get("SecretID").and_then(Value::as_str) == Some(t) => {
                (200, Payload::Json(m.clone()))
            }
            _ => (403, Payload::Text("ACL token not found".into())),
        },
        // Nomad's RPC port is the HTTP port + 1 by default; any address will do.
        ("GET", "/v1/status/leader") => (
            200,
            Payload::Json(json!(format!("{}:{}", addr.ip(), addr.port() + 1))),
        ),
        ("GET", "/v1/agent/health") => (
            200,
            Payload::Json(
                json!({"server": {"ok": true, "message": "ok"}, "client": {"ok": true, "message": "ok"}}),
            ),
        ),
        (
            _,
            "/v1/acl/bootstrap" | "/v1/acl/token/self" | "/v1/status/leader" | "/v1/agent/health"
            | "/v1/nodes",
        ) => (405, Payload::Text("Invalid method".into())),
        _ => (
            404,
            Payload::Text("the Nomad test double does not serve this endpoint".into()),
        ),
    }
}

fn bootstrap(st: &mut State, data_dir: Option<&PathBuf>) -> (u16, Payload) {
    if st.management.is_some() {
        let reset_file = data_dir.map(|d| d.join("server").join("acl-bootstrap-reset"));
        let reset_ok = reset_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .is_some_and(|s| s.trim().parse::<u64>().ok() == Some(st.bootstrap_index));
        if !reset_ok {
            return (
                400,
                Payload::Text(format!(
                    "ACL bootstrap already done (reset index: {})",
                    st.bootstrap_index
                )),
            );
        }
        if let Some(f) = reset_file {
            let _ = std::fs::remove_file(f);
        }
    }
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    st.bootstrap_index += 10 + n;
    let token = json!({
        "AccessorID": pseudo_uuid(n, 0xa),
        "SecretID": pseudo_uuid(n, 0x5),
        "Name": "Bootstrap Token",
        "Type": "management",
        "Policies": [],
        "Roles": [],
        "Global": true,
        "CreateTime": "2026-01-01T00:00:00Z",
        "CreateIndex": st.bootstrap_index,
        "ModifyIndex": st.bootstrap_index,
    });
    st.management = Some(token.clone());
    if let Some(dir) = data_dir {
        let saved = json!({"management": token, "index": st.bootstrap_index});
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(dir.join("double-state.json"), saved.to_string());
    }
    (200, Payload::Json(token))
}

/// A UUID-shaped id that differs per double instance and call: random enough
/// for a test double (not a secret), stable in shape.
fn pseudo_uuid(n: u64, salt: u64) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let a = t ^ (n.rotate_left(17)) ^ salt.rotate_left(40) ^ u64::from(std::process::id());
    let b = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b & 0xfff,
        b >> 16 & 0xffff_ffff_ffff
    )
}
