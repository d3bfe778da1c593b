//! The long-running network service (`kindlingd net`): brings up the LAN
//! first, signals readiness, then the uplink (static or DHCP), the forwarding
//! and NAT ruleset and the LAN DNS forwarder; afterwards it follows lease
//! events and carrier changes and keeps the status file current.
//!
//! Owns the order of bring-up, the event loop and the shutdown; the steps
//! themselves live in `lan` (LAN, firewall, DNS forwarder), `uplink`
//! (addressing, DHCP leases, carrier) and `report` (the status file), on the
//! state in `state`. Every failure after the netlink socket is open degrades
//! instead of stopping: the LAN must come up whatever happens to the uplink.
//! The one exception is a machine with no NIC at all: there is no LAN to
//! serve, so the service writes `failed` in its status file and returns the
//! error without signalling readiness (init restarts it, which also picks up
//! a NIC whose driver came late). It never panics.

mod lan;
mod options;
mod report;
mod stack_gate;
mod state;
mod uplink;

pub use options::NetOptions;

use crate::firewall;
use crate::link;
use crate::linkwatch::{self, CarrierChange};
use crate::plan::NetPlan;
use state::{Degraded, Service};
use std::future::Future;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum NetServiceError {
    #[error("open the rtnetlink socket: {0}")]
    OpenNetlink(std::io::Error),
    /// No interface at all ([`crate::nic::NO_NIC`]): nothing can be ready.
    #[error("{0}")]
    NoNic(&'static str),
}

/// What the readiness callback is told.
#[derive(Debug, Clone)]
pub struct LanReady {
    pub elapsed: Duration,
    pub degraded: Vec<String>,
}

/// Runs the network service until `shutdown` resolves. `on_lan_ready` is
/// called once, as soon as the LAN is configured (or degraded: a missing
/// match, a link that refused its address), before the uplink has a lease.
/// With no NIC at all it is never called: the service fails with
/// [`NetServiceError::NoNic`].
pub async fn run(
    plan: NetPlan,
    options: NetOptions,
    on_lan_ready: impl FnOnce(LanReady),
    shutdown: impl Future<Output = ()>,
) -> Result<(), NetServiceError> {
    let started = Instant::now();
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(NetServiceError::OpenNetlink)?;
    let netlink_task = tokio::spawn(connection);
    let (lease_tx, mut lease_rx) = mpsc::channel(8);
    let (dns_upstream, _) = watch::channel(plan.dns_upstream.clone());
    let mut service = Service {
        plan,
        options,
        handle,
        started,
        degraded: Degraded::default(),
        lan: None,
        uplink: None,
        lease: None,
        firewall_installed: false,
        stack_open: false,
        lan_ready: None,
        failed: false,
        dns_upstream,
        dhcp_counters: None,
        dns_counters: None,
        dhcp_task: None,
        lease_tx,
        tasks: Vec::new(),
    };
    for (i, problem) in service.plan.problems.clone().into_iter().enumerate() {
        service.degraded.set(&format!("plan {i}"), problem);
    }

    // Subscribe before touching links so no carrier change is missed.
    let mut carrier_rx = match linkwatch::watch_carrier() {
        Ok(rx) => Some(rx),
        Err(err) => {
            service.degraded.set(
                "link watch",
                format!("link watch: {err}: carrier changes are not followed"),
            );
            None
        }
    };

    // Before the LAN: local services bind 127.0.0.1 as soon as they start.
    if let Err(err) = link::set_loopback_up(&service.handle).await {
        service.degraded.set("loopback", format!("{err}"));
    }
    if let Err(err) = service.bring_up_lan().await {
        service.failed = true;
        service.write_status().await;
        service.stop();
        netlink_task.abort();
        return Err(err);
    }
    service.install_firewall();
    service.start_dns().await;
    let elapsed = service.started.elapsed();
    service.lan_ready = Some(elapsed);
    tracing::info!("LAN ready in {:.1} ms", elapsed.as_secs_f64() * 1000.0);
    service.write_status().await;
    on_lan_ready(LanReady {
        elapsed,
        degraded: service.degraded.list(),
    });

    service.bring_up_uplink().await;
    service.write_status().await;

    let mut tick = tokio::time::interval(service.options.status_interval);
    let mut stack_poll = tokio::time::interval(service.options.stack_poll);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(event) = lease_rx.recv() => {
                service.on_lease_event(event).await;
                service.write_status().await;
            }
            Some(change) = recv_carrier(&mut carrier_rx) => {
                service.on_carrier(change).await;
                service.write_status().await;
            }
            _ = tick.tick() => service.write_status().await,
            _ = stack_poll.tick(), if !service.stack_open => service.check_stack(),
        }
    }
    service.stop();
    netlink_task.abort();
    Ok(())
}

async fn recv_carrier(
    rx: &mut Option<mpsc::UnboundedReceiver<CarrierChange>>,
) -> Option<CarrierChange> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Service {
    fn stop(&mut self) {
        if let Some(task) = self.dhcp_task.take() {
            task.abort();
        }
        for task in self.tasks.drain(..) {
            task.abort();
        }
        if self.options.remove_ruleset_on_stop && self.firewall_installed {
            if let Err(err) = firewall::remove() {
                tracing::warn!("{err}");
            }
        }
    }
}
