//! `kindlingd api`: the appliance's status and control API, JSON over
//! HTTP/1.1 over TLS only.
//!
//! Owns the route table, the one authorization gate and the mapping of
//! errors to HTTP answers. Each resource's handlers live in their own module
//! and return a `kindling_api` body or an error that knows its
//! [`ErrorKind`]; this module turns those into HTTP answers ([`Reply`],
//! [`http_status`]) and never interprets a resource itself. The wire (TLS,
//! HTTP framing, timeouts, connection caps) is `transport`, where it listens
//! `listen`, its certificate `tls`, who may call `access` and `operators`.
//! It also starts the runtime assignments' Consul KV sync
//! (`crate::assignments`), which the node handlers use too.
//!
//! A request goes: [`route`] (method and path → the route's [`Access`] and
//! its handler) → [`authorize`] (may this caller do that? from the head
//! alone) → body read → handler (`app::answer`).

mod artifacts;
mod backups;
mod logs;
mod metrics;
mod nodes;
mod overlays;
mod page;
mod stack;
mod status;
mod update;

mod access;
mod app;
mod body;
mod listen;
mod operators;
mod session;
mod session_gate;
pub mod tls;
mod transport;
mod ui;

use access::{Access, Caller};
use app::App;
use kindling_api::auth::WhoAmI;
use kindling_api::health::Health;
use kindling_api::{ApiFailure, ErrorBody, ErrorKind};
use kindling_inventory::AssignmentSync;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// A handler's answer: an HTTP status and a JSON body, or (for the few
/// endpoints that are not JSON) a text body that replaces it.
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: Option<Box<TextBody>>,
    /// Headers beyond the content type and `Cache-Control` (the status
    /// page's cookie, redirect and content security policy).
    pub headers: Vec<(&'static str, String)>,
    /// A body that streams (`GET /v1/logs/SERVICE?follow=1`); replaces both.
    /// (Boxed, as `text`: rare, and they would make every `Reply` larger.)
    pub stream: Option<Box<StreamBody>>,
}

/// A body sent as its producer hands over chunks, with its content type.
pub struct StreamBody {
    pub content_type: &'static str,
    pub chunks: tokio::sync::mpsc::Receiver<hyper::body::Bytes>,
}

/// A body in another format than JSON, with its content type.
pub struct TextBody {
    pub content_type: &'static str,
    pub text: String,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Self {
            status: 200,
            body,
            text: None,
            headers: Vec::new(),
            stream: None,
        }
    }
    /// 200 with `text` of `content_type` as the body.
    pub fn text(content_type: &'static str, text: String) -> Self {
        Self {
            status: 200,
            body: Value::Null,
            text: Some(Box::new(TextBody { content_type, text })),
            headers: Vec::new(),
            stream: None,
        }
    }
    /// The same reply with another status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    /// The same reply with one more header.
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
    /// 200 with a contract type from `kindling_api` as the body.
    pub fn body<T: serde::Serialize>(value: &T) -> Self {
        match serde_json::to_value(value) {
            Ok(body) => Self::ok(body),
            Err(e) => Self::failed(ErrorKind::Internal, format!("encoding the reply: {e}")),
        }
    }
    /// 200 with a body of `content_type` that streams `chunks`.
    pub fn stream(
        content_type: &'static str,
        chunks: tokio::sync::mpsc::Receiver<hyper::body::Bytes>,
    ) -> Self {
        Self {
            status: 200,
            body: Value::Null,
            text: None,
            headers: Vec::new(),
            stream: Some(Box::new(StreamBody {
                content_type,
                chunks,
            })),
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
            text: None,
            headers: Vec::new(),
            stream: None,
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
        ErrorKind::InsufficientStorage => 507,
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

/// A request's method, as the route table matches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
    Other,
}

impl From<&http::Method> for Method {
    fn from(method: &http::Method) -> Self {
        match *method {
            http::Method::GET => Self::Get,
            http::Method::PUT => Self::Put,
            http::Method::POST => Self::Post,
            http::Method::DELETE => Self::Delete,
            _ => Self::Other,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Get => "GET",
            Self::Put => "PUT",
            Self::Post => "POST",
            Self::Delete => "DELETE",
            Self::Other => "this method on",
        })
    }
}

/// What [`route`] and [`authorize`] see of a request: its method, its path
/// and its `Authorization` header values. Never the body.
pub struct Request<'a> {
    method: Method,
    segments: Vec<&'a str>,
    /// The query string, without `?` (empty when there is none).
    query: &'a str,
    authorization: Vec<&'a [u8]>,
}

/// What a handler needs from the server: where state lives, the assignment
/// sync and the API's own endpoint facts.
struct Context<'a> {
    paths: &'a ApiPaths,
    assignments: Option<&'a AssignmentSync>,
    app: &'a App,
}

/// A handler: runs once the caller is authorized and the body is read.
type Handler<'a> = Box<dyn FnOnce(&Caller, &[u8]) -> Reply + 'a>;

/// One row of the route table: who may call it and what runs.
struct Route<'a> {
    access: Access,
    handler: Handler<'a>,
    /// The body is an upload streamed to disk, never read into memory;
    /// `handler` is not used.
    upload: Option<Upload>,
}

/// Where an upload's body streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upload {
    /// `POST /v1/update`: into the update spool (`update::push`).
    Update,
    /// `POST /v1/artifacts?QUERY`: into the artifact store (`artifacts::push`).
    Artifact { query: String },
}

impl<'a> Route<'a> {
    fn new(access: Access, handler: impl FnOnce(&Caller, &[u8]) -> Reply + 'a) -> Self {
        Self {
            access,
            handler: Box::new(handler),
            upload: None,
        }
    }

    /// An upload: the body goes to disk as it comes.
    fn upload(access: Access, upload: Upload) -> Self {
        Self {
            upload: Some(upload),
            ..Self::new(access, |_, _| {
                Reply::failed(ErrorKind::Internal, "an upload is streamed, not read whole")
            })
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Address and port to listen on instead of the site's (LAN address,
    /// and the uplink's when exposed, on `api.port`). Repeatable.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::console::init("api");
    let paths = ApiPaths::from_env();
    let site = match crate::site::load_effective() {
        Ok(site) => Some(site),
        Err(e) => {
            tracing::warn!("no site configuration ({e}): no operator can be admitted");
            None
        }
    };
    let plan = match (&site, args.listen.is_empty()) {
        (_, false) => listen::Plan::Fixed(args.listen),
        (Some(site), true) => listen::Plan::for_site(site, &paths.run_dir),
        (None, true) => return idle_without_site(),
    };
    let loaded = tls::load(&paths.run_dir)?;
    tracing::info!(
        "CA {} (pin this in the CLI: kindling login)",
        loaded.ca_fingerprint
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Handlers are blocking (files, init's socket, Consul): a few at a
        // time. Four, not more: on two cores more threads render no faster,
        // and each holds its own page render and malloc arena (with 16,
        // 200 clients on the page took the API from 11 to 54 MiB RSS and
        // its p99 from 300 to 510 ms; `tests/status_load.rs`).
        .max_blocking_threads(4)
        .build()?;
    // Uploads a crash or power cut left half written: no upload runs yet.
    let swept = kindling_artifacts::ArtifactStore::new(&paths.state_dir).sweep_partials();
    if swept > 0 {
        tracing::info!("artifacts: removed {swept} unfinished upload(s)");
    }
    let assignments = crate::assignments::sync(&paths.run_dir, &paths.state_dir);
    let gate = transport::ConnectionGate::new(transport::Limits::default());
    let app = Arc::new(App::new(
        paths,
        assignments.clone(),
        loaded.ca_fingerprint,
        gate.clone(),
    ));
    tracing::info!("operators: {}", operators::names(&app.operators.current()));
    runtime.block_on(async move {
        let service = {
            let app = app.clone();
            move |request| app::answer(app.clone(), request)
        };
        let mut listeners = listen::Listeners::new(plan, loaded.config, gate, service);
        listeners.reconcile();
        let missing = listeners.missing();
        if !missing.is_empty() {
            let list: Vec<String> = missing
                .iter()
                .map(|(a, why)| format!("{a} ({why})"))
                .collect();
            anyhow::bail!("cannot listen on {}", list.join(", "));
        }
        crate::notify_ready();
        if let Some(sync) = &assignments {
            crate::assignments::spawn(Arc::clone(sync), &app.paths.run_dir);
        }
        crate::catalog::spawn(
            &app.paths.run_dir,
            &app.paths.state_dir,
            &crate::assignments::consul_url(),
        );
        overlays::record_at_blessing(&app.paths.run_dir, &app.paths.state_dir);
        listeners.keep_reconciling().await;
        Ok(())
    })
}

/// Without a site configuration nobody could be authenticated and the LAN
/// address is unknown: the API listens nowhere, says so, and stays up so
/// the appliance's state is the config phase's failure, not a restart loop.
fn idle_without_site() -> anyhow::Result<()> {
    tracing::warn!(
        "not listening: without a site configuration there is no LAN address and no operator"
    );
    crate::notify_ready();
    loop {
        std::thread::park();
    }
}

/// The route table: method and path → who may call it and what runs. Every
/// endpoint is one row; [`Access`] says whether it is public, reads or
/// changes the appliance. Only `GET /healthz` and the login form
/// (`/ui/login`) are public: anything else,
/// an unknown path included, needs at least the read role.
fn route<'a>(cx: &'a Context<'a>, req: &'a Request<'a>) -> Route<'a> {
    use Access::{Admin, Public, Read};
    use Method::{Delete, Get, Post, Put};
    let (paths, assignments) = (cx.paths, cx.assignments);
    let (run, state) = (paths.run_dir.as_path(), paths.state_dir.as_path());
    match (req.method, req.segments.as_slice()) {
        (Get, ["healthz"]) => Route::new(Public, |_, _| Reply::body(&Health::ok())),
        // The status page (`ui`): the page and its live fragment read; the
        // login checks the token itself (its body), so it is reachable
        // without one; actions go to the /v1 routes below.
        (Get, []) => Route::new(Read, |caller, _| ui::page(cx, caller)),
        (Get, ["ui", "fragment"]) => Route::new(Read, |caller, _| ui::fragment(cx, caller)),
        (Get, ["ui", "login"]) => Route::new(Public, |_, _| ui::login_form()),
        (Post, ["ui", "login"]) => Route::new(Public, |_, body| ui::login(cx.app, body)),
        (Post, ["ui", "logout"]) => Route::new(Read, |caller, _| ui::logout(cx.app, caller)),
        (Get, ["v1", "whoami"]) => Route::new(Read, |caller, _| whoami(caller)),
        (Get, ["v1", "status"]) => Route::new(Read, |_, _| {
            Reply::body(&status::status(paths, cx.app.endpoint()))
        }),
        (Get, ["metrics"]) => Route::new(Read, |_, _| {
            match metrics::render(&status::status(paths, cx.app.endpoint())) {
                Ok(text) => Reply::text(metrics::CONTENT_TYPE, text),
                Err(e) => Reply::failed(ErrorKind::Internal, format!("encoding metrics: {e}")),
            }
        }),
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
        (Get, ["v1", "update"]) => Route::new(Read, |_, _| update::view(paths)),
        (Post, ["v1", "update"]) => Route::upload(Admin, Upload::Update),
        (Post, ["v1", "update", "poll"]) => {
            Route::new(Admin, |_, body| update::request_poll(paths, body))
        }
        (Get, ["v1", "nodes"]) => Route::new(Read, |_, _| nodes::list(run, state)),
        (Put, ["v1", "nodes", mac, "profile"]) => Route::new(Admin, move |_, body| {
            nodes::assign(run, state, mac, body, assignments)
        }),
        (Post, ["v1", "nodes", mac, "reprovision"]) => Route::new(Admin, move |_, body| {
            nodes::reprovision(run, state, mac, body)
        }),
        (Post, ["v1", "nodes", mac, "tags"]) => Route::new(Admin, move |caller, body| {
            nodes::tag(run, state, mac, body, operator_name(caller))
        }),
        (Get, ["v1", "nodes", mac]) => Route::new(Read, move |_, _| nodes::show(run, state, mac)),
        (Post, ["v1", "nodes", mac, "forget"]) => Route::new(Admin, move |caller, body| {
            nodes::forget(run, state, mac, body, assignments, operator_name(caller))
        }),
        (Get, ["v1", "logs"]) => Route::new(Read, |_, _| Reply::result(logs::list(paths))),
        (Get, ["v1", "logs", service]) => {
            let query = req.query;
            Route::new(Read, move |_, _| logs::read(paths, service, query))
        }
        // Listing is metadata (ids, sizes, the service's state): read.
        // Making and downloading one is admin: even encrypted, a backup is
        // the whole cluster (docs/security.md).
        (Get, ["v1", "backups"]) => Route::new(Read, |_, _| backups::list(paths)),
        (Post, ["v1", "backups"]) => Route::new(Admin, |caller, _| {
            backups::create(paths, operator_name(caller))
        }),
        // Restoring replaces the whole cluster at the next boot: admin.
        (Post, ["v1", "backups", "restore"]) => Route::new(Admin, |caller, body| {
            backups::restore(paths, body, operator_name(caller))
        }),
        (Get, ["v1", "backups", id]) => Route::new(Admin, move |caller, _| {
            backups::download(paths, id, operator_name(caller))
        }),
        // Listing is metadata; pushing and deleting change what the LAN
        // is served: admin.
        (Get, ["v1", "artifacts"]) => Route::new(Read, |_, _| artifacts::list(paths)),
        (Post, ["v1", "artifacts"]) => Route::upload(
            Admin,
            Upload::Artifact {
                query: req.query.to_string(),
            },
        ),
        (Delete, ["v1", "artifacts", "sha256", hex]) => {
            Route::new(Admin, move |_, _| artifacts::delete(paths, hex))
        }
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
            Route::new(Read, move |_, _| {
                Reply::failed(ErrorKind::NotFound, message)
            })
        }
        _ => Route::new(Read, |_, _| {
            Reply::failed(ErrorKind::NotFound, "the API lives under /v1/")
        }),
    }
}

/// The caller's operator name for logs ("-" when anonymous).
fn operator_name(caller: &Caller) -> &str {
    match caller {
        Caller::Operator { name, .. } => name.as_str(),
        Caller::Anonymous => "-",
    }
}

/// `GET /v1/whoami`: the operator the token belongs to.
fn whoami(caller: &Caller) -> Reply {
    match caller {
        Caller::Operator { name, role, .. } => Reply::body(&WhoAmI {
            name: name.clone(),
            role: *role,
        }),
        Caller::Anonymous => Reply::failed(ErrorKind::Unauthenticated, "no operator"),
    }
}

/// The lab overlay's site, for the API modules' tests.
#[cfg(test)]
fn lab_site() -> kindling_site::SiteConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../overlays/lab/site.toml");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    toml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access_of(method: Method, path: &str) -> Access {
        let paths = ApiPaths {
            run_dir: "/nonexistent/run".into(),
            state_dir: "/nonexistent/state".into(),
        };
        let app = App::new(
            paths,
            None,
            kindling_pki::Fingerprint::of_der(b"not a certificate"),
            transport::ConnectionGate::new(transport::Limits::default()),
        );
        let cx = app_context(&app);
        let req = Request {
            method,
            segments: app::segments(path),
            query: "",
            authorization: Vec::new(),
        };
        let access = route(&cx, &req).access;
        access
    }

    fn app_context(app: &App) -> Context<'_> {
        Context {
            paths: &app.paths,
            assignments: None,
            app,
        }
    }

    /// Only `GET /healthz` and the login form are public; unknown paths need the read role like
    /// every read; everything that changes the appliance or hands out
    /// secret material is Admin.
    #[test]
    fn every_route_declares_its_access() {
        use Access::{Admin, Public, Read};
        use Method::{Delete, Get, Other, Post, Put};
        for (method, path, access) in [
            (Get, "/healthz", Public),
            (Post, "/healthz", Read),
            (Get, "/v1/nope", Read),
            (Other, "/v1/status", Read),
            (Get, "/", Read),
            (Get, "/ui/fragment", Read),
            (Post, "/ui/login", Public),
            (Post, "/ui/logout", Read),
            (Get, "/ui/login", Public),
            (Put, "/ui/login", Read),
            (Get, "/v1/whoami", Read),
            (Get, "/v1/status", Read),
            (Get, "/metrics", Read),
            (Get, "/v1/services", Read),
            (Get, "/v1/config/report", Read),
            (Get, "/v1/config/effective", Read),
            (Get, "/v1/overlays", Read),
            (Get, "/v1/nodes", Read),
            (Get, "/v1/stack", Read),
            (Get, "/v1/logs", Read),
            (Get, "/v1/logs/stack", Read),
            (Post, "/v1/services/pxe/restart", Admin),
            (Post, "/v1/overlays", Admin),
            (Get, "/v1/update", Read),
            (Post, "/v1/update", Admin),
            (Post, "/v1/update/poll", Admin),
            (Put, "/v1/nodes/52:54:00:6b:00:99/profile", Admin),
            (Post, "/v1/nodes/52:54:00:6b:00:99/reprovision", Admin),
            (Post, "/v1/nodes/52:54:00:6b:00:99/tags", Admin),
            (Get, "/v1/nodes/52:54:00:6b:00:99/tags", Read),
            (Get, "/v1/nodes/52:54:00:6b:00:99", Read),
            (Post, "/v1/nodes/52:54:00:6b:00:99/forget", Admin),
            (Get, "/v1/nodes/52:54:00:6b:00:99/forget", Read),
            (Post, "/v1/vault/unseal", Admin),
            (Get, "/v1/vault/init-secrets", Admin),
            (Get, "/v1/backups", Read),
            (Post, "/v1/backups", Admin),
            (Post, "/v1/backups/restore", Admin),
            (Get, "/v1/backups/20260101T000000Z-0a1b", Admin),
            (Get, "/v1/artifacts", Read),
            (Post, "/v1/artifacts", Admin),
            (Delete, "/v1/artifacts/sha256/00", Admin),
            (Delete, "/v1/artifacts", Read),
        ] {
            assert_eq!(access_of(method, path), access, "{method} {path}");
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
