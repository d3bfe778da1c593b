//! `kindlingd api`: the appliance's status and control API over HTTP/JSON.
//!
//! Owns the listener, request limits and routing. Each resource's handlers live
//! in their own module and return a [`Reply`]; this module never interprets a
//! resource itself. It must never block the listener on one slow client: a small
//! pool of worker threads serves requests. It also starts the runtime
//! assignments' Consul KV sync (`crate::assignments`), which the node
//! handlers use too.

mod nodes;
mod overlays;
mod stack;
mod status;

use kindling_pxe::AssignmentSync;
use serde_json::{json, Value};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

/// Largest request body accepted (an overlay push is the largest legitimate one).
const MAX_BODY: u64 = 64 * 1024 * 1024;
const WORKERS: usize = 4;

/// A handler's answer: an HTTP status and a JSON body.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Self { status: 200, body }
    }
    pub fn error(status: u16, message: impl std::fmt::Display) -> Self {
        Self {
            status,
            body: json!({ "error": message.to_string() }),
        }
    }
}

/// Where the API finds the appliance's runtime state; overridable for tests.
#[derive(Debug, Clone)]
pub struct ApiPaths {
    /// `/run/kindling`: site.json, config-report.json, status/*.json, init.sock.
    pub run_dir: PathBuf,
    /// `/var/lib/kindling`: the data partition.
    pub state_dir: PathBuf,
}

impl ApiPaths {
    fn from_env() -> Self {
        let var = |k: &str, d: &str| {
            std::env::var_os(k)
                .map(PathBuf::from)
                .unwrap_or_else(|| d.into())
        };
        Self {
            run_dir: var("KINDLING_RUN_DIR", "/run/kindling"),
            state_dir: var("KINDLING_STATE_DIR", "/var/lib/kindling"),
        }
    }
    pub fn control_socket(&self) -> PathBuf {
        self.run_dir.join("init.sock")
    }
}

struct Request<'a> {
    method: &'a tiny_http::Method,
    segments: Vec<&'a str>,
    body: Vec<u8>,
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    crate::console::init("api");
    let listen = listen_address(args)?;
    let paths = Arc::new(ApiPaths::from_env());
    let assignments = crate::assignments::sync(&paths.run_dir, &paths.state_dir);
    let server = Arc::new(
        tiny_http::Server::http(&listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?,
    );
    println!("api: listening on http://{listen}");
    crate::notify_ready();
    if let Some(sync) = &assignments {
        crate::assignments::spawn(Arc::clone(sync), &paths.run_dir);
    }
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let server = Arc::clone(&server);
            let paths = Arc::clone(&paths);
            let assignments = assignments.clone();
            std::thread::spawn(move || serve(&server, &paths, assignments.as_deref()))
        })
        .collect();
    for worker in workers {
        // A worker only ends when the listener is closed; nothing to recover.
        let _ = worker.join();
    }
    Ok(())
}

/// `--listen ADDR:PORT`, else all addresses on the site's API port.
fn listen_address(args: &[String]) -> anyhow::Result<String> {
    match args {
        [] => {
            let port = crate::site::load_effective()
                .map(|s| s.api.port)
                .unwrap_or(9000);
            Ok(format!("0.0.0.0:{port}"))
        }
        [flag, addr] if flag == "--listen" => Ok(addr.clone()),
        _ => anyhow::bail!("usage: kindlingd api [--listen ADDR:PORT]"),
    }
}

fn serve(server: &tiny_http::Server, paths: &ApiPaths, assignments: Option<&AssignmentSync>) {
    for mut request in server.incoming_requests() {
        let reply = match read_body(&mut request) {
            Ok(body) => {
                let url = request.url().split('?').next().unwrap_or("").to_string();
                let segments: Vec<&str> = url.split('/').filter(|s| !s.is_empty()).collect();
                route(
                    paths,
                    assignments,
                    &Request {
                        method: request.method(),
                        segments,
                        body,
                    },
                )
            }
            Err(reply) => reply,
        };
        respond(request, reply);
    }
}

fn read_body(request: &mut tiny_http::Request) -> Result<Vec<u8>, Reply> {
    if request.body_length().is_some_and(|n| n as u64 > MAX_BODY) {
        return Err(Reply::error(
            413,
            format!("request body over {MAX_BODY} bytes"),
        ));
    }
    let mut body = Vec::new();
    match request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
    {
        Ok(n) if n as u64 > MAX_BODY => Err(Reply::error(
            413,
            format!("request body over {MAX_BODY} bytes"),
        )),
        Ok(_) => Ok(body),
        Err(e) => Err(Reply::error(400, format!("reading request body: {e}"))),
    }
}

fn respond(request: tiny_http::Request, reply: Reply) {
    let body = serde_json::to_vec_pretty(&reply.body).unwrap_or_else(|_| b"{}".to_vec());
    let len = body.len();
    let mut response = tiny_http::Response::from_data(body)
        .with_status_code(reply.status)
        .with_chunked_threshold(usize::MAX);
    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", "application/json") {
        response.add_header(h);
    }
    if let Err(e) = request.respond(response) {
        eprintln!("api: client went away before the {len}-byte reply was sent: {e}");
    }
}

impl From<(u16, Value)> for Reply {
    fn from((status, body): (u16, Value)) -> Self {
        Reply { status, body }
    }
}

fn route(paths: &ApiPaths, assignments: Option<&AssignmentSync>, req: &Request<'_>) -> Reply {
    use tiny_http::Method::{Get, Post, Put};
    let (run, state) = (paths.run_dir.as_path(), paths.state_dir.as_path());
    match (req.method, req.segments.as_slice()) {
        (Get, ["v1", "status"]) => status::status(paths),
        (Get, ["v1", "services"]) => status::services(paths),
        (Post, ["v1", "services", name, "restart"]) => status::restart(paths, name),
        (Get, ["v1", "config", "report"]) => status::config_report(paths),
        (Get, ["v1", "config", "effective"]) => overlays::effective(run, state).into(),
        (Get, ["v1", "overlays"]) => overlays::list(run, state).into(),
        (Post, ["v1", "overlays"]) => {
            overlays::push(run, state, &paths.control_socket(), &req.body).into()
        }
        (Get, ["v1", "nodes"]) => nodes::list(run, state).into(),
        (Put, ["v1", "nodes", mac, "profile"]) => {
            nodes::assign(run, state, mac, &req.body, assignments).into()
        }
        (Get, ["v1", "stack"]) => stack::get_stack(run, state).into(),
        (Post, ["v1", "vault", "unseal"]) => stack::post_unseal(run, state, &req.body).into(),
        (Get, ["v1", "vault", "init-secrets"]) => stack::get_init_secrets(run, state).into(),
        (_, ["v1", ..]) => Reply::error(
            404,
            format!(
                "no such endpoint: {} /{}",
                req.method,
                req.segments.join("/")
            ),
        ),
        _ => Reply::error(404, "the API lives under /v1/"),
    }
}
