//! The status file: the service's state, roles, lease, routes, counters
//! and degraded reasons, written atomically on every change and on a tick.
//!
//! Owns the mapping from the service's state to `NetStatus`. Must never
//! change the network: it only reads (routes, addresses, nftables counters).

use super::state::{Role, Service};
use crate::firewall;
use crate::link;
use crate::plan::UplinkAddressing;
use crate::status::{self, NetState, NetStatus, RoleStatus};
use std::collections::BTreeMap;

impl Service {
    pub(super) async fn write_status(&mut self) {
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
            _ if self.failed => NetState::Failed,
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
            updated_unix: kindling_clock::unix_now(),
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
}
