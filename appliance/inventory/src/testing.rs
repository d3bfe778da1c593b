//! Test fixtures for this crate and for the PXE service built on it: the lab
//! overlay's effective site config and the profile policy it gives. Compiled
//! only for tests or with the `testing` feature; never part of the appliance.
#![allow(clippy::expect_used)]

use crate::policy::ProfilePolicy;
use kindling_site::SiteConfig;

/// The lab overlay's effective config, read the way the appliance does.
pub fn lab_site() -> SiteConfig {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../overlays/lab");
    kindling_site::SiteTree::read_dir(&dir)
        .expect("the lab overlay reads")
        .to_config("lab")
        .expect("the lab overlay is a valid site")
        .config
}

/// The profile policy of the lab overlay.
pub fn lab_policy() -> ProfilePolicy {
    ProfilePolicy::from_site(&lab_site())
}
