//! Reading the effective site configuration that `kindlingd config apply` wrote.

use kindling_site::SiteConfig;
use std::path::PathBuf;

/// `/run/kindling/site.json`, or `$KINDLING_SITE_JSON`.
pub fn effective_path() -> PathBuf {
    std::env::var_os("KINDLING_SITE_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/kindling/site.json"))
}

pub fn load_effective() -> anyhow::Result<SiteConfig> {
    let path = effective_path();
    let bytes =
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a valid site config: {e}", path.display()))
}
