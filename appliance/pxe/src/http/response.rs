//! The head of one HTTP/1.1 response: status line, `Date`, `Content-Type`,
//! an explicit `Content-Length` (firmware HTTP clients do not speak chunked
//! encoding), the handler's extra headers and the connection decision.
//!
//! Pure: it formats bytes and never writes them.

use std::fmt::Write as _;
use std::time::SystemTime;

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// What the connection does after this response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1's default: nothing to say.
    KeepAlive11,
    /// An HTTP/1.0 client asked to keep the connection: say yes.
    KeepAlive10,
    Close,
}

pub struct ResponseHead<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub content_length: u64,
    pub extra: &'a [(&'static str, String)],
    pub connection: Connection,
}

impl ResponseHead<'_> {
    pub fn to_bytes(&self, now: SystemTime) -> Vec<u8> {
        let mut head = String::with_capacity(256);
        // Writing to a String cannot fail.
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nServer: kindling\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            httpdate::fmt_http_date(now),
            self.content_type,
            self.content_length,
        );
        for (name, value) in self.extra {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        match self.connection {
            Connection::KeepAlive11 => {}
            Connection::KeepAlive10 => head.push_str("Connection: keep-alive\r\n"),
            Connection::Close => head.push_str("Connection: close\r\n"),
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn head_carries_length_type_extras_and_connection() {
        let extra = [("Content-Range", "bytes 0-9/100".to_string())];
        let head = ResponseHead {
            status: 206,
            content_type: "application/octet-stream",
            content_length: 10,
            extra: &extra,
            connection: Connection::Close,
        };
        let text = String::from_utf8(head.to_bytes(UNIX_EPOCH + Duration::from_secs(784111777)))
            .unwrap_or_default();
        assert_eq!(
            text,
            "HTTP/1.1 206 Partial Content\r\nServer: kindling\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: 10\r\n\
             Content-Range: bytes 0-9/100\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn keep_alive_is_said_only_to_http10() {
        let head = |connection| {
            String::from_utf8(
                ResponseHead {
                    status: 200,
                    content_type: "text/plain",
                    content_length: 0,
                    extra: &[],
                    connection,
                }
                .to_bytes(UNIX_EPOCH),
            )
            .unwrap_or_default()
        };
        assert!(!head(Connection::KeepAlive11).contains("Connection:"));
        assert!(head(Connection::KeepAlive10).contains("Connection: keep-alive\r\n"));
    }
}
