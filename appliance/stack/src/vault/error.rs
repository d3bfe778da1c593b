//! Vault errors and how Vault's and reqwest's failures read as one line.
//!
//! Owns `VaultError` and the conversions into it. Must never put a request
//! body into an error: only the action, the status and Vault's own text.

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("Vault at {url} is not reachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Vault {action}: HTTP {status}: {message}")]
    Api {
        action: String,
        status: u16,
        message: String,
    },
    #[error("Vault {action}: {reason}")]
    Client { action: String, reason: String },
    #[error("Vault {action}: unexpected answer: {reason}")]
    Unexpected { action: String, reason: String },
}

pub(super) fn api_err(action: &str, e: vaultrs::error::ClientError) -> VaultError {
    match e {
        vaultrs::error::ClientError::APIError { code, errors } => VaultError::Api {
            action: action.to_string(),
            status: code,
            message: errors.join("; "),
        },
        other => VaultError::Client {
            action: action.to_string(),
            reason: other.to_string(),
        },
    }
}

/// Vault's `{"errors": [...]}` as one line.
pub fn error_text(v: &Value) -> String {
    match v.get("errors").and_then(Value::as_array) {
        Some(errs) if !errs.is_empty() => errs
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("; "),
        _ => match v {
            Value::String(s) => s.trim().to_string(),
            Value::Null => "(empty answer)".into(),
            other => other.to_string().chars().take(200).collect(),
        },
    }
}

/// reqwest's error with its sources ("connection refused" is several levels down).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
