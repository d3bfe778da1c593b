//! Vault bodies: `POST /v1/vault/unseal` and `GET /v1/vault/init-secrets`.
//! A key share travels only in [`UnsealRequest`]; no answer ever echoes it,
//! and the init secrets only leave the appliance encrypted.

use serde::{Deserialize, Serialize};

/// `POST /v1/vault/unseal`: one unseal key share.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UnsealRequest {
    pub key: String,
}

impl std::fmt::Debug for UnsealRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A share must not reach a log through a `{:?}`.
        f.debug_struct("UnsealRequest")
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The answer to a share: Vault's seal state after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UnsealProgress {
    pub sealed: bool,
    /// Shares accepted so far towards `threshold`.
    pub progress: u64,
    pub threshold: u64,
    pub shares: u64,
}

/// `GET /v1/vault/init-secrets`: the unseal keys and root token as an armored
/// age file, encrypted to the site's recipients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InitSecrets {
    /// Always `age-armor`.
    pub format: String,
    /// How to decrypt it, for a human reading the raw answer.
    pub note: String,
    pub ciphertext: String,
}
