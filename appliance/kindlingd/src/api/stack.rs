//! Handlers for `GET /v1/stack`, `POST /v1/vault/unseal` and
//! `GET /v1/vault/init-secrets`. The logic is `kindling_stack::api`; this file
//! only maps the API's directories onto the stack layout.

use kindling_api::stack::StackStatus;
use kindling_api::vault::{InitSecrets, UnsealProgress};
use kindling_stack::api::{InitSecretsError, StackStatusError, UnsealError};
use kindling_stack::StackLayout;
use std::path::Path;

/// The appliance layout with the API's (overridable) run and state dirs.
fn layout(run_dir: &Path, state_dir: &Path) -> StackLayout {
    StackLayout {
        config_dir: run_dir.join("stack"),
        status_file: run_dir.join("status").join("stack.json"),
        data_dir: state_dir.to_path_buf(),
        ..StackLayout::appliance()
    }
}

/// `GET /v1/stack`: each bootstrap step's state, duration and error.
pub fn get_stack(run_dir: &Path, state_dir: &Path) -> Result<StackStatus, StackStatusError> {
    kindling_stack::api::stack_status(&layout(run_dir, state_dir))
}

/// `POST /v1/vault/unseal` with `{"key": "<one unseal key share>"}`.
pub fn post_unseal(
    run_dir: &Path,
    state_dir: &Path,
    body: &[u8],
) -> Result<UnsealProgress, UnsealError> {
    kindling_stack::api::vault_unseal(&layout(run_dir, state_dir), body)
}

/// `GET /v1/vault/init-secrets`: the age-encrypted unseal keys and root token.
pub fn get_init_secrets(run_dir: &Path, state_dir: &Path) -> Result<InitSecrets, InitSecretsError> {
    kindling_stack::api::init_secrets(&layout(run_dir, state_dir))
}
