//! The grant part of a node's record: claiming the one grant of a cycle,
//! recording it once minted, settling it once Vault says what became of
//! it, re-arming, and the alerts all that raises. Decisions are
//! `crate::grants`'s; this applies them to the records under the
//! inventory's lock, so two requests can never both claim a cycle's grant.

use super::node_membership::fail;
use super::{lock, push_event, Inventory, NodeRecord};
use crate::grants::{raise, Verdict};
use kindling_api::nodes::{
    AlertKind, FailureKind, Grant, GrantState, NodeAlert, NodeEvent, NodeState,
};
use kindling_site::MacAddr;
use std::net::Ipv4Addr;

/// The answer to "may this node have a grant now?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Yes: its grant is `minting` now; record it with
    /// [`Inventory::grant_issued`] or give it back with
    /// [`Inventory::release_grant`].
    Granted,
    /// This cycle's grant was minted already; the node is marked
    /// `grant-reused`.
    Reused(Grant),
    /// A MAC the site does not name, over its profile's allowance.
    OverAllowance { allowed: u32 },
    /// The inventory has no record of the MAC (no DHCP exchange seen).
    NoRecord,
}

/// What to claim a grant for.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub profile: &'a str,
    pub address: Ipv4Addr,
    /// `None` for a node the site or an assignment names; for another
    /// MAC, how many such MACs the profile allows grants for.
    pub unknown_allowance: Option<u32>,
}

/// The event recorded when the operator's re-arm is applied.
pub const REPROVISION_EVENT: &str = "reprovision";

/// How long a claim may stay `minting` (two Vault calls, each with its own
/// timeout); one older than this was interrupted (a restart).
pub const MINT_DEADLINE_SECS: u64 = 120;

/// A minted grant's names in Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedGrant {
    pub wrapping_accessor: String,
    pub secret_id_accessor: String,
    /// Seconds its wrapping token lives.
    pub ttl_secs: u32,
}

impl Inventory {
    /// Applies a re-arm request: if `generation` is newer than what the
    /// node applied, its grant and alerts are cleared (the next user-data
    /// fetch mints again) and an installed node goes back to `discovered`,
    /// so its next PXE boot installs it again instead of booting its disk.
    /// Returns the grant of the cycle that ended, when it re-armed.
    pub fn apply_rearm(&self, mac: MacAddr, generation: u64, now: u64) -> Option<Option<Grant>> {
        let mut nodes = lock(&self.nodes);
        let record = nodes.map.get_mut(&mac)?;
        if generation <= record.seen.rearmed {
            return None;
        }
        record.seen.rearmed = generation;
        record.seen.alerts.clear();
        // A new cycle: the old install's failure is history (the event log
        // keeps it); its catalog entry is kept marked left, so the catalog
        // check can tell it from the new install's (`membership::judge`).
        record.seen.failure = None;
        record.seen.reason = None;
        if let Some(member) = record.seen.consul.as_mut() {
            member.left_at.get_or_insert(now);
        }
        let previous = record.seen.grant.take();
        if record.state >= NodeState::Installed {
            record.state = NodeState::Discovered;
            record.seen.state_changed = now;
        }
        push_event(
            record,
            NodeEvent {
                at: now,
                event: REPROVISION_EVENT.to_string(),
                detail: serde_json::json!({ "generation": generation }),
            },
        );
        nodes.dirty = true;
        Some(previous)
    }

    /// Claims the cycle's grant for `mac` (see [`Claim`]).
    pub fn claim_grant(&self, mac: MacAddr, request: &ClaimRequest<'_>, now: u64) -> Claim {
        let mut nodes = lock(&self.nodes);
        if let Some(grant) = nodes.map.get(&mac).and_then(|r| r.seen.grant.clone()) {
            if let Some(record) = nodes.map.get_mut(&mac) {
                let detail = format!(
                    "user-data asked for again from {} after this cycle's grant was minted (at {}, for {}, now {}); no second grant was given; `kindling node reprovision {mac}` re-arms",
                    request.address,
                    grant.issued_at,
                    grant.address,
                    state_name(grant.state),
                );
                raise(
                    &mut record.seen.alerts,
                    AlertKind::GrantReused,
                    detail.clone(),
                    now,
                );
                fail(record, FailureKind::GrantAlreadyUsed, None, detail, now);
            }
            nodes.dirty = true;
            return Claim::Reused(grant);
        }
        if let Some(allowed) = request.unknown_allowance {
            let used = nodes
                .map
                .values()
                .filter_map(|r| r.seen.grant.as_ref())
                .filter(|g| g.unknown_mac && g.profile == request.profile)
                .count();
            if used >= allowed as usize {
                return Claim::OverAllowance { allowed };
            }
        }
        let Some(record) = nodes.map.get_mut(&mac) else {
            return Claim::NoRecord;
        };
        record.seen.grant = Some(Grant {
            state: GrantState::Minting,
            profile: request.profile.to_string(),
            address: request.address,
            issued_at: now,
            expires_at: now + MINT_DEADLINE_SECS,
            unknown_mac: request.unknown_allowance.is_some(),
            wrapping_accessor: String::new(),
            secret_id_accessor: String::new(),
            checked_at: None,
            reason: None,
        });
        nodes.dirty = true;
        Claim::Granted
    }

    /// Records the grant claimed for `mac` as minted and served.
    pub fn grant_issued(&self, mac: MacAddr, issued: IssuedGrant, now: u64) {
        self.with_grant(mac, |g| {
            g.state = GrantState::Issued;
            g.issued_at = now;
            g.expires_at = now + u64::from(issued.ttl_secs);
            g.wrapping_accessor = issued.wrapping_accessor;
            g.secret_id_accessor = issued.secret_id_accessor;
        });
    }

    /// Gives back a claim whose minting failed, or (with its secret-id
    /// accessor) a minted grant that was withdrawn before it was served:
    /// the next fetch tries again.
    pub fn release_grant(&self, mac: MacAddr, secret_id_accessor: Option<&str>) {
        let mut nodes = lock(&self.nodes);
        if let Some(record) = nodes.map.get_mut(&mac) {
            let release = record
                .seen
                .grant
                .as_ref()
                .is_some_and(|g| match secret_id_accessor {
                    None => g.state == GrantState::Minting,
                    Some(a) => g.secret_id_accessor == a,
                });
            if release {
                record.seen.grant = None;
                nodes.dirty = true;
            }
        }
    }

    /// Grants still `issued` or `minting`, to be checked.
    pub fn open_grants(&self) -> Vec<(MacAddr, Grant)> {
        lock(&self.nodes)
            .map
            .values()
            .filter_map(|r| r.seen.grant.clone().map(|g| (r.mac, g)))
            .filter(|(_, g)| matches!(g.state, GrantState::Issued | GrantState::Minting))
            .collect()
    }

    /// Records a check of `mac`'s grant (the one with `secret_id_accessor`,
    /// so a grant re-armed meanwhile is left alone) and, with a verdict,
    /// its new state and alert.
    pub fn settle_grant(
        &self,
        mac: MacAddr,
        secret_id_accessor: &str,
        verdict: Option<&Verdict>,
        now: u64,
    ) {
        let mut nodes = lock(&self.nodes);
        let Some(record) = nodes.map.get_mut(&mac) else {
            return;
        };
        let Some(grant) = record
            .seen
            .grant
            .as_mut()
            .filter(|g| g.secret_id_accessor == secret_id_accessor)
        else {
            return;
        };
        grant.checked_at = Some(now);
        // Settled already (by a check that ran at the same time): keep the
        // first verdict and its one alert.
        let open = matches!(grant.state, GrantState::Issued | GrantState::Minting);
        if let Some(v) = verdict.filter(|_| open) {
            grant.state = v.state;
            grant.reason = v.reason.clone();
            if let Some(kind) = v.alert {
                let detail = v.reason.clone().unwrap_or_default();
                raise(&mut record.seen.alerts, kind, detail.clone(), now);
                let failure = match kind {
                    AlertKind::GrantReused => FailureKind::GrantAlreadyUsed,
                    AlertKind::GrantExpired => FailureKind::GrantExpired,
                    AlertKind::GrantUsedElsewhere => FailureKind::GrantUsedElsewhere,
                };
                fail(record, failure, None, detail, now);
            }
        }
        nodes.dirty = true;
    }

    /// Every node's alerts, for status.
    pub fn alerts(&self) -> Vec<(MacAddr, NodeAlert)> {
        lock(&self.nodes)
            .map
            .values()
            .flat_map(|r: &NodeRecord| r.seen.alerts.iter().map(move |a| (r.mac, a.clone())))
            .collect()
    }

    fn with_grant(&self, mac: MacAddr, f: impl FnOnce(&mut Grant)) {
        let mut nodes = lock(&self.nodes);
        if let Some(g) = nodes.map.get_mut(&mac).and_then(|r| r.seen.grant.as_mut()) {
            f(g);
            nodes.dirty = true;
        }
    }
}

fn state_name(state: GrantState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::grants::{assess, Seen};
    use crate::testing::lab_policy;
    use kindling_api::nodes::Firmware;

    const DEV: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);
    const A: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x91]);
    const B: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x92]);
    const IP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 101);

    fn request(unknown_allowance: Option<u32>) -> ClaimRequest<'static> {
        ClaimRequest {
            profile: "dev",
            address: IP,
            unknown_allowance,
        }
    }

    fn seen_by_dhcp(inv: &Inventory, mac: MacAddr) {
        inv.observe_dhcp(mac, Some(IP), Some(0), Firmware::Bios, 1);
    }

    fn issued() -> IssuedGrant {
        IssuedGrant {
            wrapping_accessor: "wrap".into(),
            secret_id_accessor: "sid".into(),
            ttl_secs: 300,
        }
    }

    #[test]
    fn one_grant_per_cycle_then_reused_until_rearmed_and_it_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(dir.path(), lab_policy()).0;
        seen_by_dhcp(&inv, DEV);
        assert_eq!(inv.claim_grant(DEV, &request(None), 10), Claim::Granted);
        inv.grant_issued(DEV, issued(), 11);
        let g = inv.node(&DEV).unwrap().seen.grant.unwrap();
        assert_eq!(
            (g.state, g.issued_at, g.expires_at),
            (GrantState::Issued, 11, 311)
        );
        inv.flush_if_dirty().unwrap();

        let again = Inventory::open(dir.path(), lab_policy()).0;
        assert!(matches!(
            again.claim_grant(DEV, &request(None), 20),
            Claim::Reused(_)
        ));
        assert!(matches!(
            again.claim_grant(DEV, &request(None), 21),
            Claim::Reused(_)
        ));
        let alerts = again.node(&DEV).unwrap().seen.alerts;
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            (alerts[0].kind, alerts[0].count),
            (AlertKind::GrantReused, 2)
        );

        assert_eq!(
            again
                .apply_rearm(DEV, 1, 25)
                .unwrap()
                .unwrap()
                .secret_id_accessor,
            "sid"
        );
        assert_eq!(
            again.apply_rearm(DEV, 1, 26),
            None,
            "a generation applies once"
        );
        assert!(again.node(&DEV).unwrap().seen.alerts.is_empty());
        assert_eq!(again.claim_grant(DEV, &request(None), 30), Claim::Granted);
    }

    #[test]
    fn a_failed_mint_gives_the_claim_back() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(dir.path(), lab_policy()).0;
        seen_by_dhcp(&inv, DEV);
        assert_eq!(inv.claim_grant(DEV, &request(None), 10), Claim::Granted);
        assert!(matches!(
            inv.claim_grant(DEV, &request(None), 10),
            Claim::Reused(_)
        ));
        inv.release_grant(DEV, None);
        assert_eq!(inv.claim_grant(DEV, &request(None), 11), Claim::Granted);
    }

    #[test]
    fn unknown_macs_are_capped_per_profile() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(dir.path(), lab_policy()).0;
        for mac in [A, B] {
            seen_by_dhcp(&inv, mac);
        }
        assert_eq!(
            inv.claim_grant(A, &request(Some(0)), 1),
            Claim::OverAllowance { allowed: 0 }
        );
        assert_eq!(inv.claim_grant(A, &request(Some(1)), 1), Claim::Granted);
        assert_eq!(
            inv.claim_grant(B, &request(Some(1)), 1),
            Claim::OverAllowance { allowed: 1 }
        );
        let prod = ClaimRequest {
            profile: "prod",
            ..request(Some(1))
        };
        assert_eq!(
            inv.claim_grant(B, &prod, 1),
            Claim::Granted,
            "another profile's allowance"
        );
    }

    #[test]
    fn settling_records_the_verdict_and_its_alert() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(dir.path(), lab_policy()).0;
        seen_by_dhcp(&inv, DEV);
        inv.claim_grant(DEV, &request(None), 10);
        inv.grant_issued(DEV, issued(), 10);
        let (_, grant) = inv.open_grants().pop().unwrap();
        let seen = Seen {
            wrapping_alive: false,
            secret_id_alive: true,
        };
        let verdict = assess(&grant, seen, true, 20).unwrap();
        inv.settle_grant(DEV, "other", Some(&verdict), 20);
        assert_eq!(
            inv.open_grants().len(),
            1,
            "another grant's verdict is ignored"
        );
        inv.settle_grant(DEV, "sid", Some(&verdict), 20);
        inv.settle_grant(DEV, "sid", Some(&verdict), 21);
        assert!(inv.open_grants().is_empty());
        assert_eq!(inv.alerts().len(), 1);
        assert_eq!(
            inv.alerts()[0].1.count,
            1,
            "a second verdict is not a second alert"
        );
        let node = inv.node(&DEV).unwrap();
        assert_eq!(node.seen.grant.unwrap().state, GrantState::UsedElsewhere);
        assert_eq!(inv.alerts()[0].1.kind, AlertKind::GrantUsedElsewhere);
    }
}
