//! `BodyPump`: a few threads that send every connection's file bodies, each
//! over an epoll set of non-blocking client sockets, with sendfile(2) as
//! each socket becomes writable.
//!
//! Why not let each connection thread block in sendfile: measured against
//! nginx (appliance/pxe/bench.sh, 64 MiB to 50 clients on 2 cores), 50
//! threads each woken whenever its socket drains reached ~0.88x nginx,
//! while the same server with its threads held on one CPU reached ~0.99x:
//! the cost was threads waking and wandering between CPUs, not CPU time. A
//! pump thread per CPU serves whichever sockets are ready, as nginx's
//! workers do, and a connection thread sleeps once per body instead of
//! once per socket-buffer refill.
//!
//! Owns the sockets' non-blocking mode for the length of a body only: it
//! sends exactly the bytes asked for, then gives the socket back blocking.
//! A client that takes nothing for `stall` ends its body with TimedOut; a
//! file that shrinks ends it with UnexpectedEof. Never touches a socket
//! after reporting its body done.

use super::file_body;
use rustix::event::epoll;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Error, ErrorKind};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One body to send: a dup of the client socket and of the file.
struct Body {
    socket: TcpStream,
    file: File,
    offset: u64,
    left: u64,
    last_progress: Instant,
    done: mpsc::SyncSender<std::io::Result<()>>,
}

/// A pump thread's inbox: new bodies, and an eventfd to wake its epoll wait.
struct Inbox {
    bodies: mpsc::Sender<Body>,
    wake: OwnedFd,
}

pub struct BodyPump {
    inboxes: Vec<Inbox>,
    next: AtomicUsize,
}

/// The eventfd's key in each epoll set (bodies are keyed from 1).
const WAKE_KEY: u64 = 0;

impl BodyPump {
    /// Starts `threads` pump threads. With none started (spawn refused),
    /// `send` falls back to blocking sendfile on the caller's thread.
    pub fn start(threads: usize, stall: Duration) -> Self {
        let inboxes = (0..threads.max(1))
            .filter_map(|i| match Self::start_one(i, stall) {
                Ok(inbox) => Some(inbox),
                Err(e) => {
                    tracing::warn!(error = %e, "http: body pump thread not started");
                    None
                }
            })
            .collect();
        Self {
            inboxes,
            next: AtomicUsize::new(0),
        }
    }

    fn start_one(index: usize, stall: Duration) -> std::io::Result<Inbox> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        epoll::add(
            &epoll,
            &wake,
            epoll::EventData::new_u64(WAKE_KEY),
            epoll::EventFlags::IN,
        )?;
        let thread_wake = wake.try_clone()?;
        let (bodies, inbox) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("pxe-http-pump-{index}"))
            .stack_size(256 * 1024)
            .spawn(move || PumpThread::new(epoll, thread_wake, inbox, stall).run())?;
        Ok(Inbox { bodies, wake })
    }

    /// Sends `len` bytes of `file` from `start` to `socket`; returns when
    /// they are all sent or the body failed.
    pub fn send(
        &self,
        socket: &TcpStream,
        file: &File,
        start: u64,
        len: u64,
    ) -> std::io::Result<()> {
        if self.inboxes.is_empty() || len == 0 {
            return file_body::send_file(socket, file, start, len);
        }
        let (done, result) = mpsc::sync_channel(1);
        let body = Body {
            socket: socket.try_clone()?,
            file: file.try_clone()?,
            offset: start,
            left: len,
            last_progress: Instant::now(),
            done,
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.inboxes.len();
        let inbox = &self.inboxes[i];
        if inbox.bodies.send(body).is_err() {
            // That pump thread is gone (it never panics by design, but a
            // body must still go out).
            return file_body::send_file(socket, file, start, len);
        }
        // Were the wake lost, the pump would still find the body on its
        // next round (at most a second away).
        let _ = rustix::io::write(&inbox.wake, &1u64.to_ne_bytes());
        result
            .recv()
            .unwrap_or_else(|_| Err(Error::other("body pump stopped")))
    }
}

struct PumpThread {
    epoll: OwnedFd,
    wake: OwnedFd,
    inbox: mpsc::Receiver<Body>,
    stall: Duration,
    bodies: HashMap<u64, Body>,
    next_key: u64,
}

enum Step {
    Done(std::io::Result<()>),
    /// The socket is full: wait for it to be writable again.
    Wait,
}

impl PumpThread {
    fn new(epoll: OwnedFd, wake: OwnedFd, inbox: mpsc::Receiver<Body>, stall: Duration) -> Self {
        Self {
            epoll,
            wake,
            inbox,
            stall,
            bodies: HashMap::new(),
            next_key: WAKE_KEY + 1,
        }
    }

    fn run(mut self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(64);
        loop {
            events.clear();
            // Wake at least once a second to notice stalled clients.
            let timeout = rustix::time::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            };
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                Some(&timeout),
            ) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    // Cannot wait any more: fail what is in flight and stop;
                    // later bodies fall back to their own threads.
                    tracing::error!(error = %e, "http: body pump stopped");
                    for (_, body) in self.bodies.drain() {
                        let _ = body.done.send(Err(Error::other("body pump stopped")));
                    }
                    return;
                }
            }
            for event in &events {
                let key = event.data.u64();
                if key != WAKE_KEY {
                    self.pump(key);
                }
            }
            // Every round, not only on a wake: a new body is never left waiting.
            self.take_new();
            self.expire_stalled();
        }
    }

    fn take_new(&mut self) {
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(&self.wake, &mut counter);
        while let Ok(body) = self.inbox.try_recv() {
            let key = self.next_key;
            self.next_key += 1;
            if let Err(e) = body.socket.set_nonblocking(true) {
                let _ = body.done.send(Err(e));
                continue;
            }
            // Edge-triggered: one event each time the socket drains enough;
            // the first send below goes before any event.
            if let Err(e) = epoll::add(
                &self.epoll,
                &body.socket,
                epoll::EventData::new_u64(key),
                epoll::EventFlags::OUT | epoll::EventFlags::ET,
            ) {
                finish(body, Err(e.into()));
                continue;
            }
            self.bodies.insert(key, body);
            self.pump(key);
        }
    }

    fn pump(&mut self, key: u64) {
        let Some(body) = self.bodies.get_mut(&key) else {
            return;
        };
        if let Step::Done(result) = send_some(body) {
            if let Some(body) = self.bodies.remove(&key) {
                let _ = epoll::delete(&self.epoll, &body.socket);
                finish(body, result);
            }
        }
    }

    fn expire_stalled(&mut self) {
        let now = Instant::now();
        let stalled: Vec<u64> = self
            .bodies
            .iter()
            .filter(|(_, b)| now.duration_since(b.last_progress) > self.stall)
            .map(|(k, _)| *k)
            .collect();
        for key in stalled {
            if let Some(body) = self.bodies.remove(&key) {
                let _ = epoll::delete(&self.epoll, &body.socket);
                finish(
                    body,
                    Err(Error::new(ErrorKind::TimedOut, "client stopped reading")),
                );
            }
        }
    }
}

/// Sends until the body is done or the socket is full.
fn send_some(body: &mut Body) -> Step {
    loop {
        if body.left == 0 {
            return Step::Done(Ok(()));
        }
        let count = usize::try_from(body.left).map_or(file_body::CALL, |l| l.min(file_body::CALL));
        match rustix::fs::sendfile(&body.socket, &body.file, Some(&mut body.offset), count) {
            Ok(0) => return Step::Done(Err(file_body::shrunk())),
            Ok(n) => {
                body.left -= n as u64;
                body.last_progress = Instant::now();
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => return Step::Wait,
            Err(e) => return Step::Done(Err(e.into())),
        }
    }
}

/// Gives the socket back blocking, then reports the result.
fn finish(body: Body, result: std::io::Result<()>) {
    let restored = body.socket.set_nonblocking(false);
    let result = result.and(restored);
    drop(body.socket);
    let _ = body.done.send(result);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    fn file_of(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(bytes).unwrap();
        let file = File::open(tmp.path()).unwrap();
        (tmp, file)
    }

    #[test]
    fn a_slow_reader_gets_exactly_the_range_and_the_socket_comes_back_blocking() {
        // Far more than socket buffers hold, so the pump waits for writable
        // sockets many times.
        let data: Vec<u8> = (0..24 * 1024 * 1024)
            .map(|i: usize| (i % 251) as u8)
            .collect();
        let (_tmp, file) = file_of(&data);
        let pump = BodyPump::start(2, Duration::from_secs(10));
        let (server, mut client) = pair();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match client.read(&mut buf) {
                    Ok(0) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("{e}"),
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let (start, len) = (1000u64, data.len() as u64 - 2000);
        pump.send(&server, &file, start, len).unwrap();
        // Blocking again: a read with no data waits (here: times out).
        server
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let err = (&server).read(&mut [0u8; 1]).unwrap_err();
        assert!(matches!(
            err.kind(),
            ErrorKind::WouldBlock | ErrorKind::TimedOut
        ));
        drop(server);
        let got = reader.join().unwrap();
        assert!(got == data[1000..data.len() - 1000], "body differs");
    }

    #[test]
    fn a_file_shorter_than_promised_ends_the_body_with_eof() {
        let (_tmp, file) = file_of(&[7u8; 5000]);
        let pump = BodyPump::start(1, Duration::from_secs(10));
        let (server, _client) = pair();
        let err = pump.send(&server, &file, 0, 9000).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_client_that_stops_reading_times_out_and_others_keep_going() {
        // A sparse 256 MiB file: more than any socket buffer absorbs.
        let tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.as_file().set_len(256 * 1024 * 1024).unwrap();
        let file = File::open(tmp.path()).unwrap();
        let pump = std::sync::Arc::new(BodyPump::start(1, Duration::from_millis(300)));
        let (stalled, _silent_client) = pair();
        let (healthy, mut reader) = pair();
        let drain = std::thread::spawn(move || {
            let mut total = 0u64;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n as u64,
                }
            }
        });
        let other = {
            let (pump, file) = (pump.clone(), file.try_clone().unwrap());
            std::thread::spawn(move || {
                let r = pump.send(&healthy, &file, 0, 8 * 1024 * 1024);
                drop(healthy);
                r
            })
        };
        let started = Instant::now();
        let err = pump
            .send(&stalled, &file, 0, 256 * 1024 * 1024)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        other.join().unwrap().unwrap();
        assert_eq!(drain.join().unwrap(), 8 * 1024 * 1024);
    }
}
