//! The PXE service's enrollment hook, implemented with the stack's AppRole
//! grants: each node whose user-data is rendered gets a fresh response-wrapped,
//! single-use secret-id (see `kindling_stack::enroll`).
//!
//! Owns only the adapter between the two crates' types. Must never log a grant.

use kindling_pxe::{EnrollError, Enrollment, EnrollmentSource, MacAddr};
use kindling_site::SiteConfig;
use kindling_stack::enroll::Enroller;
use kindling_stack::StackLayout;
use std::sync::Arc;

struct StackEnrollment {
    enroller: Enroller,
}

impl EnrollmentSource for StackEnrollment {
    fn enroll(&self, mac: &MacAddr, profile: &str) -> Result<Option<Enrollment>, EnrollError> {
        let fail = |reason: String| EnrollError {
            mac: *mac,
            profile: profile.to_string(),
            reason,
        };
        let enroller = self.enroller.clone();
        let (mac_text, profile_text) = (mac.to_string(), profile.to_string());
        // The PXE HTTP workers may or may not run inside an async runtime;
        // `block_on` runs the Vault calls on a thread of their own either way.
        let grant =
            kindling_stack::api::block_on(
                async move { enroller.issue(&mac_text, &profile_text).await },
            )
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?;
        Ok(Some(Enrollment {
            vault_addr: grant.vault_addr,
            role_id: grant.role_id,
            wrapped_secret_id: grant.wrapped_secret_id,
            ca_pem: grant.ca_pem,
        }))
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
