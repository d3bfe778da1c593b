//! The uplink's DHCPv4 client: DISCOVER/OFFER/REQUEST/ACK, renew at T1
//! (unicast), rebind at T2 (broadcast), lease loss at expiry or NAK.
//!
//! Owns the protocol timing. It never touches addresses or routes: it reports
//! `LeaseEvent`s and the service applies them. A malformed or foreign packet
//! is counted and dropped; nothing received can make it fail.

use super::packet::{self, ClientIdentity, LeaseOffer, Reply};
use super::socket::{PacketSocket, RenewSocket};
use dhcproto::v4::MessageType;
use serde::Serialize;
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// Why the client could not run at all (sockets); protocol trouble is never an error.
#[derive(Debug, thiserror::Error)]
pub enum DhcpClientError {
    #[error("open the DHCP packet socket on ifindex {ifindex}: {source}")]
    OpenPacketSocket { ifindex: u32, source: io::Error },
    #[error("open the DHCP renewal socket on {device}: {source}")]
    OpenRenewSocket { device: String, source: io::Error },
    #[error("receive on the DHCP packet socket: {0}")]
    Receive(io::Error),
}

/// What the service must do about the uplink's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// A new lease: configure address, routes and resolvers.
    Bound(LeaseOffer),
    /// The same or an updated lease after RENEW/REBIND.
    Renewed(LeaseOffer),
    /// The lease is gone (expired or NAKed): remove what `Bound` added.
    Lost { address: Ipv4Addr, reason: String },
    /// No server answered within the first attempts; the client keeps trying.
    NoAnswer { waited: Duration },
}

/// Counters the status file shows; shared with the service.
#[derive(Debug, Default)]
pub struct DhcpCounters {
    pub sent: AtomicU64,
    pub offers: AtomicU64,
    pub acks: AtomicU64,
    pub naks: AtomicU64,
    pub malformed: AtomicU64,
    pub ignored: AtomicU64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct DhcpCounterSnapshot {
    pub sent: u64,
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
    pub malformed_dropped: u64,
    pub ignored: u64,
}

impl DhcpCounters {
    pub fn snapshot(&self) -> DhcpCounterSnapshot {
        DhcpCounterSnapshot {
            sent: self.sent.load(Ordering::Relaxed),
            offers: self.offers.load(Ordering::Relaxed),
            acks: self.acks.load(Ordering::Relaxed),
            naks: self.naks.load(Ordering::Relaxed),
            malformed_dropped: self.malformed.load(Ordering::Relaxed),
            ignored: self.ignored.load(Ordering::Relaxed),
        }
    }
}

/// Protocol timing; the defaults follow RFC 2131's spirit, tests shorten them.
#[derive(Debug, Clone)]
pub struct DhcpTiming {
    pub first_retransmit: Duration,
    pub max_retransmit: Duration,
    /// After this long without any OFFER, report `NoAnswer` (once per acquisition).
    pub no_answer_after: Duration,
    pub request_wait: Duration,
}

impl Default for DhcpTiming {
    fn default() -> Self {
        Self {
            first_retransmit: Duration::from_secs(2),
            max_retransmit: Duration::from_secs(32),
            no_answer_after: Duration::from_secs(10),
            request_wait: Duration::from_secs(3),
        }
    }
}

pub struct DhcpClient {
    identity: ClientIdentity,
    packet: PacketSocket,
    renew: RenewSocket,
    events: mpsc::Sender<LeaseEvent>,
    counters: Arc<DhcpCounters>,
    timing: DhcpTiming,
    started: Instant,
}

enum KeepOutcome {
    Renewed(LeaseOffer, Instant),
    Lost(String),
}

impl DhcpClient {
    pub fn new(
        device: &str,
        ifindex: u32,
        identity: ClientIdentity,
        events: mpsc::Sender<LeaseEvent>,
        counters: Arc<DhcpCounters>,
        timing: DhcpTiming,
    ) -> Result<Self, DhcpClientError> {
        let packet = PacketSocket::open(ifindex)
            .map_err(|source| DhcpClientError::OpenPacketSocket { ifindex, source })?;
        let renew =
            RenewSocket::open(device).map_err(|source| DhcpClientError::OpenRenewSocket {
                device: device.into(),
                source,
            })?;
        Ok(Self {
            identity,
            packet,
            renew,
            events,
            counters,
            timing,
            started: Instant::now(),
        })
    }

    /// Runs until the receiver of events is gone or a socket fails.
    pub async fn run(mut self) -> Result<(), DhcpClientError> {
        loop {
            let Some((mut lease, mut bound_at)) = self.acquire().await? else {
                return Ok(());
            };
            if self
                .events
                .send(LeaseEvent::Bound(lease.clone()))
                .await
                .is_err()
            {
                return Ok(());
            }
            loop {
                match self.keep(&lease, bound_at).await? {
                    KeepOutcome::Renewed(next, at) => {
                        lease = next;
                        bound_at = at;
                        if self
                            .events
                            .send(LeaseEvent::Renewed(lease.clone()))
                            .await
                            .is_err()
                        {
                            return Ok(());
                        }
                    }
                    KeepOutcome::Lost(reason) => {
                        let lost = LeaseEvent::Lost {
                            address: lease.address,
                            reason,
                        };
                        if self.events.send(lost).await.is_err() {
                            return Ok(());
                        }
                        break;
                    }
                }
            }
        }
    }

    fn secs(&self) -> u16 {
        u16::try_from(self.started.elapsed().as_secs()).unwrap_or(u16::MAX)
    }

    async fn broadcast(&self, msg: &dhcproto::v4::Message, src: Ipv4Addr) {
        match packet::encode(msg) {
            Ok(payload) => {
                let frame = packet::frame_ipv4_udp(&payload, src, Ipv4Addr::BROADCAST);
                match self.packet.send(&frame, BROADCAST_MAC).await {
                    Ok(()) => {
                        self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => tracing::warn!("dhcp: send failed: {err}"),
                }
            }
            Err(err) => tracing::warn!("dhcp: encode failed: {err}"),
        }
    }

    /// SELECTING + REQUESTING until a lease is acknowledged; `None` when the
    /// service stopped listening.
    async fn acquire(&mut self) -> Result<Option<(LeaseOffer, Instant)>, DhcpClientError> {
        let acquisition_started = Instant::now();
        let mut reported_silence = false;
        let mut wait = self.timing.first_retransmit;
        loop {
            let xid = rand::random::<u32>();
            self.broadcast(
                &packet::discover(&self.identity, xid, self.secs()),
                Ipv4Addr::UNSPECIFIED,
            )
            .await;
            let offer = self
                .wait_reply(xid, &[MessageType::Offer], Instant::now() + wait)
                .await?;
            let Some(offer) = offer.and_then(|reply| self.usable(&reply)) else {
                if !reported_silence && acquisition_started.elapsed() >= self.timing.no_answer_after
                {
                    reported_silence = true;
                    let waited = acquisition_started.elapsed();
                    if self
                        .events
                        .send(LeaseEvent::NoAnswer { waited })
                        .await
                        .is_err()
                    {
                        return Ok(None);
                    }
                }
                wait = (wait * 2).min(self.timing.max_retransmit);
                continue;
            };
            self.counters.offers.fetch_add(1, Ordering::Relaxed);
            // Two REQUEST attempts, then back to DISCOVER.
            for _ in 0..2 {
                let request = packet::request_selected(&self.identity, xid, self.secs(), &offer);
                self.broadcast(&request, Ipv4Addr::UNSPECIFIED).await;
                let deadline = Instant::now() + self.timing.request_wait;
                match self
                    .wait_reply(xid, &[MessageType::Ack, MessageType::Nak], deadline)
                    .await?
                {
                    Some(reply) if reply.kind == MessageType::Ack => {
                        if let Some(lease) = self.usable(&reply) {
                            self.counters.acks.fetch_add(1, Ordering::Relaxed);
                            return Ok(Some((lease, Instant::now())));
                        }
                        break;
                    }
                    Some(_nak) => {
                        self.counters.naks.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    None => continue,
                }
            }
            wait = self.timing.first_retransmit;
        }
    }

    /// BOUND → RENEWING (unicast at T1) → REBINDING (broadcast at T2) → expiry.
    async fn keep(
        &mut self,
        lease: &LeaseOffer,
        bound_at: Instant,
    ) -> Result<KeepOutcome, DhcpClientError> {
        let t1 = bound_at + lease.renew_after;
        let t2 = bound_at + lease.rebind_after;
        let expiry = bound_at + lease.lease_time;
        tokio::time::sleep_until(t1).await;
        while Instant::now() < expiry {
            let now = Instant::now();
            let rebinding = now >= t2;
            let phase_end = if rebinding { expiry } else { t2 };
            // RFC 2131 §4.4.5: retransmit after half the remaining time, at least a bit.
            let deadline = (now + (phase_end - now) / 2)
                .max(now + Duration::from_secs(1))
                .min(expiry);
            let xid = rand::random::<u32>();
            let request = packet::request_extend(&self.identity, xid, self.secs(), lease.address);
            if rebinding {
                self.broadcast(&request, lease.address).await;
            } else {
                match packet::encode(&request) {
                    Ok(payload) => match self.renew.send_to_server(&payload, lease.server_id).await
                    {
                        Ok(()) => {
                            self.counters.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) => {
                            tracing::warn!("dhcp: renew to {} failed: {err}", lease.server_id)
                        }
                    },
                    Err(err) => tracing::warn!("dhcp: encode failed: {err}"),
                }
            }
            match self
                .wait_reply(xid, &[MessageType::Ack, MessageType::Nak], deadline)
                .await?
            {
                Some(reply) if reply.kind == MessageType::Ack => {
                    if let Some(next) = self.usable(&reply) {
                        self.counters.acks.fetch_add(1, Ordering::Relaxed);
                        return Ok(KeepOutcome::Renewed(next, Instant::now()));
                    }
                }
                Some(_nak) => {
                    self.counters.naks.fetch_add(1, Ordering::Relaxed);
                    return Ok(KeepOutcome::Lost(
                        "server answered NAK to the renewal".into(),
                    ));
                }
                None => {}
            }
        }
        Ok(KeepOutcome::Lost("lease expired without renewal".into()))
    }

    fn usable(&self, reply: &Reply) -> Option<LeaseOffer> {
        match packet::lease_from_reply(reply) {
            Ok(lease) => Some(lease),
            Err(err) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("dhcp: dropped unusable {:?}: {err}", reply.kind);
                None
            }
        }
    }

    /// Waits for a reply of one of `kinds` to `xid`; `None` at the deadline.
    async fn wait_reply(
        &self,
        xid: u32,
        kinds: &[MessageType],
        deadline: Instant,
    ) -> Result<Option<Reply>, DhcpClientError> {
        let mut buf = vec![0u8; 2048];
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.packet.recv(&mut buf)).await {
                Err(_elapsed) => return Ok(None),
                Ok(Err(err)) => return Err(DhcpClientError::Receive(err)),
                Ok(Ok(frame)) => frame,
            };
            let data = buf.get(..frame.len).unwrap_or_default();
            let reply = match packet::udp_payload_to_client(data).and_then(packet::parse_reply) {
                Ok(reply) => reply,
                Err(err) => {
                    self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        "dhcp: dropped malformed packet from {:02x?}: {err}",
                        frame.source_mac
                    );
                    continue;
                }
            };
            if reply.xid != xid || reply.chaddr != self.identity.mac || !kinds.contains(&reply.kind)
            {
                self.counters.ignored.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            return Ok(Some(reply));
        }
    }
}
