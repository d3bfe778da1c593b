//! Fetching a channel's files (`CHANNEL.json`, its `.minisig`, bundles)
//! from the directory URL the site names, over plain HTTP or HTTPS.
//!
//! Nothing fetched is believed: the index's minisign signature and the
//! sha256 it names for each bundle decide (`crate::poll`). So HTTPS here
//! hides what is asked from the path but does not authenticate the
//! server (no CA is pinned or bundled): a mirror may be any static server
//! with any certificate, and a forged one gains nothing but a refusal.
//!
//! Owns the one HTTP client the update agent has; never writes anything.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// Where the files come from: the real thing is [`HttpSource`]; tests may
/// give the poll anything that reads.
pub trait Source {
    /// `name` (a plain file name beside the index), at most `limit` bytes.
    fn get(&self, name: &str, limit: u64) -> Result<Fetched, FetchError>;
    /// Where `name` is, for messages.
    fn location(&self, name: &str) -> String;
}

/// One file being fetched.
pub struct Fetched {
    /// The length the server declared, when it did.
    pub length: Option<u64>,
    pub body: Box<dyn Read + Send>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: the server declares {length} bytes, more than {limit} allowed")]
    TooLarge {
        url: String,
        length: u64,
        limit: u64,
    },
}

/// Longest wait to connect, and between two reads of a body.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A channel directory at an `http://` or `https://` URL.
pub struct HttpSource {
    base: String,
    agent: ureq::Agent,
}

impl HttpSource {
    /// `base`: the site's `update.url` (a trailing `/` is added if absent).
    pub fn new(base: &str) -> Self {
        let base = if base.ends_with('/') {
            base.to_string()
        } else {
            format!("{base}/")
        };
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            // The signature is the trust (module doc); the appliance has
            // no CA for the operator's mirror.
            .disable_verification(true)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(READ_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .max_redirects(3)
            .user_agent(concat!("kindling-update/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Self { base, agent }
    }
}

impl Source for HttpSource {
    fn location(&self, name: &str) -> String {
        format!("{}{name}", self.base)
    }

    fn get(&self, name: &str, limit: u64) -> Result<Fetched, FetchError> {
        let url = self.location(name);
        let transport = |e: ureq::Error| FetchError::Transport {
            url: url.clone(),
            reason: e.to_string(),
        };
        let response = self.agent.get(&url).call().map_err(transport)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status { url, status });
        }
        let length = response.body().content_length();
        if let Some(length) = length.filter(|l| *l > limit) {
            return Err(FetchError::TooLarge { url, length, limit });
        }
        // One byte over the limit is read so the caller sees "too much"
        // rather than a silently cut file.
        let body = response
            .into_body()
            .into_with_config()
            .limit(limit.saturating_add(1))
            .reader();
        Ok(Fetched {
            length,
            body: Box::new(body),
        })
    }
}
