//! The effective site configuration for kindlingd's roles: the one loader,
//! `kindling_site::effective`, at its default path (`$KINDLING_SITE_JSON`,
//! else `/run/kindling/site.json`). Never reads the file any other way.

use kindling_site::SiteConfig;
use std::path::PathBuf;

/// `$KINDLING_SITE_JSON`, else `/run/kindling/site.json`.
pub fn effective_path() -> PathBuf {
    kindling_site::effective::default_path()
}

/// The effective config at [`effective_path`]; the error names the file.
pub fn load_effective() -> Result<SiteConfig, kindling_site::effective::LoadEffectiveError> {
    kindling_site::effective::load_default()
}
