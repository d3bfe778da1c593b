//! Why a bootstrap step failed: [`StepError`] says which action inside the
//! step failed, with the endpoint, Vault path or file it was about (the step
//! itself is named by `BootstrapError` in the bootstrap module).
//!
//! Owns the wording operators read in the status file and on the console.
//! Must never carry a secret: variants hold paths, KV locations, HTTP codes
//! and the errors of the API clients, which never include a token.

use super::policies::KV_MOUNT;
use crate::consul::ConsulError;
use crate::nomad::NomadError;
use crate::render::RenderError;
use crate::secrets::SecretsError;
use crate::vault::VaultError;
use std::path::PathBuf;

/// Why one step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A Vault API call (the error names the call and the address).
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// A Consul API call (the error names the call and the address).
    #[error(transparent)]
    Consul(#[from] ConsulError),
    /// A Nomad API call (the error names the call and the address).
    #[error(transparent)]
    Nomad(#[from] NomadError),
    /// Reading or writing kindling's own state on the data partition (the
    /// error names the file).
    #[error(transparent)]
    StateFile(#[from] SecretsError),
    /// Rendering a config file or a key the services read (the error names
    /// the file).
    #[error(transparent)]
    RenderFile(#[from] RenderError),

    #[error("Vault's API did not answer within {secs} s: {last}{hint}")]
    WaitVaultApi {
        secs: u64,
        last: String,
        hint: &'static str,
    },
    #[error("Consul's API did not answer with a leader and ACLs out of legacy mode within {secs} s: {last}")]
    WaitConsulApi { secs: u64, last: String },
    /// Another step failed while this one was only waiting.
    #[error("stopped waiting for {what}: another step failed")]
    StoppedWaiting { what: &'static str },
    #[error("Vault health answered HTTP {0}")]
    VaultHealth(u16),
    #[error(
        "Vault is initialised, but this appliance crashed before it saved the answer to {secrets_file}: the keys are lost. \
         Nothing was changed; to start over, wipe {vault_data} and reboot"
    )]
    InitAnswerLost {
        secrets_file: PathBuf,
        vault_data: PathBuf,
    },
    #[error(
        "Vault is already initialised, but not by this appliance (no {secrets_file}): kindling will not touch it. \
         Restore that file, or wipe {vault_data} to let kindling initialise a new Vault"
    )]
    InitForeignVault {
        secrets_file: PathBuf,
        vault_data: PathBuf,
    },
    #[error("moving the old {path} aside: {source}")]
    SetOldSecretsAside {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the data partition cannot take Vault's encrypted keys ({path}): {source}; Vault was not initialised")]
    ProbeSecretsSpace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Vault stays in standby; this appliance runs a single Vault node")]
    VaultStaysStandby,
    #[error("Vault reports it is not initialised")]
    VaultNotInitialised,
    #[error("Vault is still sealed after submitting {keys}")]
    StillSealed { keys: &'static str },
    #[error("Vault rejected {keys}: {source}")]
    SubmitUnsealKeys {
        keys: &'static str,
        source: VaultError,
    },
    #[error("Vault is still sealed after waiting {secs} s for operator key shares")]
    WaitOperatorShares { secs: u64 },
    #[error(
        "{note}the bootstrap has no valid Vault token and no root token at hand (the appliance was off longer than the \
         token's period, or it crashed during the first boot). Regenerate a root token with the operators' key shares \
         (`bao operator generate-root`, docs/security/stack.md), create one with \
         `bao token create -orphan -period=768h -policy=kindling-bootstrap`, write it to {token_file} (mode 0600, \
         owner kl-stack), and revoke the regenerated root token"
    )]
    NoRootToken { note: String, token_file: PathBuf },
    #[error(
        "Vault's PKI root ({}/cert/ca) is missing (HTTP {status}); vault-setup makes it",
        super::policies::PKI_ROOT_MOUNT
    )]
    NoVaultPkiRoot { status: u16 },
    #[error("Vault still knows the root token (accessor {accessor}) after revoking it")]
    RootTokenSurvives { accessor: String },
    #[error("no Vault token (the vault-token step did not run)")]
    NoVaultToken,
    #[error("the approle auth method has no accessor")]
    NoApproleAccessor,
    #[error("no Consul management token")]
    NoConsulManagementToken,
    #[error(
        "Consul rejects the management token kindling stored in Vault ({}/{kv_path})",
        KV_MOUNT
    )]
    ConsulRejectsStoredToken { kv_path: &'static str },
    #[error(
        "Nomad rejects the management token kindling stored in Vault ({}/{kv_path})",
        KV_MOUNT
    )]
    NomadRejectsStoredToken { kv_path: &'static str },
    #[error(
        "Consul's ACLs were bootstrapped by someone else; kindling leaves them alone. Store that management token in Vault \
         at {}/{kv_path} (field secret_id) and restart stack-bootstrap",
        KV_MOUNT
    )]
    ConsulAclForeign { kv_path: &'static str },
    #[error(
        "Nomad's ACLs were bootstrapped by someone else; kindling leaves them alone. Store that management token in Vault \
         at {}/{kv_path} (field secret_id) and restart stack-bootstrap",
        KV_MOUNT
    )]
    NomadAclForeign { kv_path: &'static str },
    #[error("reading {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not JSON: {source}")]
    ParseVaultConfig {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("restarting Vault through init: {reason}")]
    RestartVault { reason: String },
    #[error("wrote Vault's storage token into {config}, but there is no init control socket to restart Vault with it")]
    NoControlSocket { config: PathBuf },
    #[error("a restore left {snapshot}, but Vault already holds data: the restore's apply empties Vault's data directory first; move it aside (or remove the snapshot to keep this Vault)")]
    RestoreOntoVaultWithData { snapshot: PathBuf },
    #[error("a restore left {snapshot}, but Consul's ACLs are already bootstrapped: the restore's apply empties Consul's data directory first; move it aside (or remove the snapshot to keep this Consul)")]
    RestoreOntoConsulWithAcls { snapshot: PathBuf },
    #[error(
        "a restore left {snapshot}, but there is no init control socket to restart Vault after it"
    )]
    RestoreNeedsInit { snapshot: PathBuf },
    #[error("restoring a snapshot: {0}")]
    RestoreSnapshot(String),
    #[error("restoring Vault: it was not {what} in time (last: {last})")]
    RestoreVaultState { what: &'static str, last: String },
}
