//! The HTTP client Consul and Nomad are both spoken to with: their agent's
//! `/v1/` API at a base URL, an optional ACL token in the service's own
//! header, a 30 s timeout and no proxy.
//!
//! Owns no state and knows no endpoint: `consul` and `nomad` build requests
//! and read answers. Must never put the token in an error or `Debug` output.

use crate::vault::error_chain;
use std::time::Duration;

/// A service's agent API as one client sees it.
#[derive(Clone)]
pub(crate) struct AgentHttp {
    url: String,
    http: reqwest::Client,
    token: Option<String>,
    /// The header the token travels in (`X-Consul-Token`, `X-Nomad-Token`).
    token_header: &'static str,
}

/// What the agent answered.
pub(crate) struct Answer {
    pub status: u16,
    /// The `X-Consul-Index` header; 0 without one.
    pub index: u64,
    pub text: String,
}

/// The request got no answer: the agent at `url` is not reachable.
pub(crate) struct Unreachable {
    pub url: String,
    pub reason: String,
}

impl AgentHttp {
    pub fn new(url: &str, token: Option<String>, token_header: &'static str) -> Self {
        crate::vault::install_crypto_provider();
        // Building a plain client only fails without a TLS backend, which the
        // provider above rules out; fall back to the default client regardless.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            url: url.trim_end_matches('/').to_string(),
            http,
            token,
            token_header,
        }
    }

    /// The same agent over mutual TLS: trusting `ca` (PEM file) and showing
    /// the certificate and key in `identity` (PEM files).
    pub fn with_tls(
        &self,
        ca: &std::path::Path,
        identity: (&std::path::Path, &std::path::Path),
    ) -> Result<Self, String> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))
        };
        let root = reqwest::Certificate::from_pem(&read(ca)?)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
        let mut pem = read(identity.1)?;
        pem.extend_from_slice(&read(identity.0)?);
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| format!("{}: {e}", identity.0.display()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .tls_certs_only([root])
            .identity(id)
            .build()
            .map_err(|e| format!("building the TLS client: {e}"))?;
        Ok(Self {
            http,
            ..self.clone()
        })
    }

    /// The same agent with another token.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One request to `/v1/<path>` with the token; the body as is.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer, Unreachable> {
        let mut req = self.http.request(
            method,
            format!("{}/v1/{}", self.url, path.trim_start_matches('/')),
        );
        if let Some(t) = &self.token {
            req = req.header(self.token_header, t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(|e| Unreachable {
            url: self.url.clone(),
            reason: error_chain(&e),
        })?;
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        Ok(Answer {
            status,
            index,
            text: resp.text().await.unwrap_or_default(),
        })
    }
}
