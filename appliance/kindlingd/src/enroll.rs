//! The PXE service's enrollment hook, implemented with the stack's AppRole
//! grants (see `kindling_stack::enroll`): a response-wrapped, single-use
//! secret-id bound to the node's leased address, minted with the
//! enrollment token; lookups of what became of it; withdrawal.
//!
//! Owns only the adapter between the two crates' types. Must never log a grant.

use kindling_pxe::enroll::{GrantLookup, GrantRequest, GrantTicket};
use kindling_pxe::{EnrollError, Enrollment, EnrollmentSource, MacAddr};
use kindling_site::SiteConfig;
use kindling_stack::enroll::Enroller;
use kindling_stack::StackLayout;
use std::future::Future;
use std::sync::Arc;

struct StackEnrollment {
    enroller: Enroller,
}

/// Runs one of the enroller's calls to completion. The PXE HTTP workers
/// may or may not run inside an async runtime; `block_on` runs the Vault
/// calls on a thread of their own either way.
fn run<F, T, E>(mac: MacAddr, profile: &str, call: F) -> Result<T, EnrollError>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let fail = |reason: String| EnrollError {
        mac,
        profile: profile.to_string(),
        reason,
    };
    kindling_stack::api::block_on(call)
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.to_string()))
}

impl EnrollmentSource for StackEnrollment {
    fn active(&self) -> bool {
        true
    }

    fn enroll(&self, request: &GrantRequest<'_>) -> Result<Option<Enrollment>, EnrollError> {
        let (mac, profile, hostname) = (
            request.mac.to_string(),
            request.profile.to_string(),
            request.hostname.to_string(),
        );
        let address = request.address;
        let ttl_secs = self.enroller.grant_ttl_secs();
        let enroller = self.enroller.clone();
        let grant = run(request.mac, request.profile, async move {
            enroller
                .issue(&kindling_stack::enroll::GrantRequest {
                    mac: &mac,
                    profile: &profile,
                    hostname: &hostname,
                    address,
                })
                .await
        })?;
        Ok(Some(Enrollment {
            vault_addr: grant.vault_addr,
            role_id: grant.role_id,
            wrapped_secret_id: grant.wrapped_secret_id,
            ca_pem: grant.ca_pem,
            ticket: GrantTicket {
                wrapping_accessor: grant.wrapping_accessor,
                secret_id_accessor: grant.secret_id_accessor,
                ttl_secs,
            },
        }))
    }

    fn lookup(
        &self,
        mac: MacAddr,
        profile: &str,
        ticket: &GrantTicket,
    ) -> Result<GrantLookup, EnrollError> {
        let (p, m, w, s) = (
            profile.to_string(),
            mac.to_string(),
            ticket.wrapping_accessor.clone(),
            ticket.secret_id_accessor.clone(),
        );
        let enroller = self.enroller.clone();
        let seen = run(mac, profile, async move {
            enroller.lookup(&p, &m, &w, &s).await
        })?;
        Ok(GrantLookup {
            wrapping_alive: seen.wrapping_alive,
            secret_id_alive: seen.secret_id_alive,
        })
    }

    fn withdraw(
        &self,
        mac: MacAddr,
        profile: &str,
        ticket: &GrantTicket,
    ) -> Result<(), EnrollError> {
        let (p, m, s) = (
            profile.to_string(),
            mac.to_string(),
            ticket.secret_id_accessor.clone(),
        );
        let enroller = self.enroller.clone();
        run(
            mac,
            profile,
            async move { enroller.withdraw(&p, &m, &s).await },
        )
    }

    fn renew(&self) -> Result<(), String> {
        let enroller = self.enroller.clone();
        kindling_stack::api::block_on(async move { enroller.renew_token().await })
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// The enrollment source for this site: AppRole grants when Vault is
/// enabled, none otherwise.
pub fn source(site: &SiteConfig) -> Arc<dyn EnrollmentSource> {
    match Enroller::new(site, &StackLayout::appliance()) {
        Some(enroller) => Arc::new(StackEnrollment { enroller }),
        None => Arc::new(kindling_pxe::enroll::NoEnrollment),
    }
}
