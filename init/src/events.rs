//! Events that helper threads hand to init's single run loop, and the wake-up
//! pipe that makes the loop's `poll` return for them.
//!
//! Owns only the hand-over; the loop decides what an event means.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use kindling_init_protocol::control::Request;

/// Something a helper thread learned.
#[derive(Debug)]
pub enum Event {
    /// A TCP/HTTP readiness probe succeeded for this generation of the service.
    ProbeReady { service: String, generation: u64 },
    /// A control-socket request; the JSON answer line goes back on `reply`.
    Control {
        request: Request,
        reply: Sender<String>,
    },
}

/// Sends events and wakes the loop.
#[derive(Clone)]
pub struct EventSender {
    tx: Sender<Event>,
    wake: Arc<OwnedFd>,
}

impl EventSender {
    /// Queues `event`; false if the loop is gone.
    pub fn send(&self, event: Event) -> bool {
        if self.tx.send(event).is_err() {
            return false;
        }
        // A full pipe already means "wake up"; nothing else can go wrong that matters.
        let _ = nix::unistd::write(self.wake.as_fd(), &[1u8]);
        true
    }
}

/// The loop's side.
pub struct EventQueue {
    rx: Receiver<Event>,
    wake_read: OwnedFd,
}

impl EventQueue {
    /// The fd to poll for readability.
    pub fn wake_fd(&self) -> RawFd {
        self.wake_read.as_raw_fd()
    }

    /// Empties the wake pipe and returns every queued event.
    pub fn drain(&self) -> Vec<Event> {
        let mut buf = [0u8; 256];
        while let Ok(n) = nix::unistd::read(&self.wake_read, &mut buf) {
            if n == 0 {
                break;
            }
        }
        self.rx.try_iter().collect()
    }
}

/// A connected sender/queue pair.
pub fn channel() -> Result<(EventSender, EventQueue), nix::Error> {
    use nix::fcntl::OFlag;
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    let (tx, rx) = std::sync::mpsc::channel();
    Ok((
        EventSender {
            tx,
            wake: Arc::new(write),
        },
        EventQueue {
            rx,
            wake_read: read,
        },
    ))
}
