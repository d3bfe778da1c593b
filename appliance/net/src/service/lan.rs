//! LAN bring-up: NIC discovery and role assignment, the LAN address (and
//! VLAN), the forwarding and NAT ruleset and the LAN DNS forwarder.
//!
//! Owns everything that must be in place before readiness is signalled. Must
//! never wait on the uplink: a missing or silent uplink degrades, it does not
//! delay the LAN.

use super::state::{Role, Service};
use super::NetServiceError;
use crate::dns::{DnsCounters, DnsForwarder, DnsRoutes};
use crate::firewall::{self, RulesetSpec};
use crate::link::{self, Device};
use crate::nic::{self, Nic};
use crate::sysctl;
use kindling_site::NicMatch;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

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

    /// Fails only when there is no NIC at all ([`nic::RoleAssignment::fatal`]);
    /// everything else degrades and the LAN comes up as far as it can.
    pub(super) async fn bring_up_lan(&mut self) -> Result<(), NetServiceError> {
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
        if let Some(fatal) = roles.fatal() {
            return Err(NetServiceError::NoNic(fatal));
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
        let Some(nic) = roles.lan else {
            return Ok(());
        };
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
        Ok(())
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
        let (mut lan_open, mut uplink_open) =
            (self.plan.lan_open.clone(), self.plan.uplink_open.clone());
        if self.stack_open {
            lan_open.extend(self.plan.stack_lan_open.iter().copied());
            uplink_open.extend(self.plan.stack_uplink_open.iter().copied());
        }
        Some(RulesetSpec {
            lan_device: self.lan.as_ref().map(|l| l.device.name.clone()),
            lan_subnet: self.plan.lan_subnet,
            uplink_device: self.uplink.as_ref().map(|u| u.device.name.clone()),
            nat: self.plan.nat,
            lan_open,
            uplink_open,
        })
    }

    /// Opens the stack's ports once its bootstrap is done (checked on every
    /// poll until then).
    pub(super) fn check_stack(&mut self) {
        if self.stack_open
            || (self.plan.stack_lan_open.is_empty() && self.plan.stack_uplink_open.is_empty())
        {
            return;
        }
        if super::stack_gate::stack_ready(
            &self.options.stack_status_path,
            self.options.stack_status_owner,
        ) {
            self.stack_open = true;
            tracing::info!("stack bootstrapped: opening its TLS ports to the LAN");
            self.install_firewall();
        }
    }

    pub(super) fn install_firewall(&mut self) {
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

    pub(super) async fn start_dns(&mut self) {
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
}
