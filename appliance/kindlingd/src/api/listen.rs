//! Where the API listens: the LAN address, and the uplink's only when the
//! site lists "api" in `network.uplink.expose` (a static uplink address, or
//! the address of the uplink's DHCP lease as the net service reports it in
//! `status/net.json`, followed when it changes). Never a wildcard address
//! unless an operator passes one with `--listen`.
//!
//! Sockets are bound with `IP_FREEBIND`, so the API can listen on the LAN
//! address before the net service has configured it; packets reach it as
//! soon as the address exists. Owns the set of listeners; what a connection
//! carries is `transport`'s.

use super::transport::{self, Body, ConnectionGate};
use hyper::body::Incoming;
use kindling_site::{SiteConfig, UplinkMode};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

/// How often the wanted addresses are compared with the bound ones.
const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// The addresses the API should listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `--listen`: exactly these (tests, or an operator's choice).
    Fixed(Vec<SocketAddr>),
    /// From the site: the LAN address, and the uplink's when exposed.
    Site {
        port: u16,
        lan: IpAddr,
        uplink: Option<Uplink>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    Static(IpAddr),
    /// The DHCP lease's address, read from the net service's status file.
    Lease {
        net_status: PathBuf,
    },
}

impl Plan {
    pub fn for_site(site: &SiteConfig, run_dir: &std::path::Path) -> Self {
        let up = &site.network.uplink;
        let uplink = if up.expose.iter().any(|s| s == "api") {
            match up.mode {
                UplinkMode::Static => up.address.map(|a| Uplink::Static(a.addr().into())),
                UplinkMode::Dhcp => Some(Uplink::Lease {
                    net_status: run_dir.join("status/net.json"),
                }),
                UplinkMode::None => None,
            }
        } else {
            None
        };
        Self::Site {
            port: site.api.port,
            lan: site.network.lan.address.addr().into(),
            uplink,
        }
    }

    /// The addresses wanted now. The LAN's (or every fixed one) always; a
    /// lease address once the net service reports one.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        match self {
            Plan::Fixed(addrs) => addrs.clone(),
            Plan::Site { port, lan, uplink } => {
                let mut out = vec![SocketAddr::new(*lan, *port)];
                let up = match uplink {
                    Some(Uplink::Static(ip)) => Some(*ip),
                    Some(Uplink::Lease { net_status }) => lease_address(net_status),
                    None => None,
                };
                if let Some(ip) = up.filter(|ip| ip != lan) {
                    out.push(SocketAddr::new(ip, *port));
                }
                out
            }
        }
    }

    /// Addresses that must be bound for the API to count as started.
    pub fn required(&self) -> Vec<SocketAddr> {
        match self {
            Plan::Fixed(addrs) => addrs.clone(),
            Plan::Site { port, lan, .. } => vec![SocketAddr::new(*lan, *port)],
        }
    }
}

/// `lease.address` of the net service's status file, if it has one.
fn lease_address(net_status: &std::path::Path) -> Option<IpAddr> {
    let bytes = std::fs::read(net_status).ok()?;
    let status: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    status.pointer("/lease/address")?.as_str()?.parse().ok()
}

/// A listening socket on `addr` (backlog 1024, `SO_REUSEADDR` so a
/// restarted API gets its port back, `IP_FREEBIND` for an address not
/// configured yet).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    // IPv6 addresses are only ever given with --listen: bound as they are.
    if addr.is_ipv4() {
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::IpFreebind, &true)
            .map_err(io::Error::from)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The listeners running now, by address.
pub struct Listeners<S> {
    plan: Plan,
    tls: Arc<rustls::ServerConfig>,
    gate: Arc<ConnectionGate>,
    service: S,
    running: BTreeMap<SocketAddr, JoinHandle<()>>,
    /// The last bind failure reported per address (reported again only when it changes).
    failures: BTreeMap<SocketAddr, String>,
    /// What the status page shows.
    pub bound: Arc<Mutex<Vec<SocketAddr>>>,
}

impl<S, F> Listeners<S>
where
    S: Fn(hyper::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = hyper::Response<Body>> + Send + 'static,
{
    pub fn new(
        plan: Plan,
        tls: Arc<rustls::ServerConfig>,
        gate: Arc<ConnectionGate>,
        service: S,
    ) -> Self {
        Self {
            plan,
            tls,
            gate,
            service,
            running: BTreeMap::new(),
            failures: BTreeMap::new(),
            bound: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Binds what is wanted and not bound, closes what is bound and no
    /// longer wanted. Must run inside the runtime.
    pub fn reconcile(&mut self) {
        let wanted = self.plan.addresses();
        self.running.retain(|addr, task| {
            let keep = wanted.contains(addr) && !task.is_finished();
            if !keep {
                task.abort();
                tracing::info!("no longer listening on https://{addr}");
            }
            keep
        });
        for addr in wanted {
            if self.running.contains_key(&addr) {
                continue;
            }
            match bind(addr) {
                Ok(listener) => {
                    self.failures.remove(&addr);
                    tracing::info!("listening on https://{addr} (TLS only)");
                    let (tls, gate, service) =
                        (self.tls.clone(), self.gate.clone(), self.service.clone());
                    let task = tokio::spawn(async move {
                        let e = transport::serve(listener, tls, gate, service).await;
                        tracing::error!("listener https://{addr} failed: {e}");
                    });
                    self.running.insert(addr, task);
                }
                Err(e) => {
                    let text = e.to_string();
                    if self.failures.get(&addr) != Some(&text) {
                        tracing::warn!("cannot listen on {addr}: {text}; retrying");
                        self.failures.insert(addr, text);
                    }
                }
            }
        }
        if let Ok(mut bound) = self.bound.lock() {
            *bound = self.running.keys().copied().collect();
        }
    }

    /// The required addresses that are not bound.
    pub fn missing(&self) -> Vec<(SocketAddr, String)> {
        self.plan
            .required()
            .into_iter()
            .filter(|a| !self.running.contains_key(a))
            .map(|a| {
                let why = self.failures.get(&a).cloned().unwrap_or_default();
                (a, why)
            })
            .collect()
    }

    /// Reconciles for ever.
    pub async fn keep_reconciling(mut self) {
        loop {
            tokio::time::sleep(RECONCILE_EVERY).await;
            self.reconcile();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_lan_always_and_the_uplink_only_when_exposed() {
        let run = tempfile::tempdir().unwrap();
        let mut site = super::super::lab_site();
        site.network.uplink.expose.clear();
        let plan = Plan::for_site(&site, run.path());
        assert_eq!(plan.addresses(), ["192.168.100.1:9000".parse().unwrap()]);

        // Exposed on a DHCP uplink: once net reports the lease.
        site.network.uplink.expose = vec!["api".into()];
        let plan = Plan::for_site(&site, run.path());
        assert_eq!(plan.addresses().len(), 1, "no lease yet");
        std::fs::create_dir_all(run.path().join("status")).unwrap();
        std::fs::write(
            run.path().join("status/net.json"),
            r#"{"state":"ready","lease":{"address":"10.0.2.15","prefix_len":24}}"#,
        )
        .unwrap();
        assert_eq!(
            plan.addresses(),
            [
                "192.168.100.1:9000".parse().unwrap(),
                "10.0.2.15:9000".parse().unwrap()
            ]
        );
        assert_eq!(plan.required(), ["192.168.100.1:9000".parse().unwrap()]);

        // Exposed on a static uplink; never a wildcard.
        site.network.uplink.mode = UplinkMode::Static;
        site.network.uplink.address = Some("10.9.0.2/24".parse().unwrap());
        site.api.port = 9443;
        let addrs = Plan::for_site(&site, run.path()).addresses();
        assert_eq!(
            addrs,
            [
                "192.168.100.1:9443".parse().unwrap(),
                "10.9.0.2:9443".parse().unwrap()
            ]
        );
        assert!(addrs.iter().all(|a| !a.ip().is_unspecified()));
    }

    #[test]
    fn binds_an_address_this_host_does_not_have_yet() {
        // TEST-NET-3: on no interface of this machine; freebind allows it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = bind("203.0.113.77:0".parse().unwrap()).unwrap();
            assert_eq!(
                listener.local_addr().unwrap().ip(),
                "203.0.113.77".parse::<IpAddr>().unwrap()
            );
        });
    }
}
