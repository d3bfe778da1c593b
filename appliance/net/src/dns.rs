//! The LAN's DNS forwarder: listens on the LAN address (UDP and TCP port 53),
//! sends `*.<consul domain>` to Consul's DNS (127.0.0.1:8600) and everything
//! else to the uplink's resolvers, and relays the answer unchanged.
//!
//! Owns query routing only. It never caches, never answers from its own data
//! (except SERVFAIL when no upstream answered, FORMERR for an unparsable query)
//! and never binds to the uplink.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::Name;
use serde::Serialize;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};

const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds memory and sockets under a query flood.
const MAX_IN_FLIGHT: usize = 512;

#[derive(Debug, thiserror::Error)]
#[error("bind the DNS forwarder on {addr}: {source}")]
pub struct DnsBindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

#[derive(Debug, Default)]
pub struct DnsCounters {
    pub queries: AtomicU64,
    pub to_consul: AtomicU64,
    pub to_upstream: AtomicU64,
    pub servfail: AtomicU64,
    pub malformed: AtomicU64,
    pub shed: AtomicU64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct DnsCounterSnapshot {
    pub queries: u64,
    pub to_consul: u64,
    pub to_upstream: u64,
    pub servfail: u64,
    pub malformed_dropped: u64,
    pub shed: u64,
}

impl DnsCounters {
    pub fn snapshot(&self) -> DnsCounterSnapshot {
        DnsCounterSnapshot {
            queries: self.queries.load(Ordering::Relaxed),
            to_consul: self.to_consul.load(Ordering::Relaxed),
            to_upstream: self.to_upstream.load(Ordering::Relaxed),
            servfail: self.servfail.load(Ordering::Relaxed),
            malformed_dropped: self.malformed.load(Ordering::Relaxed),
            shed: self.shed.load(Ordering::Relaxed),
        }
    }
}

/// Where queries go.
#[derive(Clone)]
pub struct DnsRoutes {
    pub consul_domain: Name,
    pub consul: SocketAddr,
    /// Resolvers for everything else; changes when the uplink lease changes.
    pub upstream: watch::Receiver<Vec<Ipv4Addr>>,
    /// Port of the upstream resolvers (53; tests use others).
    pub upstream_port: u16,
}

impl DnsRoutes {
    pub fn new(consul_domain: &str, upstream: watch::Receiver<Vec<Ipv4Addr>>) -> Self {
        let consul_domain =
            Name::from_ascii(format!("{consul_domain}.")).unwrap_or_else(|_| Name::root());
        Self {
            consul_domain,
            consul: SocketAddr::from(([127, 0, 0, 1], 8600)),
            upstream,
            upstream_port: 53,
        }
    }

    fn targets(&self, name: &Name) -> (Vec<SocketAddr>, bool) {
        if !self.consul_domain.is_root() && self.consul_domain.zone_of(&name.to_lowercase()) {
            return (vec![self.consul], true);
        }
        let upstream = self
            .upstream
            .borrow()
            .iter()
            .map(|ip| SocketAddr::from((*ip, self.upstream_port)))
            .collect();
        (upstream, false)
    }
}

pub struct DnsForwarder {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    routes: DnsRoutes,
    counters: Arc<DnsCounters>,
}

impl DnsForwarder {
    pub async fn bind(
        addr: SocketAddr,
        routes: DnsRoutes,
        counters: Arc<DnsCounters>,
    ) -> Result<Self, DnsBindError> {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsBindError { addr, source })?;
        // Same port for TCP, also when the caller asked for any port (tests).
        let bound = udp
            .local_addr()
            .map_err(|source| DnsBindError { addr, source })?;
        let tcp = TcpListener::bind(bound)
            .await
            .map_err(|source| DnsBindError {
                addr: bound,
                source,
            })?;
        Ok(Self {
            udp: Arc::new(udp),
            tcp,
            routes,
            counters,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Serves until the task is dropped. Per-query errors are counted, never fatal.
    pub async fn run(self) {
        let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                received = self.udp.recv_from(&mut buf) => {
                    let Ok((len, client)) = received else { continue };
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        self.counters.shed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let query = buf.get(..len).unwrap_or_default().to_vec();
                    let (udp, routes, counters) = (self.udp.clone(), self.routes.clone(), self.counters.clone());
                    tokio::spawn(async move {
                        if let Some(answer) = answer(&query, &routes, &counters, Transport::Udp).await {
                            let _ = udp.send_to(&answer, client).await;
                        }
                        drop(permit);
                    });
                }
                accepted = self.tcp.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        self.counters.shed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let (routes, counters) = (self.routes.clone(), self.counters.clone());
                    tokio::spawn(async move {
                        let _ = serve_tcp(stream, &routes, &counters).await;
                        drop(permit);
                    });
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

/// One query over TCP (RFC 1035 §4.2.2 length prefix), then close.
async fn serve_tcp(
    mut stream: TcpStream,
    routes: &DnsRoutes,
    counters: &DnsCounters,
) -> io::Result<()> {
    let query = tokio::time::timeout(UPSTREAM_TIMEOUT, read_framed(&mut stream))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    if let Some(answer) = answer(&query, routes, counters, Transport::Tcp).await {
        write_framed(&mut stream, &answer).await?;
    }
    Ok(())
}

async fn read_framed(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut msg = vec![0u8; usize::from(len)];
    stream.read_exact(&mut msg).await?;
    Ok(msg)
}

async fn write_framed(stream: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(msg).await
}

/// The bytes to send back for one query, or `None` to stay silent.
async fn answer(
    query: &[u8],
    routes: &DnsRoutes,
    counters: &DnsCounters,
    transport: Transport,
) -> Option<Vec<u8>> {
    counters.queries.fetch_add(1, Ordering::Relaxed);
    let parsed = match Message::from_vec(query) {
        Ok(msg) => msg,
        Err(_) => {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            // Too broken to answer if even the 12-byte header is missing.
            let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
            return Message::error_msg(id, hickory_proto::op::OpCode::Query, ResponseCode::FormErr)
                .to_vec()
                .ok();
        }
    };
    let Some(question) = parsed.queries.first() else {
        counters.malformed.fetch_add(1, Ordering::Relaxed);
        return refusal(&parsed, ResponseCode::FormErr);
    };
    let (targets, consul) = routes.targets(question.name());
    let counter = if consul {
        &counters.to_consul
    } else {
        &counters.to_upstream
    };
    counter.fetch_add(1, Ordering::Relaxed);
    for target in targets {
        let reply = match transport {
            Transport::Udp => ask_udp(query, target, parsed.metadata.id).await,
            Transport::Tcp => ask_tcp(query, target).await,
        };
        if let Ok(reply) = reply {
            return Some(reply);
        }
    }
    counters.servfail.fetch_add(1, Ordering::Relaxed);
    refusal(&parsed, ResponseCode::ServFail)
}

fn refusal(query: &Message, code: ResponseCode) -> Option<Vec<u8>> {
    let mut reply = Message::error_msg(query.metadata.id, query.metadata.op_code, code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.add_queries(query.queries.iter().cloned());
    reply.to_vec().ok()
}

/// Forwards over a fresh socket per query: the random source port plus the
/// id check keep answers from being mixed up or spoofed cheaply.
async fn ask_udp(query: &[u8], target: SocketAddr, id: u16) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => SocketAddr::from(([127, 0, 0, 1], 0)),
        _ => SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        loop {
            let len = socket.recv(&mut buf).await?;
            let reply = buf.get(..len).unwrap_or_default();
            if reply.len() >= 2 && u16::from_be_bytes([reply[0], reply[1]]) == id {
                return Ok(reply.to_vec());
            }
        }
    })
    .await
    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

async fn ask_tcp(query: &[u8], target: SocketAddr) -> io::Result<Vec<u8>> {
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let mut stream = TcpStream::connect(target).await?;
        write_framed(&mut stream, query).await?;
        read_framed(&mut stream).await
    })
    .await
    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::RecordType;

    /// A resolver stand-in on loopback: answers every query with its own
    /// marker byte appended, so the test can tell who answered.
    async fn fake_resolver(marker: u8) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let mut reply = buf[..len].to_vec();
                reply[2] |= 0x80;
                reply.push(marker);
                let _ = socket.send_to(&reply, from).await;
            }
        });
        addr
    }

    fn query(name: &str, id: u16) -> Vec<u8> {
        let mut msg = Message::query();
        msg.metadata.id = id;
        msg.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        msg.to_vec().unwrap()
    }

    async fn forwarder(
        consul: SocketAddr,
        upstream: Vec<SocketAddr>,
    ) -> (SocketAddr, Arc<DnsCounters>) {
        // All upstreams in a test share one port on loopback addresses.
        let port = upstream.first().map(|a| a.port()).unwrap_or(9);
        let ips = upstream
            .iter()
            .map(|a| match a.ip() {
                IpAddr::V4(ip) => ip,
                IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
            })
            .collect();
        // The sender lives as long as the test's runtime: leak it on purpose.
        let (tx, rx) = watch::channel(ips);
        std::mem::forget(tx);
        let mut routes = DnsRoutes::new("consul", rx);
        routes.consul = consul;
        routes.upstream_port = port;
        let counters = Arc::new(DnsCounters::default());
        let fwd = DnsForwarder::bind("127.0.0.1:0".parse().unwrap(), routes, counters.clone())
            .await
            .unwrap();
        let addr = fwd.local_addr().unwrap();
        tokio::spawn(fwd.run());
        (addr, counters)
    }

    async fn ask(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(bytes, server).await.unwrap();
        let mut buf = [0u8; 1500];
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        buf[..len].to_vec()
    }

    #[tokio::test]
    async fn consul_names_go_to_consul_and_the_rest_upstream() {
        let consul = fake_resolver(0xc0).await;
        let upstream = fake_resolver(0x0a).await;
        let (server, counters) = forwarder(consul, vec![upstream]).await;
        let reply = ask(server, &query("vault.service.consul.", 11)).await;
        assert_eq!(*reply.last().unwrap(), 0xc0);
        let reply = ask(server, &query("VAULT.Service.CONSUL.", 12)).await;
        assert_eq!(*reply.last().unwrap(), 0xc0, "matching is case-insensitive");
        let reply = ask(server, &query("deb.debian.org.", 13)).await;
        assert_eq!(*reply.last().unwrap(), 0x0a);
        assert_eq!(u16::from_be_bytes([reply[0], reply[1]]), 13);
        let reply = ask(server, &query("notconsul.", 14)).await;
        assert_eq!(
            *reply.last().unwrap(),
            0x0a,
            "only whole labels match the consul domain"
        );
        let snap = counters.snapshot();
        assert_eq!((snap.to_consul, snap.to_upstream), (2, 2));
    }

    #[tokio::test]
    async fn no_upstream_answers_servfail() {
        let consul = fake_resolver(0xc0).await;
        let (server, counters) = forwarder(consul, Vec::new()).await;
        let reply = Message::from_vec(&ask(server, &query("example.org.", 77)).await).unwrap();
        assert_eq!(reply.metadata.id, 77);
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(counters.snapshot().servfail, 1);
    }

    #[tokio::test]
    async fn malformed_queries_get_formerr_or_silence_and_are_counted() {
        let consul = fake_resolver(0xc0).await;
        let (server, counters) = forwarder(consul, Vec::new()).await;
        let mut broken = query("example.org.", 5);
        broken.truncate(15);
        let reply = Message::from_vec(&ask(server, &broken).await).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        // A 1-byte datagram cannot even carry an id: no answer, but counted.
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(&[1], server).await.unwrap();
        let mut buf = [0u8; 64];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), client.recv_from(&mut buf))
                .await
                .is_err()
        );
        assert_eq!(counters.snapshot().malformed_dropped, 2);
    }

    #[tokio::test]
    async fn tcp_queries_are_forwarded_over_tcp() {
        // TCP upstream stand-in: echoes the framed query with a marker.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut msg = read_framed(&mut stream).await.unwrap();
                msg.push(0x7c);
                write_framed(&mut stream, &msg).await.unwrap();
            }
        });
        let consul = fake_resolver(0xc0).await;
        let (server, _) = forwarder(consul, vec![upstream]).await;
        let mut stream = TcpStream::connect(server).await.unwrap();
        write_framed(&mut stream, &query("example.org.", 9))
            .await
            .unwrap();
        let reply = read_framed(&mut stream).await.unwrap();
        assert_eq!(*reply.last().unwrap(), 0x7c);
    }
}
