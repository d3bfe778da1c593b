//! The configuration of the `ntp` service (ntpd-rs' `ntp-daemon`): keep the
//! appliance's clock from the site's upstream servers over the uplink, and
//! serve time on the LAN address to the LAN subnet only, rate limited.
//!
//! Owns the shape of `ntp.toml` (see ntp.toml(5) of ntpd-rs 1.9). Pure but
//! for [`write`]; it never starts the daemon (init does).

use kindling_site::SiteConfig;
use serde::Serialize;
use std::path::Path;

/// Clients asking faster than this get a RATE kiss-of-death instead of time.
const RATE_LIMIT_CUTOFF_MS: u32 = 250;
/// Clients remembered for rate limiting (a LAN holds a few thousand nodes).
const RATE_LIMIT_CACHE: u32 = 4096;

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct NtpToml {
    observability: Observability,
    source_defaults: SourceDefaults,
    #[serde(rename = "source", skip_serializing_if = "Vec::is_empty")]
    sources: Vec<Source>,
    synchronization: Synchronization,
    #[serde(rename = "server")]
    servers: Vec<Server>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Observability {
    log_level: &'static str,
    ansi_colors: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct SourceDefaults {
    poll_interval_limits: PollLimits,
    initial_poll_interval: u8,
}

#[derive(Serialize)]
struct PollLimits {
    min: u8,
    max: u8,
}

#[derive(Serialize)]
struct Source {
    mode: &'static str,
    address: String,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Synchronization {
    minimum_agreeing_sources: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Server {
    listen: String,
    allowlist: Filter,
    rate_limiting_cache_size: u32,
    rate_limiting_cutoff_ms: u32,
}

#[derive(Serialize)]
struct Filter {
    filter: Vec<String>,
    action: &'static str,
}

/// `ntp.toml` for `site`.
pub fn render(site: &SiteConfig) -> Result<String, toml::ser::Error> {
    let time = &site.time;
    let lan = site.network.lan.address;
    let min_poll = time.min_poll.min(10);
    let config = NtpToml {
        observability: Observability {
            // As on its command line (service_table.rs).
            log_level: "warn",
            ansi_colors: false,
        },
        source_defaults: SourceDefaults {
            poll_interval_limits: PollLimits {
                min: min_poll,
                max: 10,
            },
            initial_poll_interval: min_poll,
        },
        sources: time
            .sources
            .iter()
            .map(|address| Source {
                mode: "server",
                address: address.clone(),
            })
            .collect(),
        synchronization: Synchronization {
            minimum_agreeing_sources: time.agreeing_sources(),
        },
        servers: vec![Server {
            listen: format!("{}:123", lan.addr()),
            // Anything else is ignored without an answer: the LAN server is
            // for the LAN, and a reply to a spoofed source would be a
            // reflection.
            allowlist: Filter {
                filter: vec![lan.subnet().to_string()],
                action: "ignore",
            },
            rate_limiting_cache_size: RATE_LIMIT_CACHE,
            rate_limiting_cutoff_ms: RATE_LIMIT_CUTOFF_MS,
        }],
    };
    toml::to_string(&config)
}

/// Renders and writes `path` (mode 0644: nothing in it is secret).
pub fn write(site: &SiteConfig, path: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = render(site).context("rendering ntp.toml")?;
    kindling_atomic_write::write_atomic(path, text.as_bytes(), false)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn serves_the_lan_subnet_on_the_lan_address_from_the_site_sources() {
        let mut site = SiteConfig::default();
        site.time.ntp_server = true;
        site.time.sources = vec!["10.0.2.1".into(), "ntp.example.org:1123".into()];
        site.time.min_poll = 2;
        let text = render(&site).unwrap();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        let want: toml::Value = toml::from_str(
            r#"
            [observability]
            log-level = "warn"
            ansi-colors = false
            [source-defaults]
            poll-interval-limits = { min = 2, max = 10 }
            initial-poll-interval = 2
            [[source]]
            mode = "server"
            address = "10.0.2.1"
            [[source]]
            mode = "server"
            address = "ntp.example.org:1123"
            [synchronization]
            minimum-agreeing-sources = 2
            [[server]]
            listen = "192.168.100.1:123"
            allowlist = { filter = ["192.168.100.0/24"], action = "ignore" }
            rate-limiting-cache-size = 4096
            rate-limiting-cutoff-ms = 250
            "#,
        )
        .unwrap();
        assert_eq!(parsed, want, "{text}");
    }

    #[test]
    fn without_sources_it_still_serves_and_waits_for_one_agreeing_source() {
        let text = render(&SiteConfig::default()).unwrap();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(parsed.get("source"), None, "{text}");
        assert_eq!(
            parsed["synchronization"]["minimum-agreeing-sources"].as_integer(),
            Some(1)
        );
    }
}
