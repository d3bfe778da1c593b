//! The stack's part of the status API as plain functions returning
//! (HTTP status, JSON): `GET /v1/stack`, `POST /v1/vault/unseal`,
//! `GET /v1/vault/init-secrets`. The kindlingd router calls them; they own no
//! socket. Must never echo a submitted key share or return a secret in clear.

use crate::layout::StackLayout;
use crate::secrets::SecretStore;
use crate::vault::VaultApi;
use serde_json::{json, Value};

/// One API answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiReply {
    pub status: u16,
    pub body: Value,
}

fn reply(status: u16, body: Value) -> ApiReply {
    ApiReply { status, body }
}

fn error(status: u16, message: impl Into<String>) -> ApiReply {
    reply(status, json!({ "error": message.into() }))
}

/// Runs a future to completion from synchronous code, on its own thread and
/// runtime, so it works whether or not the caller is inside a tokio runtime.
pub fn block_on<F>(future: F) -> Result<F::Output, String>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(future))
            .map_err(|e| format!("starting an async runtime: {e}"))
    })
    .join()
    .map_err(|_| "the request thread panicked".to_string())?
}

/// `GET /v1/stack`: the bootstrap's status file.
pub fn stack_status(layout: &StackLayout) -> ApiReply {
    match crate::status::read(&layout.status_file) {
        Ok(status) => reply(200, serde_json::to_value(status).unwrap_or(Value::Null)),
        Err(e) if !layout.status_file.exists() => error(
            404,
            format!("the stack bootstrap has not reported yet ({e})"),
        ),
        Err(e) => error(500, e),
    }
}

/// `POST /v1/vault/unseal` with `{"key": "<one unseal key share>"}`: passes
/// the share to Vault and reports the progress.
pub fn vault_unseal(layout: &StackLayout, body: &[u8]) -> ApiReply {
    let key = match serde_json::from_slice::<Value>(body) {
        Ok(v) => match v.get("key").and_then(Value::as_str) {
            Some(k) if !k.trim().is_empty() => k.trim().to_string(),
            _ => {
                return error(
                    400,
                    "the body must be {\"key\": \"<one unseal key share>\"}",
                )
            }
        },
        Err(e) => {
            return error(
                400,
                format!(
                    "the body is not JSON ({e}); expected {{\"key\": \"<one unseal key share>\"}}"
                ),
            )
        }
    };
    let url = layout.vault_local_url();
    let result = block_on(async move {
        let vault = VaultApi::new(&url, None, None)?;
        vault.unseal(&key).await
    });
    match result {
        Ok(Ok(s)) => reply(
            200,
            json!({"sealed": s.sealed, "progress": s.progress, "threshold": s.threshold, "shares": s.shares}),
        ),
        Ok(Err(crate::vault::VaultError::Api {
            status, message, ..
        })) if status < 500 => error(400, format!("Vault rejected the key share: {message}")),
        Ok(Err(e @ crate::vault::VaultError::Unreachable { .. })) => error(503, e.to_string()),
        Ok(Err(e)) => error(502, e.to_string()),
        Err(e) => error(500, e),
    }
}

/// `GET /v1/vault/init-secrets`: the armored age file holding the unseal keys
/// and root token, encrypted to the site's recipients.
pub fn init_secrets(layout: &StackLayout) -> ApiReply {
    let store = SecretStore::new(&layout.state_dir());
    match store.read_init() {
        Ok(Some(bytes)) => reply(
            200,
            json!({
                "format": "age-armor",
                "note": "decrypt with the operator's age identity: kindling vault decrypt-init --identity FILE",
                "ciphertext": String::from_utf8_lossy(&bytes),
            }),
        ),
        Ok(None) => error(
            404,
            "this appliance has not initialised Vault (no encrypted init secrets)",
        ),
        Err(e) => error(500, e.to_string()),
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
                vault_api: 1,
                ..Default::default()
            },
            ..StackLayout::appliance()
        }
    }

    #[test]
    fn status_and_init_secrets_before_and_after_they_exist() {
        let dir = tempfile::tempdir().unwrap();
        let l = layout(dir.path());
        assert_eq!(stack_status(&l).status, 404);
        assert_eq!(init_secrets(&l).status, 404);
        let mut board = crate::status::StatusBoard::new(&l.status_file, &["vault-init"]);
        board.flush().unwrap();
        let r = stack_status(&l);
        assert_eq!(
            (r.status, r.body["steps"][0]["name"].as_str()),
            (200, Some("vault-init"))
        );
        SecretStore::new(&l.state_dir())
            .write_init("-----BEGIN AGE ENCRYPTED FILE-----\nx\n")
            .unwrap();
        let r = init_secrets(&l);
        assert_eq!(r.status, 200);
        assert!(r.body["ciphertext"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    }

    #[test]
    fn unseal_rejects_bad_bodies_before_calling_vault() {
        let dir = tempfile::tempdir().unwrap();
        let l = layout(dir.path());
        for body in [&b"not json"[..], br#"{"keys": ["a"]}"#, br#"{"key": "  "}"#] {
            let r = vault_unseal(&l, body);
            assert_eq!(r.status, 400, "{:?}", r.body);
            assert!(r.body["error"]
                .as_str()
                .unwrap()
                .contains("{\"key\": \"<one unseal key share>\"}"));
        }
        // A well-formed request with Vault down is a 503 naming Vault, not the share.
        let r = vault_unseal(&l, br#"{"key": "c2VjcmV0LXNoYXJl"}"#);
        assert_eq!(r.status, 503, "{:?}", r.body);
        assert!(!r.body.to_string().contains("c2VjcmV0LXNoYXJl"));
    }
}
