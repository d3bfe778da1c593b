//! The uplink: static addressing or the DHCP client, applying and
//! withdrawing leases, and following carrier changes on both roles.
//!
//! Owns the uplink's address, default route and upstream DNS servers. Must
//! never configure an address that overlaps the LAN, and never touch the LAN
//! device's addresses.

use super::state::Service;
use crate::dhcp::{ClientIdentity, DhcpClient, LeaseEvent, LeaseOffer};
use crate::link::{self, Device};
use crate::linkwatch::CarrierChange;
use crate::plan::{overlap_with_lan, UplinkAddressing};
use crate::status::LeaseStatus;
use crate::sysctl;
use std::net::Ipv4Addr;

impl Service {
    pub(super) async fn bring_up_uplink(&mut self) {
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

    pub(super) async fn on_lease_event(&mut self, event: LeaseEvent) {
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
                    obtained_unix: kindling_clock::unix_now(),
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

    pub(super) async fn on_carrier(&mut self, change: CarrierChange) {
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
}
