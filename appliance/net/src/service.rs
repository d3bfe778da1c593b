//! The long-running network service (`kindlingd net`): brings up the LAN
//! first, signals readiness, then the uplink (static or DHCP), the forwarding
//! and NAT ruleset and the LAN DNS forwarder; afterwards it follows lease
//! events and carrier changes and keeps the status file current.
//!
//! Owns the order of bring-up and the degraded reasons. Every failure after
//! the netlink socket is open degrades instead of stopping: the LAN must come
//! up whatever happens to the uplink. It never panics.

use crate::dhcp::{ClientIdentity, DhcpClient, DhcpCounters, DhcpTiming, LeaseEvent, LeaseOffer};
use crate::dns::{DnsCounters, DnsForwarder, DnsRoutes};
use crate::firewall::{self, RulesetSpec};
use crate::link::{self, Device};
use crate::linkwatch::{self, CarrierChange};
use crate::nic::{self, Nic, NicFilter};
use crate::plan::{overlap_with_lan, NetPlan, UplinkAddressing};
use crate::status::{self, LeaseStatus, NetState, NetStatus, RoleStatus};
use crate::sysctl;
use kindling_site::NicMatch;
use rtnetlink::Handle;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum NetServiceError {
    #[error("open the rtnetlink socket: {0}")]
    OpenNetlink(std::io::Error),
}

/// How the service runs; the defaults are the appliance's.
#[derive(Debug, Clone)]
pub struct NetOptions {
    pub status_path: PathBuf,
    pub nic_filter: NicFilter,
    pub sysfs_net: PathBuf,
    pub dns_port: u16,
    pub dhcp_timing: DhcpTiming,
    pub status_interval: Duration,
    /// How long to wait for carrier when a role is `first_with_carrier`
    /// (autonegotiation takes a few seconds on real NICs).
    pub carrier_wait: Duration,
    /// Remove the nftables table when the service stops (tests only; the
    /// appliance keeps its ruleset across a service restart).
    pub remove_ruleset_on_stop: bool,
}

impl Default for NetOptions {
    fn default() -> Self {
        Self {
            status_path: PathBuf::from("/run/kindling/status/net.json"),
            nic_filter: NicFilter::Physical,
            sysfs_net: PathBuf::from("/sys/class/net"),
            dns_port: 53,
            dhcp_timing: DhcpTiming::default(),
            status_interval: Duration::from_secs(5),
            carrier_wait: Duration::from_secs(5),
            remove_ruleset_on_stop: false,
        }
    }
}

/// What the readiness callback is told.
#[derive(Debug, Clone)]
pub struct LanReady {
    pub elapsed: Duration,
    pub degraded: Vec<String>,
}

/// Degraded reasons by topic, so a reason can be cleared when it resolves.
#[derive(Default)]
struct Degraded(BTreeMap<String, String>);

impl Degraded {
    fn set(&mut self, topic: &str, reason: String) {
        if self.0.get(topic) != Some(&reason) {
            tracing::error!("{reason}");
            self.0.insert(topic.into(), reason);
        }
    }
    fn clear(&mut self, topic: &str) {
        if self.0.remove(topic).is_some() {
            tracing::info!("{topic}: recovered");
        }
    }
    fn list(&self) -> Vec<String> {
        self.0.values().cloned().collect()
    }
}

struct Role {
    nic: Nic,
    device: Device,
    carrier: bool,
    /// Carrier went away after we had it: its return restarts DHCP. The first
    /// carrier-up after bring-up is not a return.
    carrier_lost: bool,
}

struct Service {
    plan: NetPlan,
    options: NetOptions,
    handle: Handle,
    started: Instant,
    degraded: Degraded,
    lan: Option<Role>,
    uplink: Option<Role>,
    lease: Option<LeaseStatus>,
    firewall_installed: bool,
    lan_ready: Option<Duration>,
    dns_upstream: watch::Sender<Vec<Ipv4Addr>>,
    dhcp_counters: Option<Arc<DhcpCounters>>,
    dns_counters: Option<Arc<DnsCounters>>,
    dhcp_task: Option<JoinHandle<()>>,
    lease_tx: mpsc::Sender<LeaseEvent>,
    tasks: Vec<JoinHandle<()>>,
}

/// Runs the network service until `shutdown` resolves. `on_lan_ready` is
/// called once, as soon as the LAN is configured (or known to be impossible),
/// before the uplink has a lease.
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
        lan_ready: None,
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
    service.bring_up_lan().await;
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
    async fn discover_nics(&mut self) -> Vec<Nic> {
        match nic::discover(
            &self.handle,
            &self.options.sysfs_net,
            self.options.nic_filter,
        )
        .await
        {
            Ok(nics) => nics,
            Err(err) => {
                self.degraded.set("nics", format!("{err}"));
                Vec::new()
            }
        }
    }

    /// For `first_with_carrier` roles: carrier only shows once a link is up,
    /// so bring every NIC up and wait (bounded) until enough NICs report it.
    async fn nics_with_carrier_settled(&mut self, mut nics: Vec<Nic>) -> Vec<Nic> {
        let wanted = [&self.plan.lan_match, &self.plan.uplink_match]
            .into_iter()
            .filter(|m| **m == NicMatch::FirstWithCarrier)
            .count();
        if wanted == 0 {
            return nics;
        }
        for nic in &nics {
            let dev = Device {
                name: nic.name.clone(),
                index: nic.index,
            };
            if let Err(err) = link::set_up(&self.handle, &dev, None).await {
                tracing::warn!("{err}");
            }
        }
        let deadline = Instant::now() + self.options.carrier_wait;
        loop {
            // One carrier NIC per such role; if a role matched otherwise
            // takes one of them, assignment reports it clearly.
            let with_carrier = nics.iter().filter(|n| n.carrier).count();
            if with_carrier >= wanted || Instant::now() >= deadline {
                return nics;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            nics = self.discover_nics().await;
        }
    }

    async fn bring_up_lan(&mut self) {
        let nics = self.discover_nics().await;
        let nics = self.nics_with_carrier_settled(nics).await;
        for nic in &nics {
            tracing::info!(
                "nic {} mac {} pci {} carrier {}",
                nic.name,
                nic.mac_string(),
                nic.pci_path.as_deref().unwrap_or("-"),
                if nic.carrier { "up" } else { "down" }
            );
        }
        let roles = nic::assign_roles(
            &nics,
            &self.plan.lan_match,
            &self.plan.uplink_match,
            self.plan.uplink_wanted(),
        );
        for (i, problem) in roles.problems.iter().enumerate() {
            self.degraded.set(&format!("roles {i}"), problem.clone());
        }
        if let Some(nic) = &roles.uplink {
            tracing::info!("uplink is {} ({})", nic.name, nic.mac_string());
            self.uplink = Some(Role {
                device: Device {
                    name: nic.name.clone(),
                    index: nic.index,
                },
                carrier: nic.carrier,
                carrier_lost: false,
                nic: nic.clone(),
            });
        }
        let Some(nic) = roles.lan else { return };
        tracing::info!("LAN is {} ({})", nic.name, nic.mac_string());
        match self.configure_lan(&nic).await {
            Ok(device) => {
                tracing::info!(
                    "LAN {} has {}/{}",
                    device.name,
                    self.plan.lan_address,
                    self.plan.lan_subnet.prefix()
                );
                self.lan = Some(Role {
                    carrier: nic.carrier,
                    carrier_lost: false,
                    nic,
                    device,
                });
            }
            Err(err) => self.degraded.set("lan", format!("LAN: {err}")),
        }
    }

    async fn configure_lan(&self, nic: &Nic) -> Result<Device, link::LinkChangeError> {
        let parent = Device {
            name: nic.name.clone(),
            index: nic.index,
        };
        link::set_up(&self.handle, &parent, self.plan.lan_mtu).await?;
        let device = match self.plan.lan_vlan {
            Some(vlan) => {
                let dev = link::ensure_vlan(&self.handle, &parent, vlan).await?;
                link::set_up(&self.handle, &dev, self.plan.lan_mtu).await?;
                dev
            }
            None => parent,
        };
        link::set_only_ipv4(
            &self.handle,
            &device,
            self.plan.lan_address,
            self.plan.lan_subnet.prefix(),
        )
        .await?;
        Ok(device)
    }

    fn ruleset_spec(&self) -> Option<RulesetSpec> {
        if self.lan.is_none() && self.uplink.is_none() {
            return None;
        }
        Some(RulesetSpec {
            lan_device: self.lan.as_ref().map(|l| l.device.name.clone()),
            lan_subnet: self.plan.lan_subnet,
            uplink_device: self.uplink.as_ref().map(|u| u.device.name.clone()),
            nat: self.plan.nat,
            lan_open: self.plan.lan_open.clone(),
            uplink_open: self.plan.uplink_open.clone(),
        })
    }

    fn install_firewall(&mut self) {
        let Some(spec) = self.ruleset_spec() else {
            return;
        };
        let routes_lan = spec.lan_device.is_some() && spec.uplink_device.is_some();
        if routes_lan {
            if let Err(err) = sysctl::enable_ipv4_forwarding() {
                self.degraded.set(
                    "forwarding",
                    format!("forwarding: {err}: LAN has no way out"),
                );
            }
        }
        match firewall::apply(&spec) {
            Ok(()) => {
                self.firewall_installed = true;
                self.degraded.clear("firewall");
                let nat = if spec.nat && routes_lan {
                    "with NAT"
                } else {
                    "without NAT"
                };
                tracing::info!(
                    "nftables table inet {} installed ({nat})",
                    firewall::TABLE_NAME
                );
            }
            Err(err) => self.degraded.set(
                "firewall",
                format!("firewall: {err}: no NAT, no input filtering"),
            ),
        }
    }

    async fn start_dns(&mut self) {
        if !self.plan.dns_forwarder || self.lan.is_none() {
            return;
        }
        let counters = Arc::new(DnsCounters::default());
        let routes = DnsRoutes::new(&self.plan.consul_domain, self.dns_upstream.subscribe());
        let addr = SocketAddr::from((self.plan.lan_address, self.options.dns_port));
        match DnsForwarder::bind(addr, routes, counters.clone()).await {
            Ok(forwarder) => {
                tracing::info!("DNS forwarder on {addr}");
                self.dns_counters = Some(counters);
                self.tasks.push(tokio::spawn(forwarder.run()));
            }
            Err(err) => self.degraded.set("dns", format!("DNS: {err}")),
        }
    }

    async fn bring_up_uplink(&mut self) {
        let Some(uplink) = &self.uplink else { return };
        let device = uplink.device.clone();
        if let Err(err) = link::set_up(&self.handle, &device, self.plan.uplink_mtu).await {
            self.degraded.set("uplink", format!("uplink: {err}"));
            return;
        }
        if let Err(err) = sysctl::accept_router_advertisements(&device.name) {
            // IPv6 may be disabled in the kernel; IPv4 works regardless.
            tracing::warn!("uplink: no IPv6 SLAAC: {err}");
        }
        match self.plan.uplink.clone() {
            UplinkAddressing::Static {
                address,
                prefix_len,
                gateway,
                dns,
            } => {
                if let Err(err) =
                    link::set_only_ipv4(&self.handle, &device, address, prefix_len).await
                {
                    self.degraded.set("uplink", format!("uplink: {err}"));
                    return;
                }
                if let Some(gateway) = gateway {
                    if let Err(err) = link::set_default_route(&self.handle, &device, gateway).await
                    {
                        self.degraded.set("uplink route", format!("uplink: {err}"));
                    }
                }
                if self.plan.dns_upstream.is_empty() {
                    self.dns_upstream.send_replace(dns);
                }
                tracing::info!("uplink {} has static {address}/{prefix_len}", device.name);
            }
            UplinkAddressing::Dhcp => self.start_dhcp(),
            UplinkAddressing::None => {}
        }
    }

    fn start_dhcp(&mut self) {
        let Some(uplink) = &self.uplink else { return };
        let counters = self
            .dhcp_counters
            .get_or_insert_with(Default::default)
            .clone();
        let identity = ClientIdentity {
            mac: uplink.nic.mac,
            hostname: Some(self.plan.hostname.clone()),
        };
        match DhcpClient::new(
            &uplink.device.name,
            uplink.device.index,
            identity,
            self.lease_tx.clone(),
            counters,
            self.options.dhcp_timing.clone(),
        ) {
            Ok(client) => {
                tracing::info!("uplink {}: DHCP started", uplink.device.name);
                self.dhcp_task = Some(tokio::spawn(async move {
                    if let Err(err) = client.run().await {
                        tracing::error!("uplink: DHCP client stopped: {err}");
                    }
                }));
            }
            Err(err) => self.degraded.set("dhcp", format!("uplink: {err}")),
        }
    }

    async fn on_lease_event(&mut self, event: LeaseEvent) {
        let Some(device) = self.uplink.as_ref().map(|u| u.device.clone()) else {
            return;
        };
        match event {
            LeaseEvent::Bound(lease) | LeaseEvent::Renewed(lease) => {
                let renewed = self
                    .lease
                    .as_ref()
                    .is_some_and(|l| l.address == lease.address);
                if let Some(reason) =
                    overlap_with_lan(self.plan.lan_subnet, lease.address, lease.prefix_len)
                {
                    self.degraded.set(
                        "lease",
                        format!(
                            "uplink: leased {}/{} {reason}: not configured, LAN runs without NAT",
                            lease.address, lease.prefix_len
                        ),
                    );
                    return;
                }
                if let Err(err) = self.apply_lease(&device, &lease).await {
                    self.degraded.set("lease", format!("uplink: {err}"));
                    return;
                }
                self.degraded.clear("lease");
                self.degraded.clear("no dhcp answer");
                let renewals = self
                    .lease
                    .as_ref()
                    .map(|l| l.renewals + u64::from(renewed))
                    .unwrap_or(0);
                if renewed {
                    tracing::info!(
                        "uplink {}: lease {} renewed for {:?}",
                        device.name,
                        lease.address,
                        lease.lease_time
                    );
                } else {
                    tracing::info!(
                        "uplink {}: leased {}/{} from {} for {:?}",
                        device.name,
                        lease.address,
                        lease.prefix_len,
                        lease.server_id,
                        lease.lease_time
                    );
                }
                self.lease = Some(LeaseStatus {
                    address: lease.address,
                    prefix_len: lease.prefix_len,
                    server: lease.server_id,
                    routers: lease.routers.clone(),
                    dns: lease.dns.clone(),
                    domain: lease.domain.clone(),
                    lease_secs: lease.lease_time.as_secs(),
                    obtained_unix: status::unix_now(),
                    renewals,
                });
            }
            LeaseEvent::Lost { address, reason } => {
                self.degraded.set(
                    "lease",
                    format!("uplink: lease {address} lost ({reason}): no NAT until a new lease"),
                );
                if let Err(err) = self.withdraw_lease(&device, address).await {
                    tracing::error!("uplink: {err}");
                }
                self.lease = None;
            }
            LeaseEvent::NoAnswer { waited } => {
                self.degraded.set(
                    "no dhcp answer",
                    format!(
                        "uplink {}: no DHCP answer after {} s; still trying, LAN runs without NAT",
                        device.name,
                        waited.as_secs()
                    ),
                );
            }
        }
    }

    async fn apply_lease(
        &self,
        device: &Device,
        lease: &LeaseOffer,
    ) -> Result<(), link::LinkChangeError> {
        link::set_only_ipv4(&self.handle, device, lease.address, lease.prefix_len).await?;
        if let Some(router) = lease.routers.first() {
            link::set_default_route(&self.handle, device, *router).await?;
        }
        if self.plan.dns_upstream.is_empty() {
            self.dns_upstream.send_replace(lease.dns.clone());
        }
        Ok(())
    }

    async fn withdraw_lease(
        &self,
        device: &Device,
        address: Ipv4Addr,
    ) -> Result<(), link::LinkChangeError> {
        if self.plan.dns_upstream.is_empty() {
            self.dns_upstream.send_replace(Vec::new());
        }
        link::remove_default_routes(&self.handle, device).await?;
        link::remove_ipv4(&self.handle, device, address).await
    }

    async fn on_carrier(&mut self, change: CarrierChange) {
        if let Some(lan) = self
            .lan
            .as_mut()
            .filter(|r| r.nic.index == change.index && r.carrier != change.carrier)
        {
            lan.carrier = change.carrier;
            tracing::info!(
                "LAN {}: carrier {}",
                lan.nic.name,
                if change.carrier { "up" } else { "down" }
            );
        }
        let Some(uplink) = self.uplink.as_mut().filter(|r| r.nic.index == change.index) else {
            return;
        };
        if uplink.carrier == change.carrier {
            return;
        }
        uplink.carrier = change.carrier;
        let name = uplink.nic.name.clone();
        if !change.carrier {
            uplink.carrier_lost = true;
            self.degraded
                .set("uplink carrier", format!("uplink {name}: carrier lost"));
            return;
        }
        let returned = std::mem::take(&mut uplink.carrier_lost);
        self.degraded.clear("uplink carrier");
        if returned && self.plan.uplink == UplinkAddressing::Dhcp {
            // The cable may now lead to another network: start over.
            tracing::info!("uplink {name}: carrier back, restarting DHCP");
            if let Some(task) = self.dhcp_task.take() {
                task.abort();
            }
            self.start_dhcp();
        }
    }

    async fn write_status(&mut self) {
        let nat_counters = if self.firewall_installed {
            firewall::read_counters().unwrap_or_else(|err| {
                tracing::warn!("{err}");
                BTreeMap::new()
            })
        } else {
            BTreeMap::new()
        };
        let mut routes = link::ipv4_routes(&self.handle).await.unwrap_or_default();
        for route in &mut routes {
            route.device = [self.lan.as_ref(), self.uplink.as_ref()]
                .into_iter()
                .flatten()
                .find(|role| Some(role.device.index) == route.device_index)
                .map(|role| role.device.name.clone());
        }
        let lan = self.role_status(self.lan.as_ref()).await;
        let uplink = self.role_status(self.uplink.as_ref()).await;
        let degraded = self.degraded.list();
        let state = match (self.lan_ready, degraded.is_empty()) {
            (None, _) => NetState::Starting,
            (Some(_), true) => NetState::Ready,
            (Some(_), false) => NetState::Degraded,
        };
        let doc = NetStatus {
            state,
            lan,
            uplink,
            uplink_mode: match self.plan.uplink {
                UplinkAddressing::Dhcp => "dhcp",
                UplinkAddressing::Static { .. } => "static",
                UplinkAddressing::None => "none",
            }
            .into(),
            lease: self.lease.clone(),
            routes,
            dns_upstream: self.dns_upstream.borrow().clone(),
            firewall_installed: self.firewall_installed,
            nat_counters,
            dhcp_client: self.dhcp_counters.as_ref().map(|c| c.snapshot()),
            dns_forwarder: self.dns_counters.as_ref().map(|c| c.snapshot()),
            degraded,
            lan_ready_ms: self
                .lan_ready
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            lan_ready_us: self
                .lan_ready
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            updated_unix: status::unix_now(),
        };
        if let Err(err) = status::write_atomically(&self.options.status_path, &doc) {
            tracing::warn!("{err}");
        }
    }

    async fn role_status(&self, role: Option<&Role>) -> Option<RoleStatus> {
        let role = role?;
        let addresses = link::addresses(&self.handle, &role.device)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(ip, len)| format!("{ip}/{len}"))
            .collect();
        Some(RoleStatus {
            nic: role.nic.name.clone(),
            mac: role.nic.mac_string(),
            pci_path: role.nic.pci_path.clone(),
            device: role.device.name.clone(),
            carrier: role.carrier,
            addresses,
        })
    }

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
