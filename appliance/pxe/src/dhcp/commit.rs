//! ACKs leave only after the lease they grant is on disk (group commit).
//!
//! A lease the server forgot after a crash could be handed to a second
//! client while the first still uses it, so an ACK must not leave before
//! its lease is durable (ISC dhcpd commits before it ACKs, too). Doing that
//! per ACK on the receive thread would cost an fsync per packet and let a
//! burst of REQUESTs build a backlog that every other packet waits behind.
//! So the receive loop binds the lease in memory and hands the encoded ACK
//! to a bounded queue; one committer thread takes everything queued, writes
//! the lease file once (atomic rename, fsync) and then sends the whole
//! batch. Under load one fsync covers many ACKs; the receive loop never
//! touches the disk; OFFERs and NAKs never wait.
//!
//! If the queue is full the ACK is dropped and counted; the client repeats
//! its REQUEST and gets it once the queue drains. If the write fails (a
//! broken data partition) the batch is still sent, counted and logged:
//! refusing every lease would stop the LAN, and the failure shows in status.
//!
//! Owns the lease file's writes (`LeaseWriter`, also used by the service's
//! periodic flush for releases) and the ACK queue; no protocol decisions.

use super::responder::DhcpResponder;
use crate::leases::LeaseError;
use crate::status::Stats;
use std::net::{SocketAddrV4, UdpSocket};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

/// ACKs that may wait for the disk at once.
pub const ACK_QUEUE: usize = 1024;

/// An encoded ACK and where it goes.
pub struct PendingAck {
    pub bytes: Vec<u8>,
    pub target: SocketAddrV4,
}

/// The one writer of the lease file: a snapshot under the responder's lock,
/// serialised and fsynced outside it.
pub struct LeaseWriter {
    responder: Arc<Mutex<DhcpResponder>>,
    writing: Mutex<()>,
}

impl LeaseWriter {
    pub fn new(responder: Arc<Mutex<DhcpResponder>>) -> Self {
        Self {
            responder,
            writing: Mutex::new(()),
        }
    }

    /// Writes the lease file if any lease changed; `Ok(true)` when written.
    pub fn flush(&self, now: u64) -> Result<bool, LeaseError> {
        // One write at a time: both writers would use the same temporary file.
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = self
            .responder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .leases_mut()
            .snapshot_if_dirty(now);
        let Some(snapshot) = snapshot else {
            return Ok(false);
        };
        snapshot.write().map(|()| true).inspect_err(|_| {
            self.responder
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .leases_mut()
                .mark_dirty();
        })
    }
}

/// The receive loop's end of the queue.
#[derive(Clone)]
pub struct AckQueue {
    tx: SyncSender<PendingAck>,
}

impl AckQueue {
    pub fn new() -> (Self, Receiver<PendingAck>) {
        let (tx, rx) = mpsc::sync_channel(ACK_QUEUE);
        (Self { tx }, rx)
    }

    /// Queues an ACK; false (and the ACK dropped) when the queue is full or
    /// the committer has stopped.
    pub fn submit(&self, ack: PendingAck) -> bool {
        match self.tx.try_send(ack) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Commits and sends queued ACKs until every `AckQueue` is dropped.
pub fn run_committer(
    rx: &Receiver<PendingAck>,
    socket: &UdpSocket,
    writer: &LeaseWriter,
    stats: &Stats,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter().take(ACK_QUEUE));
        match writer.flush(kindling_clock::unix_now()) {
            Ok(true) => stats.bump("dhcp_lease_commits"),
            Ok(false) => {}
            Err(e) => {
                stats.bump("dhcp_lease_write_errors");
                tracing::warn!(error = %e, "dhcp: lease file not written; ACKs sent anyway");
            }
        }
        for ack in batch {
            if let Err(e) = socket.send_to(&ack.bytes, ack.target) {
                stats.bump("dhcp_send_errors");
                tracing::warn!(target = %ack.target, error = %e, "dhcp: send failed");
            }
        }
    }
}
