//! One HTTP/1.x request head, parsed from the bytes a connection has read so
//! far (httparse does the tokenising): method, target, whether the
//! connection stays open, the body length, and the headers the PXE service
//! acts on (`Range`, `Expect`).
//!
//! Pure and panic-free on any input (fuzzed by `fuzz/`). It never reads a
//! socket and never accepts a body whose length it cannot know up front:
//! firmware and node clients send Content-Length, and refusing
//! `Transfer-Encoding` closes the request-smuggling door.

use super::router::Method;

/// Largest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header fields accepted in one head.
pub const MAX_HEADERS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    pub target: String,
    /// HTTP/1.1 (else 1.0): decides the connection default.
    pub http11: bool,
    /// The client wants the connection kept open after this request.
    pub keep_alive: bool,
    /// Body bytes that follow the head (0 without Content-Length).
    pub content_length: u64,
    pub range: Option<String>,
    /// `Expect: 100-continue`: the client waits for an interim answer.
    pub expect_continue: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The head and how many bytes of the buffer it took.
    Complete(RequestHead, usize),
    /// More bytes are needed.
    Partial,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("request head larger than {MAX_HEAD} bytes or more than {MAX_HEADERS} header fields")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    #[error("only HTTP/1.0 and HTTP/1.1 are spoken here")]
    Version,
    #[error("request bodies must come with Content-Length, not Transfer-Encoding")]
    TransferEncoding,
    #[error("Content-Length is not one decimal number")]
    ContentLength,
}

impl HeadError {
    /// The status the client gets before the connection is closed.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Malformed(_) | HeadError::ContentLength => 400,
            HeadError::Version => 505,
            HeadError::TransferEncoding => 411,
        }
    }
}

fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        _ => Method::Other,
    }
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parses the head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => return Err(HeadError::Version),
        Err(httparse::Error::Token | httparse::Error::Status) => {
            return Err(HeadError::Malformed("bad request line"))
        }
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
            return Err(HeadError::Malformed("bad header field"))
        }
        Err(httparse::Error::NewLine) => return Err(HeadError::Malformed("bad line ending")),
    };
    if used > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let (Some(name), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    let http11 = version == 1;
    let mut close = false;
    let mut keep_alive_asked = false;
    let mut content_length: Option<u64> = None;
    let mut range = None;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let value = h.value;
        if h.name.eq_ignore_ascii_case("Connection") {
            close |= has_token(value, "close");
            keep_alive_asked |= has_token(value, "keep-alive");
        } else if h.name.eq_ignore_ascii_case("Content-Length") {
            let text = std::str::from_utf8(value).map_err(|_| HeadError::ContentLength)?;
            let text = text.trim();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HeadError::ContentLength);
            }
            let n: u64 = text.parse().map_err(|_| HeadError::ContentLength)?;
            // Two different lengths: which one the body has is a guess.
            if content_length.is_some_and(|c| c != n) {
                return Err(HeadError::ContentLength);
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("Transfer-Encoding") {
            return Err(HeadError::TransferEncoding);
        } else if h.name.eq_ignore_ascii_case("Range") {
            range = std::str::from_utf8(value).ok().map(str::to_string);
        } else if h.name.eq_ignore_ascii_case("Expect") {
            expect_continue = has_token(value, "100-continue");
        }
    }
    let keep_alive = !close && (http11 || keep_alive_asked);
    Ok(Parsed::Complete(
        RequestHead {
            method: method(name),
            target: target.to_string(),
            http11,
            keep_alive,
            content_length: content_length.unwrap_or(0),
            range,
            expect_continue,
        },
        used,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn head(text: &str) -> RequestHead {
        match parse(text.as_bytes()).unwrap() {
            Parsed::Complete(h, n) => {
                assert_eq!(n, text.len());
                h
            }
            Parsed::Partial => panic!("partial: {text:?}"),
        }
    }

    #[test]
    fn get_with_range_keeps_the_connection_open() {
        let h = head("GET /artifacts/initrd HTTP/1.1\r\nHost: x\r\nRange: bytes=5-\r\n\r\n");
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.target, "/artifacts/initrd");
        assert!(h.http11 && h.keep_alive);
        assert_eq!(h.range.as_deref(), Some("bytes=5-"));
        assert_eq!(h.content_length, 0);
    }

    #[test]
    fn connection_defaults_follow_the_version() {
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nConnection: TE, close\r\n\r\n").keep_alive);
    }

    #[test]
    fn post_body_length_and_expect() {
        let h = head(
            "POST /nodes/x/events HTTP/1.1\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n",
        );
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.content_length, 12);
        assert!(h.expect_continue);
        // A repeated, equal length is the same length.
        let h = head("POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n");
        assert_eq!(h.content_length, 3);
    }

    #[test]
    fn head_split_over_reads_is_partial_then_complete() {
        let text = b"GET /begin.sh HTTP/1.1\r\nHost: x\r\n\r\nGET /next";
        assert_eq!(parse(&text[..20]).unwrap(), Parsed::Partial);
        match parse(text).unwrap() {
            Parsed::Complete(h, n) => {
                assert_eq!(h.target, "/begin.sh");
                assert_eq!(&text[n..], b"GET /next", "pipelined bytes are left alone");
            }
            Parsed::Partial => panic!("complete head reported partial"),
        }
    }

    #[test]
    fn bad_heads_are_refused_with_the_right_status() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
            (b"POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET\x01 / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
        ];
        for (text, status) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(
                err.status(),
                *status,
                "{:?}: {err}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn oversized_heads_are_refused() {
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 1, b'a');
        assert_eq!(parse(&long).unwrap_err(), HeadError::TooLarge);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: y\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(parse(many.as_bytes()).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn unknown_methods_reach_the_router_as_other() {
        assert_eq!(head("DELETE / HTTP/1.1\r\n\r\n").method, Method::Other);
    }
}
