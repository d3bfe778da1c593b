//! One request, from hyper's parsed head to the reply: route it, pass the
//! one gate ([`authorize`]) with the head alone, then read the body (bounded
//! in size and in time between its parts), run the handler on the blocking
//! pool and encode the [`Reply`]. The state every request shares is [`App`].
//!
//! Never reads a body before the caller is authorized: an anonymous client
//! cannot make the appliance read an upload (nor get `100 Continue`).
//! A request without an `Authorization` header may instead prove itself
//! with the status page's session cookie (`session_gate`).

use super::access::{authorize, Access, Caller};
use super::operators::Operators;
use super::session::{self, Sessions};
use super::transport::{Body, Counters};
use super::{route, ApiPaths, Context, Method, Reply, Request, Upload};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use kindling_api::status::ApiEndpoint;
use kindling_api::ErrorKind;
use kindling_inventory::AssignmentSync;
use kindling_pki::Fingerprint;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest request body accepted (an overlay push is the largest legitimate one).
pub const MAX_BODY: u64 = 64 * 1024 * 1024;
/// Longest wait for the next part of a request body.
const BODY_STALL: Duration = Duration::from_secs(15);

/// What every request shares.
pub struct App {
    pub paths: ApiPaths,
    pub assignments: Option<Arc<AssignmentSync>>,
    pub operators: Operators,
    pub ca_fingerprint: Fingerprint,
    /// The addresses listened on now (the listeners keep it current).
    pub listening: Arc<Mutex<Vec<SocketAddr>>>,
    pub transport: Arc<super::transport::ConnectionGate>,
    /// The status page's browser sessions.
    pub sessions: Sessions,
    unauthenticated: AtomicU64,
    forbidden: AtomicU64,
}

impl App {
    pub fn new(
        paths: ApiPaths,
        assignments: Option<Arc<AssignmentSync>>,
        ca_fingerprint: Fingerprint,
        transport: Arc<super::transport::ConnectionGate>,
    ) -> Self {
        let site_json = kindling_site::effective::in_run_dir(&paths.run_dir);
        Self {
            paths,
            assignments,
            operators: Operators::new(site_json),
            ca_fingerprint,
            listening: Arc::new(Mutex::new(Vec::new())),
            transport,
            sessions: Sessions::default(),
            unauthenticated: AtomicU64::new(0),
            forbidden: AtomicU64::new(0),
        }
    }

    /// The API's part of `GET /v1/status`.
    pub fn endpoint(&self) -> ApiEndpoint {
        let listening = self
            .listening
            .lock()
            .map(|l| l.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let Counters {
            connections_open,
            connections_refused_busy,
            handshakes_failed,
        } = &self.transport.counters;
        let counters = [
            ("connections_open", connections_open),
            ("connections_refused_busy", connections_refused_busy),
            ("tls_handshakes_failed", handshakes_failed),
            ("requests_unauthenticated", &self.unauthenticated),
            ("requests_forbidden", &self.forbidden),
        ]
        .into_iter()
        .map(|(name, n)| (name.to_string(), n.load(Ordering::Relaxed)))
        .collect::<BTreeMap<_, _>>();
        ApiEndpoint {
            ca_fingerprint: self.ca_fingerprint.to_string(),
            listening,
            counters,
        }
    }

    fn context(&self) -> Context<'_> {
        Context {
            paths: &self.paths,
            assignments: self.assignments.as_deref(),
            app: self,
        }
    }
}

/// The path's segments, as the route table matches them.
pub fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// Answers one request.
pub async fn answer(app: Arc<App>, request: hyper::Request<Incoming>) -> hyper::Response<Body> {
    let (head, body) = request.into_parts();
    let method = Method::from(&head.method);
    let path = head.uri.path().to_string();
    let query = head.uri.query().unwrap_or_default().to_string();
    let authorization: Vec<&[u8]> = head
        .headers
        .get_all(hyper::header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let target = Request {
        method,
        segments: segments(&path),
        query: &query,
        authorization,
    };
    let (access, upload) = {
        let cx = app.context();
        let r = route(&cx, &target);
        (r.access, r.upload)
    };
    let operators = app.operators.current();
    let cookie = session::cookie_value(
        head.headers
            .get_all(hyper::header::COOKIE)
            .iter()
            .map(HeaderValue::as_bytes),
    );
    let by_session = match (target.authorization.is_empty(), access, cookie) {
        (true, Access::Read | Access::Admin, Some(id)) => {
            let csrf = head
                .headers
                .get(session::CSRF_HEADER)
                .map(HeaderValue::as_bytes);
            Some(super::session_gate::authorize_session(
                &app.sessions,
                id,
                method,
                access,
                csrf,
                &operators,
            ))
        }
        _ => None,
    };
    let gate = by_session.unwrap_or_else(|| {
        authorize(&target, access, &operators).map_err(|refusal| {
            let challenge = refusal.challenge();
            (Reply::failure(&refusal), challenge)
        })
    });
    let caller = match gate {
        Ok(caller) => caller,
        Err((reply, challenge)) => {
            let counter = match reply.status {
                403 => &app.forbidden,
                _ => &app.unauthenticated,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            // A browser that opens the page without a session goes to the login form.
            let browser = head
                .headers
                .get(hyper::header::ACCEPT)
                .and_then(|a| a.to_str().ok())
                .is_some_and(|a| a.contains("text/html"));
            let reply = super::session_gate::refused(method, &target.segments, browser, reply);
            return encode(reply, challenge);
        }
    };
    drop(target);
    if let Some(upload) = upload {
        let reply = match upload {
            Upload::Update => super::update::push(&app.paths, body).await,
            Upload::Artifact { query } => {
                super::artifacts::push(&app.paths, body, &query, super::operator_name(&caller))
                    .await
            }
        };
        if let Caller::Operator { name, .. } = &caller {
            tracing::info!("{name}: {} {path} -> {}", head.method, reply.status);
        }
        return encode(reply, None);
    }
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(reply) => return encode(reply, None),
    };
    let worker = app.clone();
    let who = caller.clone();
    let label = format!("{} {path}", head.method);
    let outcome = tokio::task::spawn_blocking(move || {
        let target = Request {
            method,
            segments: segments(&path),
            query: &query,
            authorization: Vec::new(),
        };
        let cx = worker.context();
        let route = route(&cx, &target);
        (route.handler)(&who, &body)
    })
    .await;
    let reply = outcome
        .unwrap_or_else(|e| Reply::failed(ErrorKind::Internal, format!("the handler failed: {e}")));
    if let (Caller::Operator { name, .. }, Access::Admin) = (&caller, access) {
        tracing::info!("{name}: {label} -> {}", reply.status);
    }
    encode(reply, None)
}

/// The whole body, at most [`MAX_BODY`] bytes, each part within
/// [`BODY_STALL`] of the one before.
async fn read_body(mut body: Incoming) -> Result<Vec<u8>, Reply> {
    let too_large = || {
        Reply::failed(
            ErrorKind::TooLarge,
            format!("request body over {MAX_BODY} bytes"),
        )
    };
    if body.size_hint().lower() > MAX_BODY {
        return Err(too_large());
    }
    let mut out = Vec::new();
    loop {
        let frame = match tokio::time::timeout(BODY_STALL, body.frame()).await {
            Err(_) => {
                return Err(Reply::failed(
                    ErrorKind::BadRequest,
                    format!("the request body stalled for {BODY_STALL:?}"),
                ))
            }
            Ok(None) => return Ok(out),
            Ok(Some(Err(e))) => {
                return Err(Reply::failed(
                    ErrorKind::BadRequest,
                    format!("reading the request body: {e}"),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if out.len() as u64 + data.len() as u64 > MAX_BODY {
                return Err(too_large());
            }
            out.extend_from_slice(&data);
        }
    }
}

/// The HTTP response for `reply`: JSON (or its text body), never cached
/// (some answers carry secret material), with the challenge of a 401.
fn encode(reply: Reply, challenge: Option<&'static str>) -> hyper::Response<Body> {
    if let Some(stream) = reply.stream {
        let mut response = hyper::Response::new(Body::Stream(stream.chunks));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(stream.content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // A download's length (`GET /v1/backups/ID`), for the client's progress.
        for (name, value) in reply.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.append(name, value);
            }
        }
        return response;
    }
    let (bytes, content_type) = match reply.text {
        Some(text) => (text.text.into_bytes(), text.content_type),
        None => {
            let mut json =
                serde_json::to_vec_pretty(&reply.body).unwrap_or_else(|_| b"{}".to_vec());
            json.push(b'\n');
            (json, "application/json")
        }
    };
    let mut response = hyper::Response::new(Body::new(Bytes::from(bytes)));
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(challenge) = challenge {
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(name, value);
        }
    }
    response
}
