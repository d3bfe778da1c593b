//! `GrantKeeper`: when a node gets its enrollment grant, and what became of
//! it. One grant per provisioning cycle: the lease holder's first user-data
//! fetch mints it (bound to the leased address); a second fetch is refused
//! and marks the node `grant-reused`; `kindling node reprovision MAC`
//! re-arms. Unknown MACs get one only under their profile's allowance.
//! After a node's event, and once a grant's life is over, it asks Vault
//! (by the grant's accessors) whether the grant was redeemed, expired or
//! unwrapped by someone else, records that, and destroys a secret-id nobody
//! redeemed.
//!
//! Decisions about the lifecycle are `kindling_inventory::grants`'s; this
//! module sequences them with the Vault calls (`EnrollmentSource`) and the
//! inventory's records. It never logs or stores a wrapping token: a grant
//! is on disk (accessors only) before it is served.

use crate::enroll::{EnrollError, Enrollment, EnrollmentSource, GrantRequest, GrantTicket};
use crate::status::Stats;
use kindling_clock::unix_now;
use kindling_inventory::grants::{assess, Seen};
use kindling_inventory::{
    Claim, ClaimRequest, Grant, GrantState, Inventory, IssuedGrant, ProfileChoice, ReprovisionWatch,
};
use kindling_site::MacAddr;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Why user-data with a grant cannot be served now.
#[derive(Debug, thiserror::Error)]
pub enum GrantRefused {
    #[error("this provisioning cycle's grant for {mac} was already minted (at {issued_at} for {address}); no second grant is given. The operator re-arms with `kindling node reprovision {mac}`")]
    Reused {
        mac: MacAddr,
        issued_at: u64,
        address: Ipv4Addr,
    },
    #[error(transparent)]
    Mint(EnrollError),
    #[error("the grant for {mac} could not be recorded before serving it, so it was withdrawn: {reason}")]
    Record { mac: MacAddr, reason: String },
}

/// Who is asking for user-data.
#[derive(Debug, Clone)]
pub struct Asker<'a> {
    pub mac: MacAddr,
    pub choice: &'a ProfileChoice,
    pub profile: &'a str,
    pub hostname: &'a str,
    /// The leased address the request came from.
    pub address: Ipv4Addr,
}

pub struct GrantKeeper {
    inventory: Arc<Inventory>,
    source: Arc<dyn EnrollmentSource>,
    rearm: ReprovisionWatch,
    /// Profile → how many unknown MACs may have a grant in it.
    unknown_allowance: BTreeMap<String, u32>,
    stats: Arc<Stats>,
}

impl GrantKeeper {
    pub fn new(
        inventory: Arc<Inventory>,
        source: Arc<dyn EnrollmentSource>,
        rearm: ReprovisionWatch,
        unknown_allowance: BTreeMap<String, u32>,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            inventory,
            source,
            rearm,
            unknown_allowance,
            stats,
        }
    }

    /// Re-arm requests the operator made for `mac` so far (applied or not).
    pub fn rearm_requests(&self, mac: &MacAddr) -> u64 {
        self.rearm.generation(mac)
    }

    /// Applies the operator's re-arm of `mac`, if one came since: clears
    /// the node's grant and alerts, and destroys the old secret-id if
    /// nobody redeemed it.
    pub fn apply_rearm(&self, mac: MacAddr) {
        let generation = self.rearm.generation(&mac);
        let Some(previous) = self.inventory.apply_rearm(mac, generation, unix_now()) else {
            return;
        };
        self.stats.bump("grants_rearmed");
        tracing::info!(%mac, generation, "grants: re-armed");
        if let Some(g) = previous.filter(|g| g.state == GrantState::Issued) {
            if let Err(e) = self.source.withdraw(mac, &g.profile, &ticket(&g)) {
                tracing::warn!(%mac, error = %e, "grants: old secret-id not destroyed");
            }
        }
    }

    /// The grant to put into `asker`'s user-data: `Ok(None)` when there is
    /// none to give (Vault is off, or an unknown MAC over its allowance),
    /// and the user-data goes out without one.
    pub fn for_user_data(&self, asker: &Asker<'_>) -> Result<Option<Enrollment>, GrantRefused> {
        let mac = asker.mac;
        self.apply_rearm(mac);
        if !self.source.active() {
            return Ok(None);
        }
        let unknown_allowance = match asker.choice {
            ProfileChoice::Assigned(_) | ProfileChoice::Site(_) => None,
            ProfileChoice::Selected(_)
            | ProfileChoice::Default(_)
            | ProfileChoice::Menu
            | ProfileChoice::NotServed => Some(
                self.unknown_allowance
                    .get(asker.profile)
                    .copied()
                    .unwrap_or(0),
            ),
        };
        let claim = ClaimRequest {
            profile: asker.profile,
            address: asker.address,
            unknown_allowance,
        };
        match self.inventory.claim_grant(mac, &claim, unix_now()) {
            Claim::Granted => {}
            Claim::Reused(grant) => {
                self.stats.bump("http_refused_grant_reused");
                tracing::warn!(%mac, from = %asker.address, "grants: user-data asked for again; refused");
                return Err(GrantRefused::Reused {
                    mac,
                    issued_at: grant.issued_at,
                    address: grant.address,
                });
            }
            Claim::OverAllowance { allowed } => {
                self.stats.bump("grants_skipped_unknown_mac");
                tracing::info!(%mac, profile = asker.profile, allowed, "grants: unknown MAC, no grant");
                return Ok(None);
            }
            Claim::NoRecord => {
                self.stats.bump("grants_skipped_no_record");
                return Ok(None);
            }
        }
        let request = GrantRequest {
            mac,
            profile: asker.profile,
            hostname: asker.hostname,
            address: asker.address,
        };
        let enrollment = match self.source.enroll(&request) {
            Ok(Some(e)) => e,
            Ok(None) => {
                self.inventory.release_grant(mac, None);
                return Ok(None);
            }
            Err(e) => {
                self.inventory.release_grant(mac, None);
                self.stats.bump("http_enrollment_errors");
                return Err(GrantRefused::Mint(e));
            }
        };
        self.inventory.grant_issued(
            mac,
            IssuedGrant {
                wrapping_accessor: enrollment.ticket.wrapping_accessor.clone(),
                secret_id_accessor: enrollment.ticket.secret_id_accessor.clone(),
                ttl_secs: enrollment.ticket.ttl_secs,
            },
            unix_now(),
        );
        // On disk before it is served: a restart must not forget that this
        // cycle's grant is gone.
        if let Err(e) = self.inventory.flush_if_dirty() {
            let _ = self.source.withdraw(mac, asker.profile, &enrollment.ticket);
            self.inventory
                .release_grant(mac, Some(&enrollment.ticket.secret_id_accessor));
            self.stats.bump("grant_record_errors");
            return Err(GrantRefused::Record {
                mac,
                reason: e.to_string(),
            });
        }
        self.stats.bump("grants_minted");
        tracing::info!(%mac, address = %asker.address, profile = asker.profile, "grants: minted");
        Ok(Some(enrollment))
    }

    /// After an event from `mac`'s lease holder: looks its open grant up
    /// (`node_failed`: the node says its unwrap failed).
    pub fn after_event(&self, mac: MacAddr, node_failed: bool) {
        let grant = self
            .inventory
            .node(&mac)
            .and_then(|n| n.seen.grant)
            .filter(|g| g.state == GrantState::Issued);
        if let Some(grant) = grant {
            self.check(mac, &grant, node_failed, unix_now());
        }
    }

    /// Settles every grant whose life is over, and claims a restart left
    /// `minting`. Called periodically.
    pub fn sweep(&self, now: u64) {
        for (mac, grant) in self.inventory.open_grants() {
            if now < grant.expires_at {
                continue;
            }
            match grant.state {
                GrantState::Minting => {
                    let verdict = kindling_inventory::grants::Verdict {
                        state: GrantState::Expired,
                        reason: Some("minting did not finish (the PXE service restarted or Vault did not answer); re-arm the node".into()),
                        alert: Some(kindling_inventory::AlertKind::GrantExpired),
                        withdraw: false,
                    };
                    self.inventory.settle_grant(
                        mac,
                        &grant.secret_id_accessor,
                        Some(&verdict),
                        now,
                    );
                }
                _ => self.check(mac, &grant, false, now),
            }
        }
        if let Err(e) = self.inventory.flush_if_dirty() {
            tracing::warn!(error = %e, "grants: inventory flush failed");
        }
    }

    /// Keeps the enrollment token alive.
    pub fn renew(&self) {
        if !self.source.active() {
            return;
        }
        if let Err(e) = self.source.renew() {
            tracing::warn!(error = %e, "grants: enrollment token not renewed");
            self.stats.bump("grant_token_renew_errors");
        }
    }

    /// What problems reading the re-arm requests has, for status.
    pub fn problem(&self) -> Option<String> {
        self.rearm.problem()
    }

    fn check(&self, mac: MacAddr, grant: &Grant, node_failed: bool, now: u64) {
        // Vault retires a used wrapping token a moment after the unwrap: a
        // node reporting its unwrap failing right after someone else's may
        // still see it listed. Ask again, briefly.
        let mut attempts = if node_failed { RECHECKS } else { 1 };
        let verdict = loop {
            attempts -= 1;
            let lookup = match self.source.lookup(mac, &grant.profile, &ticket(grant)) {
                Ok(l) => l,
                Err(e) => {
                    self.stats.bump("grant_check_errors");
                    tracing::warn!(%mac, error = %e, "grants: lookup failed; will retry");
                    return;
                }
            };
            let seen = Seen {
                wrapping_alive: lookup.wrapping_alive,
                secret_id_alive: lookup.secret_id_alive,
            };
            let verdict = assess(grant, seen, node_failed, now.max(unix_now()));
            if verdict.is_some() || attempts == 0 {
                break verdict;
            }
            std::thread::sleep(RECHECK_PAUSE);
        };
        if let Some(v) = &verdict {
            if v.withdraw {
                if let Err(e) = self.source.withdraw(mac, &grant.profile, &ticket(grant)) {
                    tracing::warn!(%mac, error = %e, "grants: secret-id not destroyed");
                }
            }
            self.stats.bump(match v.state {
                GrantState::Redeemed => "grants_redeemed",
                GrantState::UsedElsewhere => "grants_used_elsewhere",
                GrantState::Expired | GrantState::Minting | GrantState::Issued => "grants_expired",
            });
            tracing::info!(%mac, state = ?v.state, reason = v.reason.as_deref().unwrap_or(""), "grants: settled");
        }
        self.inventory
            .settle_grant(mac, &grant.secret_id_accessor, verdict.as_ref(), now);
        if let Err(e) = self.inventory.flush_if_dirty() {
            tracing::warn!(error = %e, "grants: inventory flush failed");
        }
    }
}

/// How often, and how far apart, a grant is looked up again after the
/// node reported its unwrap failing.
const RECHECKS: u32 = 5;
const RECHECK_PAUSE: std::time::Duration = std::time::Duration::from_millis(400);

fn ticket(grant: &Grant) -> GrantTicket {
    GrantTicket {
        wrapping_accessor: grant.wrapping_accessor.clone(),
        secret_id_accessor: grant.secret_id_accessor.clone(),
        ttl_secs: u32::try_from(grant.expires_at.saturating_sub(grant.issued_at)).unwrap_or(0),
    }
}
