//! One client connection of the PXE HTTP service: reads request heads
//! (pipelined ones included), hands each request to `PxeHttp`, writes the
//! reply (small bodies with their head in one write, files by sendfile) and
//! keeps the connection while both sides want it.
//!
//! Every wait has a limit, so a slow, silent or malicious client costs only
//! its own thread: an idle kept connection, a head that trickles in, a body
//! that never comes and a client that stops reading are each cut off. A
//! request it cannot parse gets one error reply naming why, then the
//! connection is closed (its framing can no longer be trusted).

use super::file_body::send_file;
use super::handler::{Body, HttpReply, PxeHttp, MAX_EVENT_BODY};
use super::pump::BodyPump;
use super::request::{self, HeadError, Parsed, RequestHead, MAX_HEAD};
use super::response::{Connection, ResponseHead, CONTINUE};
use super::router::Method;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a kept connection may sit between requests.
    pub idle: Duration,
    /// From a request's first byte to its complete head, and for each read
    /// of its body.
    pub request: Duration,
    /// How long one send may block on a client that stopped reading.
    pub send: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30),
            request: Duration::from_secs(10),
            send: Duration::from_secs(60),
        }
    }
}

/// How long, and how many bytes, a refused client is read after its error
/// reply (see `linger`).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// Text bodies up to this size go out in the same write as their head.
const JOIN_WITH_HEAD: usize = 64 * 1024;

enum NextHead {
    Head(RequestHead),
    /// The client closed, went idle too long, or the socket failed.
    Gone,
    /// Answer this status, then close.
    Refused(u16, &'static str, String),
}

struct ClientConnection<'a> {
    stream: TcpStream,
    /// Sends file bodies; without one they are sent on this thread.
    pump: Option<&'a BodyPump>,
    /// Bytes read but not yet consumed: the rest of a head, a body, or the
    /// next pipelined request.
    pending: Vec<u8>,
    /// The client's address: node documents go only to a lease's holder.
    peer: IpAddr,
}

/// Serves `stream` until either side ends the connection.
pub fn serve(stream: TcpStream, handler: &PxeHttp, pump: &BodyPump, limits: &Limits) {
    // Replies are whole messages: no reason to hold their last segment back.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(limits.send));
    let Ok(peer) = stream.peer_addr().map(|a| a.ip()) else {
        // Already gone.
        return;
    };
    let mut conn = ClientConnection {
        stream,
        pump: Some(pump),
        pending: Vec::with_capacity(1024),
        peer,
    };
    loop {
        match conn.next_head(limits) {
            NextHead::Head(head) => {
                if !conn.answer(head, handler, limits) {
                    return;
                }
            }
            NextHead::Gone => return,
            NextHead::Refused(status, counter, why) => {
                let reply = handler.refuse(counter, status, &why);
                if conn.write_reply(reply, false, Connection::Close) {
                    conn.linger();
                }
                return;
            }
        }
    }
}

/// Answers a connection that will not be served (too many open) and closes it.
pub fn turn_away(stream: TcpStream, reply: HttpReply) {
    // Only a short wait: this runs on the accepting thread.
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let mut conn = ClientConnection {
        stream,
        pump: None,
        pending: Vec::new(),
        peer: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    };
    conn.write_reply(reply, false, Connection::Close);
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

impl ClientConnection<'_> {
    fn next_head(&mut self, limits: &Limits) -> NextHead {
        let mut deadline: Option<Instant> = None;
        let mut chunk = [0u8; 4096];
        loop {
            if !self.pending.is_empty() {
                match request::parse(&self.pending) {
                    Ok(Parsed::Complete(head, used)) => {
                        self.pending.drain(..used);
                        return NextHead::Head(head);
                    }
                    Ok(Parsed::Partial) => {}
                    Err(e) => return NextHead::Refused(e.status(), counter(&e), e.to_string()),
                }
            }
            let wait = match deadline {
                None if self.pending.is_empty() => limits.idle,
                None => {
                    deadline = Some(Instant::now() + limits.request);
                    limits.request
                }
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => {
                        return NextHead::Refused(
                            408,
                            "http_refused_slow_head",
                            format!("request head not complete within {:?}", limits.request),
                        )
                    }
                },
            };
            if self.stream.set_read_timeout(Some(wait)).is_err() {
                return NextHead::Gone;
            }
            // Never read far past a head's limit: the parser refuses at MAX_HEAD.
            let room = (MAX_HEAD + 1).saturating_sub(self.pending.len()).max(1);
            let want = room.min(chunk.len());
            match self.stream.read(&mut chunk[..want]) {
                Ok(0) => return NextHead::Gone,
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Mid-head: the deadline check above decides. Idle: done.
                Err(e) if is_timeout(&e) && !self.pending.is_empty() => {}
                Err(_) => return NextHead::Gone,
            }
        }
    }

    /// Answers one request; false when the connection must close.
    fn answer(&mut self, head: RequestHead, handler: &PxeHttp, limits: &Limits) -> bool {
        // The only bodies served are phone-home events; a larger one is
        // refused unread, so the connection cannot be kept.
        if head.content_length > MAX_EVENT_BODY as u64 {
            let why = format!("request body larger than {MAX_EVENT_BODY} bytes");
            let reply = handler.refuse("http_refused_large_body", 413, &why);
            if self.write_reply(reply, false, Connection::Close) {
                self.linger();
            }
            return false;
        }
        if head.expect_continue
            && head.content_length > 0
            && self.stream.write_all(CONTINUE).is_err()
        {
            return false;
        }
        let peer = self.peer;
        let mut body = RequestBody {
            conn: self,
            left: head.content_length,
            timeout: limits.request,
        };
        let reply = handler.handle(
            head.method,
            &head.target,
            head.range.as_deref(),
            peer,
            &mut body,
        );
        // Whatever the handler left unread is skipped, so the next request
        // starts where it should.
        let synced = std::io::copy(&mut body, &mut std::io::sink()).is_ok() && body.left == 0;
        let connection = match (head.keep_alive && synced, head.http11) {
            (false, _) => Connection::Close,
            (true, true) => Connection::KeepAlive11,
            (true, false) => Connection::KeepAlive10,
        };
        let head_only = head.method == Method::Head;
        let body_len = if head_only { 0 } else { reply.len() };
        let written = self.write_reply(reply, head_only, connection);
        if written {
            handler.sent(body_len);
        }
        written && connection != Connection::Close
    }

    /// Closes after an error reply without losing it: closing a socket with
    /// unread bytes (the rest of a refused request) sends a reset, which can
    /// destroy the reply before the client reads it. So: send FIN, read and
    /// drop what the client still sends, briefly, then close.
    fn linger(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let _ = self.stream.set_read_timeout(Some(LINGER));
        let deadline = Instant::now() + LINGER;
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 && Instant::now() < deadline {
            match self.stream.read(&mut sink) {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    }

    /// Writes one reply; false if the client is gone or the body fell short.
    fn write_reply(&mut self, reply: HttpReply, head_only: bool, connection: Connection) -> bool {
        let head = ResponseHead {
            status: reply.status,
            content_type: reply.content_type,
            content_length: reply.len(),
            extra: &reply.headers,
            connection,
        }
        .to_bytes(SystemTime::now());
        let status = reply.status;
        let result = match reply.body {
            _ if head_only => self.stream.write_all(&head),
            Body::Text(text) if text.len() <= JOIN_WITH_HEAD => {
                let mut message = head;
                message.extend_from_slice(text.as_bytes());
                self.stream.write_all(&message)
            }
            Body::Text(text) => self.head_then(&head, |s| s.write_all(text.as_bytes())),
            Body::Bytes(bytes) => self.head_then(&head, |s| s.write_all(&bytes)),
            Body::File { file, start, len } => {
                let pump = self.pump;
                self.head_then(&head, |s| match pump {
                    Some(pump) => pump.send(s, &file, start, len),
                    None => send_file(&*s, &file, start, len),
                })
            }
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, status, "http: reply not completed");
                false
            }
        }
    }

    /// Sends `head` marked "more follows" so it shares a segment with the
    /// body's first bytes, then the body.
    fn head_then(
        &mut self,
        head: &[u8],
        body: impl FnOnce(&mut TcpStream) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut sent = 0;
        while sent < head.len() {
            let flags = rustix::net::SendFlags::MORE | rustix::net::SendFlags::NOSIGNAL;
            match rustix::net::send(&self.stream, &head[sent..], flags) {
                Ok(n) => sent += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        body(&mut self.stream)
    }
}

fn counter(e: &HeadError) -> &'static str {
    match e {
        HeadError::TooLarge => "http_refused_large_head",
        HeadError::Malformed(_) | HeadError::ContentLength | HeadError::Version => {
            "http_refused_malformed"
        }
        HeadError::TransferEncoding => "http_refused_transfer_encoding",
    }
}

/// A request's body: what `pending` already holds, then the socket, never
/// more than Content-Length.
struct RequestBody<'a, 'p> {
    conn: &'a mut ClientConnection<'p>,
    left: u64,
    timeout: Duration,
}

impl Read for RequestBody<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = usize::try_from(self.left).map_or(buf.len(), |l| l.min(buf.len()));
        if want == 0 {
            return Ok(0);
        }
        let n = if self.conn.pending.is_empty() {
            self.conn.stream.set_read_timeout(Some(self.timeout))?;
            self.conn.stream.read(&mut buf[..want])?
        } else {
            let n = want.min(self.conn.pending.len());
            buf[..n].copy_from_slice(&self.conn.pending[..n]);
            self.conn.pending.drain(..n);
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}
