//! The stack's part of the control API: `GET /v1/stack`,
//! `POST /v1/vault/unseal`, `GET /v1/vault/init-secrets`. Each returns a
//! `kindling_api` body or an error saying which action failed and what kind
//! of failure it is ([`ApiFailure`]); the kindlingd router turns that into an
//! HTTP answer. Owns no socket and chooses no HTTP status. Must never echo a
//! submitted key share or return a secret in clear.

use crate::layout::StackLayout;
use crate::secrets::{SecretStore, SecretsError};
use crate::status;
use crate::vault::{VaultApi, VaultError};
use kindling_api::stack as body;
use kindling_api::vault::{InitSecrets, UnsealProgress, UnsealRequest};
use kindling_api::{ApiFailure, ErrorKind};

/// What the unseal request must look like, quoted in every refusal of a body.
const UNSEAL_BODY: &str = "{\"key\": \"<one unseal key share>\"}";

/// Why an async call could not be run from synchronous code.
#[derive(Debug, thiserror::Error)]
pub enum BlockOnError {
    #[error("starting an async runtime: {0}")]
    StartRuntime(std::io::Error),
    #[error("the request thread panicked")]
    RequestThreadPanicked,
}

/// Runs a future to completion from synchronous code, on its own thread and
/// runtime, so it works whether or not the caller is inside a tokio runtime.
pub fn block_on<F>(future: F) -> Result<F::Output, BlockOnError>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(future))
            .map_err(BlockOnError::StartRuntime)
    })
    .join()
    .map_err(|_| BlockOnError::RequestThreadPanicked)?
}

/// `GET /v1/stack` failed.
#[derive(Debug, thiserror::Error)]
pub enum StackStatusError {
    #[error("the stack bootstrap has not reported yet ({0})")]
    NotReported(status::StatusReadError),
    #[error(transparent)]
    ReadStatusFile(status::StatusReadError),
}

impl ApiFailure for StackStatusError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotReported(_) => ErrorKind::NotFound,
            Self::ReadStatusFile(_) => ErrorKind::Internal,
        }
    }
}

/// `POST /v1/vault/unseal` failed. No variant carries the share.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    #[error("the body is not JSON ({reason}); expected {UNSEAL_BODY}")]
    ParseBody { reason: String },
    #[error("the body must be {UNSEAL_BODY}")]
    ReadKey,
    #[error("Vault rejected the key share: {message}")]
    RejectShare { message: String },
    #[error("{0}")]
    ReachVault(VaultError),
    #[error("{0}")]
    AskVault(VaultError),
    #[error("{0}")]
    RunRequest(BlockOnError),
}

impl ApiFailure for UnsealError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::ParseBody { .. } | Self::ReadKey | Self::RejectShare { .. } => {
                ErrorKind::BadRequest
            }
            Self::ReachVault(_) => ErrorKind::Unavailable,
            // Vault answered, but not as it should: the appliance's side.
            Self::AskVault(_) | Self::RunRequest(_) => ErrorKind::Internal,
        }
    }
}

/// `GET /v1/vault/init-secrets` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitSecretsError {
    #[error("this appliance has not initialised Vault (no encrypted init secrets)")]
    NotInitialised,
    #[error("{0}")]
    ReadSecrets(SecretsError),
}

impl ApiFailure for InitSecretsError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotInitialised => ErrorKind::NotFound,
            Self::ReadSecrets(_) => ErrorKind::Internal,
        }
    }
}

/// `GET /v1/stack`: the bootstrap's status file.
pub fn stack_status(layout: &StackLayout) -> Result<body::StackStatus, StackStatusError> {
    // Judged from the read's own error, not a second look at the path: the
    // file may appear between a failed read and an `exists()` check.
    match status::read(&layout.status_file) {
        Ok(status) => Ok(status),
        Err(e) if e.is_not_found() => Err(StackStatusError::NotReported(e)),
        Err(e) => Err(StackStatusError::ReadStatusFile(e)),
    }
}

/// `POST /v1/vault/unseal` with [`UnsealRequest`]: passes the share to Vault
/// and reports the progress.
pub fn vault_unseal(layout: &StackLayout, body: &[u8]) -> Result<UnsealProgress, UnsealError> {
    let request: UnsealRequest = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            UnsealError::ReadKey
        } else {
            UnsealError::ParseBody {
                reason: e.to_string(),
            }
        }
    })?;
    let key = request.key.trim().to_string();
    if key.is_empty() {
        return Err(UnsealError::ReadKey);
    }
    let url = layout.vault_local_url();
    let answer = block_on(async move {
        let vault = VaultApi::new(&url, None, None)?;
        vault.unseal(&key).await
    })
    .map_err(UnsealError::RunRequest)?;
    match answer {
        Ok(s) => Ok(UnsealProgress {
            sealed: s.sealed,
            progress: s.progress,
            threshold: s.threshold,
            shares: s.shares,
        }),
        Err(VaultError::Api {
            status, message, ..
        }) if status < 500 => Err(UnsealError::RejectShare { message }),
        Err(e @ VaultError::Unreachable { .. }) => Err(UnsealError::ReachVault(e)),
        Err(e) => Err(UnsealError::AskVault(e)),
    }
}

/// `GET /v1/vault/init-secrets`: the armored age file holding the unseal keys
/// and root token, encrypted to the site's recipients.
pub fn init_secrets(layout: &StackLayout) -> Result<InitSecrets, InitSecretsError> {
    let store = SecretStore::new(&layout.state_dir());
    match store.read_init() {
        Ok(Some(bytes)) => Ok(InitSecrets {
            format: "age-armor".to_string(),
            note: "decrypt with the operator's age identity: kindling vault decrypt-init --identity FILE".to_string(),
            ciphertext: String::from_utf8_lossy(&bytes).into_owned(),
        }),
        Ok(None) => Err(InitSecretsError::NotInitialised),
        Err(e) => Err(InitSecretsError::ReadSecrets(e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn layout(dir: &std::path::Path) -> StackLayout {
        StackLayout {
            config_dir: dir.join("run/stack"),
            data_dir: dir.join("data"),
            status_file: dir.join("run/status/stack.json"),
            // Nothing listens here: a request that reached Vault would fail.
            ports: crate::StackPorts {
                vault_local: 1,
                ..Default::default()
            },
            ..StackLayout::appliance()
        }
    }

    #[test]
    fn status_and_init_secrets_before_and_after_they_exist() {
        let dir = tempfile::tempdir().unwrap();
        let l = layout(dir.path());
        assert_eq!(stack_status(&l).unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(init_secrets(&l).unwrap_err().kind(), ErrorKind::NotFound);
        let mut board = crate::status::StatusBoard::new(&l.status_file, &["vault-init"]);
        board.flush().unwrap();
        let r = stack_status(&l).unwrap();
        assert_eq!(r.steps[0].name, "vault-init");
        let wire = serde_json::to_value(&r).unwrap();
        assert_eq!(wire["steps"][0]["name"], "vault-init", "{wire}");
        SecretStore::new(&l.state_dir())
            .write_init("-----BEGIN AGE ENCRYPTED FILE-----\nx\n")
            .unwrap();
        let r = init_secrets(&l).unwrap();
        assert!(r
            .ciphertext
            .starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    }

    #[test]
    fn unseal_rejects_bad_bodies_before_calling_vault() {
        let dir = tempfile::tempdir().unwrap();
        let l = layout(dir.path());
        for body in [&b"not json"[..], br#"{"keys": ["a"]}"#, br#"{"key": "  "}"#] {
            let e = vault_unseal(&l, body).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::BadRequest, "{e}");
            assert!(e
                .to_string()
                .contains("{\"key\": \"<one unseal key share>\"}"));
        }
        // A well-formed request with Vault down is Unavailable (503) naming
        // Vault, not the share.
        let e = vault_unseal(&l, br#"{"key": "c2VjcmV0LXNoYXJl"}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(!e.to_string().contains("c2VjcmV0LXNoYXJl"));
    }
}
