//! The lifecycle of a node's enrollment grant, as pure decisions: what
//! Vault's answer about a grant means ([`assess`]), and how alerts are kept
//! ([`raise`]). The inventory applies them under its lock
//! (`Inventory::claim_grant` and friends); the PXE service asks Vault.
//!
//! One grant per provisioning cycle: minted on the lease holder's first
//! user-data fetch, then `issued` until the appliance sees it `redeemed`
//! (its secret-id logged in, which Vault allows only from the bound
//! address), `expired` (not redeemed in its life) or `used-elsewhere`
//! (unwrapped by someone else while alive). Only a re-arm
//! (`reprovision`) starts a new cycle.

use kindling_api::nodes::{AlertKind, Grant, GrantState, NodeAlert};
use kindling_site::enrollment::SECRET_ID_OUTLIVES_GRANT_SECS;

/// What Vault says about a grant now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The wrapping token still exists: nobody unwrapped it.
    pub wrapping_alive: bool,
    /// The secret-id still exists: nobody logged in with it.
    pub secret_id_alive: bool,
}

/// What the appliance concludes about an issued grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub state: GrantState,
    pub reason: Option<String>,
    /// The alert to raise, if any.
    pub alert: Option<AlertKind>,
    /// Destroy the secret-id: nobody should log in with it any more.
    pub withdraw: bool,
}

/// What `seen` means for `grant` at `now`; `node_failed` is true when the
/// node itself just reported that unwrapping its grant failed. `None`:
/// nothing to conclude yet (it stays `issued`). Only `issued` grants are
/// assessed.
pub fn assess(grant: &Grant, seen: Seen, node_failed: bool, now: u64) -> Option<Verdict> {
    if grant.state != GrantState::Issued {
        return None;
    }
    let alive = now < grant.expires_at;
    // Within this, a secret-id that is gone was used to log in; later it
    // would be gone anyway.
    let secret_id_life = grant.expires_at + u64::from(SECRET_ID_OUTLIVES_GRANT_SECS);
    let ttl = grant.expires_at.saturating_sub(grant.issued_at);
    let verdict = |state, reason: String, alert| {
        Some(Verdict {
            state,
            reason: Some(reason),
            alert,
            withdraw: true,
        })
    };
    match (seen.wrapping_alive, seen.secret_id_alive) {
        // The single-use secret-id logged in, which its CIDR binding allows
        // only from the node's address. (Vault retires a used wrapping token
        // a moment after the unwrap: it may still be listed.)
        (_, false) if now < secret_id_life => Some(Verdict {
            state: GrantState::Redeemed,
            reason: None,
            alert: None,
            withdraw: false,
        }),
        (_, false) => verdict(
            GrantState::Expired,
            format!("checked only {}s after its life ended: its secret-id is gone, but would have expired by now anyway, so whether it was used cannot be told", now.saturating_sub(grant.expires_at)),
            Some(AlertKind::GrantExpired),
        ),
        (false, true) if node_failed && alive => verdict(
            GrantState::UsedElsewhere,
            format!(
                "the node could not unwrap its grant {}s after it was issued, but the wrapping token was already gone: someone else unwrapped it; the secret-id was destroyed (it would have worked only from {} anyway)",
                now.saturating_sub(grant.issued_at),
                grant.address
            ),
            Some(AlertKind::GrantUsedElsewhere),
        ),
        (false, true) if !alive => verdict(
            GrantState::Expired,
            format!(
                "not redeemed within its {ttl}s life: it was unwrapped, but its secret-id never logged in from {}{}; the secret-id was destroyed",
                grant.address,
                if node_failed { " (the node reported its unwrap failing)" } else { "" }
            ),
            Some(AlertKind::GrantExpired),
        ),
        // Unwrapped, not yet logged in, still alive: the node is between
        // the two steps. Wait.
        (false, true) => None,
        (true, true) if !alive => verdict(
            GrantState::Expired,
            format!("not unwrapped within its {ttl}s life; the secret-id was destroyed"),
            Some(AlertKind::GrantExpired),
        ),
        // Alive and untouched. A node that says its unwrap failed while
        // Vault still lists the wrapping token is asked about again.
        (true, true) => None,
    }
}

/// Raises `kind` on `alerts`: one entry per kind, counting repeats and
/// keeping the newest detail.
pub fn raise(alerts: &mut Vec<NodeAlert>, kind: AlertKind, detail: String, now: u64) {
    match alerts.iter_mut().find(|a| a.kind == kind) {
        Some(a) => {
            a.at = now;
            a.count += 1;
            a.detail = detail;
        }
        None => {
            alerts.push(NodeAlert {
                kind,
                at: now,
                count: 1,
                detail,
            });
            alerts.sort_by_key(|a| a.kind);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::Ipv4Addr;

    fn issued() -> Grant {
        Grant {
            state: GrantState::Issued,
            profile: "dev".into(),
            address: Ipv4Addr::new(192, 168, 100, 101),
            issued_at: 1000,
            expires_at: 1300,
            unknown_mac: false,
            wrapping_accessor: "w".into(),
            secret_id_accessor: "s".into(),
            checked_at: None,
            reason: None,
        }
    }

    fn seen(wrapping_alive: bool, secret_id_alive: bool) -> Seen {
        Seen {
            wrapping_alive,
            secret_id_alive,
        }
    }

    /// (wrapping alive, secret-id alive, node reported failure, now) → state.
    #[test]
    fn the_whole_table() {
        use GrantState::*;
        let rows: &[(bool, bool, bool, u64, Option<GrantState>)] = &[
            (true, true, false, 1100, None),
            (true, true, true, 1100, None),
            (true, true, false, 1300, Some(Expired)),
            (false, true, false, 1100, None),
            (false, true, true, 1100, Some(UsedElsewhere)),
            (false, true, false, 1300, Some(Expired)),
            (false, true, true, 1300, Some(Expired)),
            (false, false, false, 1100, Some(Redeemed)),
            (false, false, true, 1100, Some(Redeemed)),
            (false, false, false, 1899, Some(Redeemed)),
            (false, false, false, 1900, Some(Expired)),
            (true, false, false, 1100, Some(Redeemed)),
            (true, false, false, 1900, Some(Expired)),
        ];
        for (i, (w, s, failed, now, want)) in rows.iter().enumerate() {
            let got = assess(&issued(), seen(*w, *s), *failed, *now);
            assert_eq!(got.as_ref().map(|v| v.state), *want, "row {i}");
            if let Some(v) = got {
                assert_eq!(
                    v.withdraw,
                    v.state != Redeemed,
                    "row {i}: a grant not redeemed is withdrawn"
                );
                assert_eq!(v.alert.is_some(), v.state != Redeemed, "row {i}");
            }
        }
    }

    #[test]
    fn only_issued_grants_are_assessed() {
        let mut g = issued();
        g.state = GrantState::Redeemed;
        assert_eq!(assess(&g, seen(false, true), true, 1100), None);
    }

    #[test]
    fn used_elsewhere_says_where_it_was_bound() {
        let v = assess(&issued(), seen(false, true), true, 1030).unwrap();
        let reason = v.reason.unwrap();
        assert!(reason.contains("30s after it was issued"), "{reason}");
        assert!(reason.contains("192.168.100.101"), "{reason}");
        assert_eq!(v.alert, Some(AlertKind::GrantUsedElsewhere));
    }

    #[test]
    fn alerts_are_one_per_kind_and_count() {
        let mut alerts = Vec::new();
        raise(&mut alerts, AlertKind::GrantReused, "a".into(), 1);
        raise(&mut alerts, AlertKind::GrantExpired, "b".into(), 2);
        raise(&mut alerts, AlertKind::GrantReused, "c".into(), 3);
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].kind, AlertKind::GrantReused);
        assert_eq!((alerts[0].count, alerts[0].at), (2, 3));
        assert_eq!(alerts[0].detail, "c");
    }
}
