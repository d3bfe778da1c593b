//! The hook through which a node's enrollment grant (a response-wrapped
//! Vault AppRole secret-id, with the role-id, Vault's address and CA)
//! reaches its cloud-init user-data, and through which the appliance later
//! asks what became of it.
//!
//! Owns the interface only. The stack side implements it with the
//! enrollment token (see `kindling_stack::enroll`); `grants` decides when a
//! node may have a grant. Nothing here decides, stores or logs a grant.

use kindling_site::MacAddr;
use std::net::Ipv4Addr;

/// One grant to mint: for whom, and the address it will work from.
#[derive(Debug, Clone)]
pub struct GrantRequest<'a> {
    pub mac: MacAddr,
    pub profile: &'a str,
    pub hostname: &'a str,
    /// The address holding the node's DHCP lease: the secret-id and every
    /// token made from it are bound to it (/32).
    pub address: Ipv4Addr,
}

/// What a node needs to authenticate to Vault on first boot, and what the
/// appliance keeps to check on it. `Debug` hides the wrapping token.
#[derive(Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// e.g. `https://192.168.100.1:8200`
    pub vault_addr: String,
    pub role_id: String,
    /// A response-wrapping token around a single-use secret-id: usable once,
    /// by the node, shortly after it fetched its user-data.
    pub wrapped_secret_id: String,
    /// PEM of the CA that signed Vault's certificate, if not publicly trusted.
    pub ca_pem: Option<String>,
    /// The names Vault gives the wrapping token and the secret-id; not
    /// secrets (they can neither unwrap nor log in).
    pub ticket: GrantTicket,
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Enrollment {{ vault_addr: {}, role_id: {}, wrapped_secret_id: <redacted>, ticket: {:?} }}",
            self.vault_addr, self.role_id, self.ticket
        )
    }
}

/// A grant's accessors and life: what the inventory records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantTicket {
    pub wrapping_accessor: String,
    pub secret_id_accessor: String,
    /// Seconds the wrapping token lives.
    pub ttl_secs: u32,
}

/// What Vault says about a grant now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantLookup {
    /// Nobody unwrapped it yet.
    pub wrapping_alive: bool,
    /// Nobody logged in with its secret-id yet.
    pub secret_id_alive: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("enrollment for {mac} (profile {profile}): {reason}")]
pub struct EnrollError {
    pub mac: MacAddr,
    pub profile: String,
    pub reason: String,
}

/// Mints, looks up and withdraws grants.
pub trait EnrollmentSource: Send + Sync {
    /// Whether this source gives grants at all (false: Vault is off, and
    /// user-data goes out without one).
    fn active(&self) -> bool;
    /// A fresh grant. `Ok(None)`: the stack has none to give.
    fn enroll(&self, request: &GrantRequest<'_>) -> Result<Option<Enrollment>, EnrollError>;
    /// What became of a grant of `profile`, by its ticket.
    fn lookup(
        &self,
        mac: MacAddr,
        profile: &str,
        ticket: &GrantTicket,
    ) -> Result<GrantLookup, EnrollError>;
    /// Destroys a grant's secret-id, so whoever holds it cannot log in.
    fn withdraw(
        &self,
        mac: MacAddr,
        profile: &str,
        ticket: &GrantTicket,
    ) -> Result<(), EnrollError>;
    /// Keeps the source's own credential alive (a periodic token).
    fn renew(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The source used when the stack offers none.
pub struct NoEnrollment;

impl EnrollmentSource for NoEnrollment {
    fn active(&self) -> bool {
        false
    }
    fn enroll(&self, _request: &GrantRequest<'_>) -> Result<Option<Enrollment>, EnrollError> {
        Ok(None)
    }
    fn lookup(
        &self,
        mac: MacAddr,
        profile: &str,
        _ticket: &GrantTicket,
    ) -> Result<GrantLookup, EnrollError> {
        Err(EnrollError {
            mac,
            profile: profile.to_string(),
            reason: "this appliance mints no grants (Vault is off)".into(),
        })
    }
    fn withdraw(
        &self,
        _mac: MacAddr,
        _profile: &str,
        _ticket: &GrantTicket,
    ) -> Result<(), EnrollError> {
        Ok(())
    }
}
