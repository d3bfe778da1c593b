//! Enrollment grants: how long the response-wrapped AppRole secret-id a
//! node's user-data carries stays unwrappable (`[enrollment]` in site.toml),
//! and whether MACs the site does not name get one (`[enrollment]` in a
//! profile).
//!
//! Owns these settings' shape and their bounds only; minting, binding and
//! checking grants is the PXE service's and the stack's job. The secure
//! choice is the `Default`: a short life, and no grant for an unknown MAC.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How much longer than its grant's wrapping token a secret-id lives. The
/// stack mints secret-ids with this much more life; the appliance relies on
/// it: within it, a grant's secret-id that is gone was used to log in.
pub const SECRET_ID_OUTLIVES_GRANT_SECS: u32 = 600;

/// Shortest and longest grant life a site may choose, in seconds.
pub const GRANT_TTL_RANGE: std::ops::RangeInclusive<u32> = 30..=3600;

/// `[enrollment]` in site.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentConfig {
    /// Seconds a node's grant (the response-wrapping token around its
    /// single-use secret-id) can be unwrapped after the node fetched its
    /// user-data: 30 to 3600, default 300. Vault refuses to mint a grant
    /// that lives longer (the enrollment token's policy carries this as
    /// `max_wrapping_ttl`, rewritten by the stack bootstrap at each boot).
    #[serde(default)]
    #[schemars(with = "u32", range(min = 30, max = 3600))]
    pub grant_ttl_secs: GrantTtl,
}

/// A grant's life: 30 to 3600 seconds ([`GRANT_TTL_RANGE`]), by construction.
/// (Its schema is the field's: an integer in that range.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct GrantTtl(u32);

impl GrantTtl {
    pub fn secs(self) -> u32 {
        self.0
    }
}

/// Five minutes: time enough to unwrap right after first boot, short
/// enough that a leaked user-data is soon worthless.
impl Default for GrantTtl {
    fn default() -> Self {
        Self(300)
    }
}

impl TryFrom<u32> for GrantTtl {
    type Error = String;
    fn try_from(secs: u32) -> Result<Self, String> {
        if GRANT_TTL_RANGE.contains(&secs) {
            Ok(Self(secs))
        } else {
            Err(format!(
                "grant_ttl_secs = {secs}: a grant lives {} to {} seconds",
                GRANT_TTL_RANGE.start(),
                GRANT_TTL_RANGE.end()
            ))
        }
    }
}

impl From<GrantTtl> for u32 {
    fn from(ttl: GrantTtl) -> u32 {
        ttl.0
    }
}

/// `[enrollment]` in a profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileEnrollment {
    /// How many MACs the site does not name (no `[[nodes]]` entry and no
    /// runtime assignment) may receive a grant in this profile, counted
    /// over the appliance's inventory. 0, the default: none. Such a node
    /// still gets its user-data, without the grant, so an installer can
    /// run; `kindling node assign MAC PROFILE` makes it known.
    #[serde(default)]
    pub unknown_macs: u32,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn grant_ttl_is_bounded_and_defaults_short() {
        assert_eq!(GrantTtl::default().secs(), 300);
        assert!(GrantTtl::try_from(29).is_err());
        assert!(GrantTtl::try_from(3601).is_err());
        assert_eq!(GrantTtl::try_from(30).unwrap().secs(), 30);
        let c: EnrollmentConfig = serde_json::from_str(r#"{"grant_ttl_secs": 120}"#).unwrap();
        assert_eq!(c.grant_ttl_secs.secs(), 120);
        let e = serde_json::from_str::<EnrollmentConfig>(r#"{"grant_ttl_secs": 0}"#).unwrap_err();
        assert!(e.to_string().contains("30 to 3600"), "{e}");
        assert!(serde_json::from_str::<EnrollmentConfig>(r#"{"ttl": 5}"#).is_err());
    }

    #[test]
    fn unknown_macs_get_nothing_by_default() {
        assert_eq!(ProfileEnrollment::default().unknown_macs, 0);
        assert!(serde_json::from_str::<ProfileEnrollment>(r#"{"unknown": 1}"#).is_err());
    }
}
