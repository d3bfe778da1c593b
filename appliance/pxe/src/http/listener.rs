//! The tiny_http side of the PXE HTTP service: bind, a pool of worker
//! threads, and turning `HttpReply` into a response with an explicit
//! Content-Length (firmware HTTP clients do not speak chunked encoding).
//!
//! Owns the HTTP library glue only; all decisions are in `handler`.

use super::handler::{Body, HttpReply, PxeHttp};
use super::router::Method;
use std::io::{Cursor, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Debug, thiserror::Error)]
#[error("bind HTTP {addr}: {reason}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub reason: String,
}

pub fn bind(addr: SocketAddr) -> Result<Arc<tiny_http::Server>, ListenError> {
    tiny_http::Server::http(addr)
        .map(Arc::new)
        .map_err(|e| ListenError {
            addr,
            reason: e.to_string(),
        })
}

fn method(m: &tiny_http::Method) -> Method {
    match m {
        tiny_http::Method::Get => Method::Get,
        tiny_http::Method::Head => Method::Head,
        tiny_http::Method::Post => Method::Post,
        _ => Method::Other,
    }
}

fn header(name: &str, value: &str) -> Option<tiny_http::Header> {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn respond(request: tiny_http::Request, reply: HttpReply, head_only: bool) -> std::io::Result<()> {
    let len = reply.len();
    let mut headers: Vec<tiny_http::Header> = reply
        .headers
        .iter()
        .filter_map(|(k, v)| header(k, v))
        .collect();
    headers.extend(header("Content-Type", reply.content_type));
    let status = tiny_http::StatusCode(reply.status);
    let size = usize::try_from(len).ok();
    match reply.body {
        Body::Text(t) => send(request, status, headers, Cursor::new(t.into_bytes()), size),
        Body::Bytes(b) => send(request, status, headers, Cursor::new(ArcBytes(b)), size),
        Body::File { file, len } => stream_file(
            request,
            reply.status,
            &reply.headers,
            reply.content_type,
            file,
            len,
            head_only,
        ),
    }
}

/// Writes a file response on the raw connection. tiny_http's own path
/// copies bodies through a boxed reader in 8 KiB pieces (one syscall each);
/// here `file_body` writes large pieces, which tiny_http's socket writer
/// passes straight through. The head is what tiny_http would send:
/// explicit Content-Length, keep-alive left to the client.
fn stream_file(
    request: tiny_http::Request,
    status: u16,
    extra: &[(&'static str, String)],
    content_type: &str,
    file: std::fs::File,
    len: u64,
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        _ => "",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: kindling\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n"
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = request.into_writer();
    out.write_all(head.as_bytes())?;
    if !head_only {
        super::file_body::write_body(&mut out, file, len)?;
    }
    out.flush()
}

fn send<R: Read>(
    request: tiny_http::Request,
    status: tiny_http::StatusCode,
    headers: Vec<tiny_http::Header>,
    body: R,
    size: Option<usize>,
) -> std::io::Result<()> {
    let response = tiny_http::Response::new(status, headers, body, size, None)
        .with_chunked_threshold(usize::MAX);
    request.respond(response)
}

/// `Arc<Vec<u8>>` as a byte slice, so a cached body is shared, not copied.
struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Starts `workers` threads answering requests for the life of the process.
pub fn serve(
    server: Arc<tiny_http::Server>,
    handler: Arc<PxeHttp>,
    workers: usize,
) -> Vec<JoinHandle<()>> {
    (0..workers.max(1))
        .filter_map(|i| {
            let server = server.clone();
            let handler = handler.clone();
            std::thread::Builder::new()
                .name(format!("pxe-http-{i}"))
                // Workers only stream files and render small texts.
                .stack_size(1024 * 1024)
                .spawn(move || loop {
                    let mut request = match server.recv() {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(error = %e, "http: accept failed");
                            std::thread::sleep(std::time::Duration::from_millis(10));
                            continue;
                        }
                    };
                    let m = method(request.method());
                    let head_only = m == Method::Head;
                    let target = request.url().to_string();
                    let range = request
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Range"))
                        .map(|h| h.value.as_str().to_string());
                    let reply = handler.handle(m, &target, range.as_deref(), request.as_reader());
                    let status = reply.status;
                    if let Err(e) = respond(request, reply, head_only) {
                        tracing::debug!(error = %e, %target, status, "http: client went away");
                    }
                })
                .map_err(|e| tracing::error!(error = %e, "http: could not start worker"))
                .ok()
        })
        .collect()
}
