//! The one-shot, idempotent, resumable stack bootstrap (`kindlingd
//! stack-bootstrap`). Every step first reads the real state of Vault, Consul
//! or Nomad and only then acts, so a crash or reboot at any point resumes
//! cleanly: Vault is initialised once, ACL systems are bootstrapped once,
//! and what was stored is reused.
//!
//! Owns the order of steps and the status board. Must never print or log a
//! secret, re-initialise a Vault it has no keys for, or reset an ACL system
//! someone else bootstrapped.

mod acl_steps;
pub mod policies;
mod storage_steps;
mod vault_steps;

use crate::layout::StackLayout;
use crate::secrets::{InitSecrets, SecretStore};
use crate::status::{OverallState, StackStatus, StatusBoard, StepState};
use crate::vault::VaultApi;
use kindling_site::SiteConfig;
use std::path::PathBuf;
use std::time::Duration;

/// The steps, in order, as they appear in the status file.
pub const STEPS: [&str; 11] = [
    "vault-storage",
    "vault-api",
    "vault-init",
    "vault-unseal",
    "vault-token",
    "vault-setup",
    "consul-acl",
    "consul-tokens",
    "nomad-acl",
    "nomad-integration",
    "kv-mirror",
];

#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    pub site: SiteConfig,
    pub layout: StackLayout,
    /// How long to wait for a service's API to answer (and Consul's ACL
    /// system to leave legacy mode).
    pub service_timeout: Duration,
    /// Manual unseal: how long to wait for the operator's key shares;
    /// `None` waits as long as it takes (the appliance default).
    pub unseal_timeout: Option<Duration>,
    /// init's control socket, to restart Nomad after its tokens file
    /// changed; `None` or a missing socket leaves that to the next boot.
    pub control_socket: Option<PathBuf>,
    /// Print one line per step on stdout (init prefixes service lines).
    pub console: bool,
}

impl BootstrapOptions {
    pub fn appliance(site: SiteConfig) -> Self {
        Self {
            site,
            layout: StackLayout::appliance(),
            service_timeout: Duration::from_secs(120),
            unseal_timeout: None,
            control_socket: Some(PathBuf::from("/run/kindling/init.sock")),
            console: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("stack bootstrap step {step} failed: {message}")]
pub struct BootstrapError {
    pub step: &'static str,
    pub message: String,
}

/// What a step reports when it did not fail.
pub(crate) struct Outcome {
    state: StepState,
    detail: String,
}

impl Outcome {
    pub(crate) fn done(detail: impl Into<String>) -> Self {
        Self {
            state: StepState::Done,
            detail: detail.into(),
        }
    }
    pub(crate) fn already(detail: impl Into<String>) -> Self {
        Self {
            state: StepState::AlreadyDone,
            detail: detail.into(),
        }
    }
    pub(crate) fn skipped(detail: impl Into<String>) -> Self {
        Self {
            state: StepState::Skipped,
            detail: detail.into(),
        }
    }
}

/// State carried between steps of one run.
pub(crate) struct Run {
    pub(crate) opts: BootstrapOptions,
    pub(crate) board: StatusBoard,
    pub(crate) store: SecretStore,
    pub(crate) vault: VaultApi,
    /// Init secrets, only in the run that initialised Vault (memory only).
    pub(crate) fresh_init: Option<InitSecrets>,
    /// kindling's Vault token, once `vault-token` ran.
    pub(crate) vault_token: Option<String>,
    pub(crate) consul_management: Option<String>,
    /// A Consul management token bootstrapped before Vault could store it
    /// (Vault on Consul storage); the consul-acl step stores it.
    pub(crate) consul_unsaved: Option<crate::consul::AclToken>,
    pub(crate) nomad_management: Option<String>,
}

impl Run {
    /// The Vault client with kindling's token.
    pub(crate) fn vault_authed(&self) -> Result<VaultApi, String> {
        match &self.vault_token {
            Some(t) => Ok(self.vault.with_token(t)),
            None => Err("no Vault token (the vault-token step did not run)".into()),
        }
    }

    pub(crate) fn say(&self, line: &str) {
        if self.opts.console {
            println!("stack: {line}");
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.board.flush() {
            eprintln!("stack: {e}");
        }
    }
}

/// Runs every step in order; returns the final status. On failure the
/// status file names the step and the reason, and the error is returned.
pub async fn run(opts: BootstrapOptions) -> Result<StackStatus, BootstrapError> {
    crate::render::check_site(&opts.site).map_err(|e| BootstrapError {
        step: "config",
        message: e.to_string(),
    })?;
    let vault =
        VaultApi::new(&opts.layout.vault_local_url(), None, None).map_err(|e| BootstrapError {
            step: "vault-api",
            message: e.to_string(),
        })?;
    let mut run = Run {
        board: StatusBoard::new(&opts.layout.status_file, &STEPS),
        store: SecretStore::new(&opts.layout.state_dir()),
        vault,
        fresh_init: None,
        vault_token: None,
        consul_management: None,
        consul_unsaved: None,
        nomad_management: None,
        opts,
    };
    run.flush();
    for step in STEPS {
        run.board.begin(step);
        run.flush();
        let result = match step {
            "vault-storage" => storage_steps::vault_storage(&mut run).await,
            "vault-api" => vault_steps::api(&mut run).await,
            "vault-init" => vault_steps::init(&mut run).await,
            "vault-unseal" => vault_steps::unseal(&mut run).await,
            "vault-token" => vault_steps::token(&mut run).await,
            "vault-setup" => vault_steps::setup(&mut run).await,
            "consul-acl" => acl_steps::consul_acl(&mut run).await,
            "consul-tokens" => acl_steps::consul_tokens(&mut run).await,
            "nomad-acl" => acl_steps::nomad_acl(&mut run).await,
            "nomad-integration" => acl_steps::nomad_integration(&mut run).await,
            "kv-mirror" => acl_steps::kv_mirror(&mut run).await,
            _ => Ok(Outcome::skipped("unknown step")),
        };
        match result {
            Ok(outcome) => {
                let label = match outcome.state {
                    StepState::Done => "done",
                    StepState::AlreadyDone => "already done",
                    StepState::Skipped => "skipped",
                    _ => "ok",
                };
                run.board
                    .finish(step, outcome.state, outcome.detail.clone(), None);
                let ms = run
                    .board
                    .status()
                    .steps
                    .iter()
                    .find(|s| s.name == step)
                    .map(|s| s.duration_ms)
                    .unwrap_or(0);
                run.say(&format!(
                    "{step}: {label} ({ms} ms){}",
                    if outcome.detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", outcome.detail)
                    }
                ));
                run.flush();
            }
            Err(message) => {
                run.board.finish(
                    step,
                    StepState::Failed,
                    String::new(),
                    Some(message.clone()),
                );
                run.board.set_overall(OverallState::Failed);
                run.say(&format!("{step}: FAILED: {message}"));
                run.flush();
                return Err(BootstrapError { step, message });
            }
        }
    }
    run.board.set_overall(OverallState::Ready);
    run.flush();
    // The line operators, tests and init wait for.
    if run.opts.console {
        println!("stack: ready");
    }
    Ok(run.board.status().clone())
}
