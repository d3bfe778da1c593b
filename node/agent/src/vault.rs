//! HTTP to the appliance: one reqwest client (the appliance CA as the only
//! extra trust anchor, connections from the node's own address when asked)
//! and typed vaultrs clients over it.
//!
//! Must never put a token or a request body into an error: only the action
//! and Vault's own text.

use crate::error::StepError;
use std::net::IpAddr;
use std::time::Duration;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

/// The client every request of a run goes through. `source` binds the
/// local address (the node's leased one, which its secret-id is bound to).
pub fn http_client(
    ca_pem: Option<&[u8]>,
    source: Option<IpAddr>,
) -> Result<reqwest::Client, StepError> {
    // Errors only if a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy();
    if let Some(pem) = ca_pem {
        let cert = reqwest::Certificate::from_pem(pem)
            .map_err(|e| StepError::Http(format!("the appliance CA certificate: {e}")))?;
        // The appliance's CA only: the agent talks to nothing else over
        // TLS, and a minimal node may have no system trust store at all.
        builder = builder.tls_certs_only([cert]);
    }
    if let Some(ip) = source {
        builder = builder.local_address(ip);
    }
    builder
        .build()
        .map_err(|e| StepError::Http(format!("building the HTTP client: {}", chain(&e))))
}

/// A vaultrs client for `addr` with `token`, over `http`.
pub fn client(addr: &str, token: &str, http: &reqwest::Client) -> Result<VaultClient, StepError> {
    let settings = |address: &str| {
        VaultClientSettingsBuilder::default()
            .address(address)
            .token(token)
            .verify(true)
            .build()
            .map_err(|e| StepError::Vault(format!("Vault client for {addr}: {e}")))
    };
    // vaultrs builds a reqwest client of its own, which for an https
    // address loads the system's trust store and fails where there is none
    // (a minimal node). Built for the plain-http form of the address it
    // skips that; then every request goes to `addr` through `http`, which
    // carries the appliance CA and the source address.
    let plain = addr.replacen("https://", "http://", 1);
    let mut client = VaultClient::new(settings(&plain)?)
        .map_err(|e| error(&format!("Vault client for {addr}"), e))?;
    client.settings = settings(addr)?;
    client.http.base = client.settings.address.to_string();
    client.http.http = http.clone();
    Ok(client)
}

/// Vault's answer as one line naming `action`.
pub fn error(action: &str, e: ClientError) -> StepError {
    StepError::Vault(match e {
        ClientError::APIError { code, errors } => {
            format!("Vault {action}: HTTP {code}: {}", errors.join("; "))
        }
        other => format!("Vault {action}: {}", chain(&other)),
    })
}

/// Whether Vault answered `status`.
pub fn is_status(e: &ClientError, status: u16) -> bool {
    matches!(e, ClientError::APIError { code, .. } if *code == status)
}

/// An error with its sources ("connection refused" is several levels down).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
