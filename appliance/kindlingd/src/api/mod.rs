//! `kindlingd api`: the appliance's status and control API over HTTP/JSON.
//!
//! Owns the listener, request limits, the route table and the one
//! authorization gate. Each resource's handlers live in their own module and
//! return a `kindling_api` body or an error that knows its [`ErrorKind`]; this
//! module turns those into HTTP answers ([`Reply`], [`http_status`]) and never
//! interprets a resource itself. It must never block the listener on one slow
//! client: a small pool of worker threads serves requests. It also starts the
//! runtime assignments' Consul KV sync (`crate::assignments`), which the node
//! handlers use too.
//!
//! A request goes: [`route`] (method and path → the route's [`Access`] and its
//! handler) → [`authorize`] (may this caller do that?) → body read → handler.

mod nodes;
mod overlays;
mod stack;
mod status;

mod access;

use access::{authorize, Access, Caller};
use kindling_api::health::Health;
use kindling_api::{ApiFailure, ErrorBody, ErrorKind};
use kindling_inventory::AssignmentSync;
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
    /// 200 with a contract type from `kindling_api` as the body.
    pub fn body<T: serde::Serialize>(value: &T) -> Self {
        match serde_json::to_value(value) {
            Ok(body) => Self::ok(body),
            Err(e) => Self::failed(ErrorKind::Internal, format!("encoding the reply: {e}")),
        }
    }
    /// The error reply for a library's failure: its kind decides the status.
    pub fn failure(failure: &dyn ApiFailure) -> Self {
        Self::failed(failure.kind(), failure)
    }
    /// An error reply of `kind`, `{"error": message, "kind": kind}`.
    pub fn failed(kind: ErrorKind, message: impl std::fmt::Display) -> Self {
        let body = ErrorBody::new(kind, message);
        Self {
            status: http_status(kind),
            body: serde_json::to_value(&body).unwrap_or_else(|_| json!({ "error": body.error })),
        }
    }
    /// A handler's outcome: its body, or its failure's error reply.
    pub fn result<T: serde::Serialize, E: ApiFailure>(result: Result<T, E>) -> Self {
        match result {
            Ok(value) => Self::body(&value),
            Err(failure) => Self::failure(&failure),
        }
    }
}

/// The one mapping from an API error kind to its HTTP status. No wildcard: a
/// new kind must be given a status here.
pub fn http_status(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::BadRequest => 400,
        ErrorKind::Unauthenticated => 401,
        ErrorKind::Forbidden => 403,
        ErrorKind::NotFound => 404,
        ErrorKind::Conflict => 409,
        ErrorKind::Refused => 422,
        ErrorKind::TooLarge => 413,
        ErrorKind::Internal => 500,
        ErrorKind::Unavailable => 503,
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

/// What [`route`] and [`authorize`] see of a request: its method and path.
/// The place to add what authentication will need (the TLS client
/// certificate's identity, the `Authorization` header).
pub struct Request<'a> {
    method: &'a tiny_http::Method,
    segments: Vec<&'a str>,
}

/// What a handler needs from the server: where state lives and the
/// assignment sync.
struct Context<'a> {
    paths: &'a ApiPaths,
    assignments: Option<&'a AssignmentSync>,
}

/// A handler: runs once the caller is authorized and the body is read.
type Handler<'a> = Box<dyn FnOnce(&Caller, &[u8]) -> Reply + 'a>;

/// One row of the route table: who may call it and what runs.
struct Route<'a> {
    access: Access,
    handler: Handler<'a>,
}

impl<'a> Route<'a> {
    fn new(access: Access, handler: impl FnOnce(&Caller, &[u8]) -> Reply + 'a) -> Self {
        Self {
            access,
            handler: Box::new(handler),
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Address and port to listen on (default all addresses on the site's
    /// API port, 9000 without a site config).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::console::init("api");
    let listen = args.listen.unwrap_or_else(default_listen_address);
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

/// All addresses on the site's API port.
fn default_listen_address() -> String {
    let port = crate::site::load_effective()
        .map(|s| s.api.port)
        .unwrap_or(9000);
    format!("0.0.0.0:{port}")
}

fn serve(server: &tiny_http::Server, paths: &ApiPaths, assignments: Option<&AssignmentSync>) {
    let context = Context { paths, assignments };
    for mut request in server.incoming_requests() {
        let method = request.method().clone();
        let url = request.url().split('?').next().unwrap_or("").to_string();
        let target = Request {
            method: &method,
            segments: url.split('/').filter(|s| !s.is_empty()).collect(),
        };
        let route = route(&context, &target);
        // The caller is checked before the body is read: an unauthorized
        // client cannot make the appliance read a large upload.
        let reply = match authorize(&target, route.access) {
            Ok(caller) => match read_body(&mut request) {
                Ok(body) => (route.handler)(&caller, &body),
                Err(reply) => reply,
            },
            Err(refusal) => Reply::failure(&refusal),
        };
        respond(request, reply);
    }
}

fn read_body(request: &mut tiny_http::Request) -> Result<Vec<u8>, Reply> {
    let too_large = || {
        Reply::failed(
            ErrorKind::TooLarge,
            format!("request body over {MAX_BODY} bytes"),
        )
    };
    if request.body_length().is_some_and(|n| n as u64 > MAX_BODY) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    match request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
    {
        Ok(n) if n as u64 > MAX_BODY => Err(too_large()),
        Ok(_) => Ok(body),
        Err(e) => Err(Reply::failed(
            ErrorKind::BadRequest,
            format!("reading request body: {e}"),
        )),
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

/// The route table: method and path → who may call it and what runs. Every
/// endpoint is one row; [`Access`] says whether it is public, reads or
/// changes the appliance.
fn route<'a>(cx: &'a Context<'a>, req: &'a Request<'a>) -> Route<'a> {
    use tiny_http::Method::{Get, Post, Put};
    use Access::{Admin, Public, Read};
    let (paths, assignments) = (cx.paths, cx.assignments);
    let (run, state) = (paths.run_dir.as_path(), paths.state_dir.as_path());
    match (req.method, req.segments.as_slice()) {
        (Get, ["healthz"]) => Route::new(Public, |_, _| Reply::body(&Health::ok())),
        (Get, ["v1", "status"]) => Route::new(Read, |_, _| Reply::body(&status::status(paths))),
        (Get, ["v1", "services"]) => {
            Route::new(Read, |_, _| Reply::result(status::services(paths)))
        }
        (Post, ["v1", "services", name, "restart"]) => Route::new(Admin, move |_, _| {
            Reply::result(status::restart(paths, name))
        }),
        (Get, ["v1", "config", "report"]) => {
            Route::new(Read, |_, _| Reply::result(status::config_report(paths)))
        }
        (Get, ["v1", "config", "effective"]) => {
            Route::new(Read, |_, _| overlays::effective(run, state))
        }
        (Get, ["v1", "overlays"]) => Route::new(Read, |_, _| overlays::list(run, state)),
        (Post, ["v1", "overlays"]) => Route::new(Admin, |_, body| {
            overlays::push(run, state, &paths.control_socket(), body)
        }),
        (Get, ["v1", "nodes"]) => Route::new(Read, |_, _| nodes::list(run, state)),
        (Put, ["v1", "nodes", mac, "profile"]) => Route::new(Admin, move |_, body| {
            nodes::assign(run, state, mac, body, assignments)
        }),
        (Post, ["v1", "nodes", mac, "reprovision"]) => Route::new(Admin, move |_, body| {
            nodes::reprovision(run, state, mac, body)
        }),
        (Get, ["v1", "stack"]) => {
            Route::new(Read, |_, _| Reply::result(stack::get_stack(run, state)))
        }
        (Post, ["v1", "vault", "unseal"]) => Route::new(Admin, |_, body| {
            Reply::result(stack::post_unseal(run, state, body))
        }),
        (Get, ["v1", "vault", "init-secrets"]) => Route::new(Admin, |_, _| {
            Reply::result(stack::get_init_secrets(run, state))
        }),
        (_, ["v1", ..]) => {
            let message = format!(
                "no such endpoint: {} /{}",
                req.method,
                req.segments.join("/")
            );
            Route::new(Public, move |_, _| {
                Reply::failed(ErrorKind::NotFound, message)
            })
        }
        _ => Route::new(Public, |_, _| {
            Reply::failed(ErrorKind::NotFound, "the API lives under /v1/")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiny_http::Method;

    fn access_of(method: Method, path: &str) -> Access {
        let path = path.to_string();
        let paths = ApiPaths {
            run_dir: "/nonexistent/run".into(),
            state_dir: "/nonexistent/state".into(),
        };
        let cx = Context {
            paths: &paths,
            assignments: None,
        };
        let req = Request {
            method: &method,
            segments: path.split('/').filter(|s| !s.is_empty()).collect(),
        };
        let access = route(&cx, &req).access;
        access
    }

    /// Only health and "not found" are public; everything that changes the
    /// appliance or hands out secret material is Admin.
    #[test]
    fn every_route_declares_its_access() {
        use Access::{Admin, Public, Read};
        for (method, path, access) in [
            (Method::Get, "/healthz", Public),
            (Method::Get, "/v1/nope", Public),
            (Method::Get, "/", Public),
            (Method::Get, "/v1/status", Read),
            (Method::Get, "/v1/services", Read),
            (Method::Get, "/v1/config/report", Read),
            (Method::Get, "/v1/config/effective", Read),
            (Method::Get, "/v1/overlays", Read),
            (Method::Get, "/v1/nodes", Read),
            (Method::Get, "/v1/stack", Read),
            (Method::Post, "/v1/services/pxe/restart", Admin),
            (Method::Post, "/v1/overlays", Admin),
            (Method::Put, "/v1/nodes/52:54:00:6b:00:99/profile", Admin),
            (
                Method::Post,
                "/v1/nodes/52:54:00:6b:00:99/reprovision",
                Admin,
            ),
            (Method::Post, "/v1/vault/unseal", Admin),
            (Method::Get, "/v1/vault/init-secrets", Admin),
        ] {
            assert_eq!(access_of(method.clone(), path), access, "{method} {path}");
        }
    }

    #[test]
    fn an_error_kind_alone_decides_the_status() {
        let reply = Reply::failed(ErrorKind::Unavailable, "init is not answering");
        assert_eq!(reply.status, 503);
        assert_eq!(
            reply.body,
            json!({"error": "init is not answering", "kind": "unavailable"})
        );
        assert_eq!(Reply::body(&Health::ok()).body, json!({"status": "ok"}));
    }
}
