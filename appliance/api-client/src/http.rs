//! One HTTP/1.1 exchange on an established (TLS) stream: write the request,
//! read the reply's head (httparse) and its body by Content-Length, or to
//! the end of the connection. `Connection: close` every time: a CLI makes a
//! handful of calls, and one request per connection keeps this small.

use std::io::{Read, Write};

/// Largest reply head and body accepted.
const MAX_HEAD: usize = 64 * 1024;
pub const MAX_BODY: usize = 64 * 1024 * 1024;
const MAX_HEADERS: usize = 64;

pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    pub authorization: Option<&'a str>,
    pub body: Option<&'a [u8]>,
}

/// A reply: its status and its body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// `WWW-Authenticate`, when the appliance sent one (on a 401).
    pub www_authenticate: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the reply is not HTTP/1.x: {0}")]
    Malformed(String),
    #[error("the reply is larger than {0} bytes")]
    TooLarge(usize),
}

pub fn write_request<W: Write>(out: &mut W, req: &Request<'_>) -> std::io::Result<()> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: kindling/{}\r\nAccept: application/json\r\nConnection: close\r\n",
        req.method,
        req.path,
        req.host,
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(credential) = req.authorization {
        head.push_str(&format!("Authorization: Bearer {credential}\r\n"));
    }
    let body = req.body.unwrap_or_default();
    if req.body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if req.body.is_some() || !matches!(req.method, "GET" | "HEAD") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

/// A reply's head and the bytes read past it.
pub struct Head {
    pub status: u16,
    pub length: Option<usize>,
    pub chunked: bool,
    pub www_authenticate: Option<String>,
    /// Body bytes that came with the head.
    pub rest: Vec<u8>,
}

pub fn read_head<R: Read>(input: &mut R) -> Result<Head, ExchangeError> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let n = input.read(&mut chunk)?;
        if n == 0 {
            return Err(ExchangeError::Malformed(
                "the connection closed before a complete reply head".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(used)) => {
                let status = resp.code.unwrap_or(0);
                let mut length = None;
                let mut chunked = false;
                let mut www = None;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let text = String::from_utf8_lossy(h.value);
                        length = Some(text.trim().parse::<usize>().map_err(|_| {
                            ExchangeError::Malformed(format!("Content-Length {text:?}"))
                        })?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = String::from_utf8_lossy(h.value)
                            .to_ascii_lowercase()
                            .contains("chunked");
                    } else if h.name.eq_ignore_ascii_case("www-authenticate") {
                        www = Some(String::from_utf8_lossy(h.value).into_owned());
                    }
                }
                return Ok(Head {
                    status,
                    length,
                    chunked,
                    www_authenticate: www,
                    rest: buf.split_off(used),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(ExchangeError::TooLarge(MAX_HEAD))
            }
            Ok(httparse::Status::Partial) => continue,
            Err(e) => return Err(ExchangeError::Malformed(e.to_string())),
        }
    }
}

/// Hands a streamed body to `each` as it arrives (chunked or to the end of
/// the connection), until it ends or `each` returns false.
pub fn stream_body<R: Read>(
    input: &mut R,
    head: Head,
    each: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<(), ExchangeError> {
    let mut buf = head.rest;
    let mut chunk = [0u8; 8192];
    if !head.chunked {
        if !buf.is_empty() && !each(&buf) {
            return Ok(());
        }
        loop {
            let n = input.read(&mut chunk)?;
            if n == 0 || !each(&chunk[..n]) {
                return Ok(());
            }
        }
    }
    loop {
        // `<hex size>[;ext]\r\n<data>\r\n`, ending with a size of 0.
        if let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..eol]).into_owned();
            let hex = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| ExchangeError::Malformed(format!("chunk size {line:?}")))?;
            if size == 0 {
                return Ok(());
            }
            if size > MAX_BODY {
                return Err(ExchangeError::TooLarge(MAX_BODY));
            }
            if buf.len() >= eol + 2 + size + 2 {
                if !each(&buf[eol + 2..eol + 2 + size]) {
                    return Ok(());
                }
                buf.drain(..eol + 2 + size + 2);
                continue;
            }
        }
        let n = input.read(&mut chunk)?;
        if n == 0 {
            return Err(ExchangeError::Malformed(
                "the connection closed inside a chunked body".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub fn read_response<R: Read>(input: &mut R) -> Result<Response, ExchangeError> {
    let mut chunk = [0u8; 8192];
    let head = read_head(input)?;
    if head.chunked {
        return Err(ExchangeError::Malformed(
            "chunked replies are not expected from the appliance".into(),
        ));
    }
    let Head {
        status,
        length,
        www_authenticate,
        rest: mut body,
        ..
    } = head;
    match length {
        Some(n) if n > MAX_BODY => return Err(ExchangeError::TooLarge(MAX_BODY)),
        Some(n) => {
            while body.len() < n {
                let got = input.read(&mut chunk)?;
                if got == 0 {
                    return Err(ExchangeError::Malformed(format!(
                        "the body ended after {} of {n} bytes",
                        body.len()
                    )));
                }
                body.extend_from_slice(&chunk[..got]);
            }
            body.truncate(n);
        }
        None => {
            input
                .take((MAX_BODY + 1).saturating_sub(body.len()) as u64)
                .read_to_end(&mut body)?;
            if body.len() > MAX_BODY {
                return Err(ExchangeError::TooLarge(MAX_BODY));
            }
        }
    }
    Ok(Response {
        status,
        body,
        www_authenticate,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_carries_the_token_and_the_body_length() {
        let mut out = Vec::new();
        write_request(
            &mut out,
            &Request {
                method: "PUT",
                path: "/v1/nodes/52:54:00:6b:00:99/profile",
                host: "192.168.100.1:9000",
                authorization: Some("kt1_abc"),
                body: Some(br#"{"profile":"prod"}"#),
            },
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("PUT /v1/nodes/52:54:00:6b:00:99/profile HTTP/1.1\r\n"));
        assert!(text.contains("\r\nAuthorization: Bearer kt1_abc\r\n"));
        assert!(text.contains("\r\nContent-Length: 18\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"profile\":\"prod\"}"));
    }

    #[test]
    fn a_chunked_stream_is_handed_over_chunk_by_chunk() {
        let mut r: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\none\ntw\r\n3;x=1\r\no\nt\r\n0\r\n\r\n";
        let head = read_head(&mut r).unwrap();
        assert!(head.chunked && head.status == 200);
        let mut got = Vec::new();
        stream_body(&mut r, head, &mut |c| {
            got.push(c.to_vec());
            true
        })
        .unwrap();
        assert_eq!(got, [b"one\ntw".to_vec(), b"o\nt".to_vec()]);
        let mut r: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        let head = read_head(&mut r).unwrap();
        assert!(stream_body(&mut r, head, &mut |_| true).is_err());
    }

    #[test]
    fn replies_by_length_or_to_the_end() {
        let mut r: &[u8] = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"kindling\"\r\ncontent-length: 2\r\n\r\n{}extra";
        let resp = read_response(&mut r).unwrap();
        assert_eq!(resp.status, 401);
        assert_eq!(resp.body, b"{}");
        assert_eq!(
            resp.www_authenticate.as_deref(),
            Some("Bearer realm=\"kindling\"")
        );
        let mut r: &[u8] = b"HTTP/1.1 200 OK\r\n\r\nall of it";
        assert_eq!(read_response(&mut r).unwrap().body, b"all of it");
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 200",
        ] {
            let mut r = bad;
            assert!(
                read_response(&mut r).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
