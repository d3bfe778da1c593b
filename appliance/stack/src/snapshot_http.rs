//! The snapshot calls (backups and restores), bytes in and out: Consul's and Vault's snapshot
//! endpoints answer and take binary bodies, which the stack's JSON clients
//! do not carry.
//!
//! Must never put a token or a body in an error.

use std::time::Duration;

/// A service's HTTP address and the token its snapshot endpoints need.
#[derive(Clone)]
pub struct Endpoint {
    pub url: String,
    pub token: String,
    /// PEM of an extra trust anchor (the appliance CA) for an `https` URL.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint {{ url: {}, token: <redacted> }}", self.url)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{action}: {url} is not reachable: {reason}")]
    Unreachable {
        action: String,
        url: String,
        reason: String,
    },
    #[error("{action}: HTTP {status}: {message}")]
    Status {
        action: String,
        status: u16,
        message: String,
    },
    #[error("{action}: {reason}")]
    Client { action: String, reason: String },
}

fn client(endpoint: &Endpoint, action: &str) -> Result<reqwest::Client, HttpError> {
    crate::vault::install_crypto_provider();
    // Snapshots of a large cluster take a while: a generous bound, not none.
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(600));
    if let Some(pem) = &endpoint.ca_pem {
        let cert = reqwest::Certificate::from_pem(pem).map_err(|e| HttpError::Client {
            action: action.into(),
            reason: format!("the CA certificate: {e}"),
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| HttpError::Client {
        action: action.into(),
        reason: e.to_string(),
    })
}

/// One request with `token` in `header`; the answer's bytes on 2xx.
pub async fn exchange(
    endpoint: &Endpoint,
    method: reqwest::Method,
    path: &str,
    header: &'static str,
    body: Option<Vec<u8>>,
    action: &str,
) -> Result<Vec<u8>, HttpError> {
    let url = format!("{}{path}", endpoint.url.trim_end_matches('/'));
    let mut req = client(endpoint, action)?
        .request(method, &url)
        .header(header, &endpoint.token);
    if let Some(b) = body {
        req = req
            .header("Content-Type", "application/octet-stream")
            .body(b);
    }
    let unreachable = |e: reqwest::Error| HttpError::Unreachable {
        action: action.into(),
        url: endpoint.url.clone(),
        reason: crate::vault::error_chain(&e),
    };
    let resp = req.send().await.map_err(unreachable)?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(unreachable)?;
    if !(200..300).contains(&status) {
        return Err(HttpError::Status {
            action: action.into(),
            status,
            message: String::from_utf8_lossy(&bytes)
                .trim()
                .chars()
                .take(300)
                .collect(),
        });
    }
    Ok(bytes.to_vec())
}
