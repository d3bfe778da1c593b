//! The one-shot, idempotent, resumable stack bootstrap (`kindlingd
//! stack-bootstrap`). Every step first reads the real state of Vault, Consul
//! or Nomad and only then acts, so a crash or reboot at any point resumes
//! cleanly: Vault is initialised once, ACL systems are bootstrapped once,
//! and what was stored is reused.
//!
//! Owns running the steps of [`Step::ALL`] (the table in `steps.rs`) and
//! the status board. Must never print or log a
//! secret, re-initialise a Vault it has no keys for, or reset an ACL system
//! someone else bootstrapped.

mod acl_steps;
mod enroll_steps;
mod error;
pub mod policies;
mod steps;
mod storage_steps;
mod tls_steps;
mod token_steps;
mod vault_steps;

pub use error::StepError;
pub use steps::Step;

use crate::layout::StackLayout;
use crate::secrets::{InitSecrets, SecretStore};
use crate::status::{OverallState, StackStatus, StatusBoard, StepState};
use crate::vault::VaultApi;
use kindling_site::SiteConfig;
use std::path::PathBuf;
use std::time::Duration;

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
            control_socket: Some(PathBuf::from(kindling_init_protocol::DEFAULT_SOCKET)),
            console: true,
        }
    }
}

/// How a step that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finished {
    Done,
    AlreadyDone,
    Skipped,
}

impl Finished {
    fn state(self) -> StepState {
        match self {
            Self::Done => StepState::Done,
            Self::AlreadyDone => StepState::AlreadyDone,
            Self::Skipped => StepState::Skipped,
        }
    }

    /// The word on the step's console line.
    fn label(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::AlreadyDone => "already done",
            Self::Skipped => "skipped",
        }
    }
}

/// What a step reports when it did not fail.
pub(crate) struct Outcome {
    finished: Finished,
    detail: String,
}

impl Outcome {
    pub(crate) fn done(detail: impl Into<String>) -> Self {
        Self {
            finished: Finished::Done,
            detail: detail.into(),
        }
    }
    pub(crate) fn already(detail: impl Into<String>) -> Self {
        Self {
            finished: Finished::AlreadyDone,
            detail: detail.into(),
        }
    }
    pub(crate) fn skipped(detail: impl Into<String>) -> Self {
        Self {
            finished: Finished::Skipped,
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
    pub(crate) fn vault_authed(&self) -> Result<VaultApi, StepError> {
        match &self.vault_token {
            Some(t) => Ok(self.vault.with_token(t)),
            None => Err(StepError::NoVaultToken),
        }
    }

    /// Consul's management token, once `consul-acl` ran.
    pub(crate) fn consul_management(&self) -> Result<String, StepError> {
        self.consul_management
            .clone()
            .ok_or(StepError::NoConsulManagementToken)
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

/// What made the stack bootstrap stop: the step that failed (a typed
/// [`Step`]) and why.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The site configuration cannot describe a stack; no step ran.
    #[error("stack bootstrap step config failed: {0}")]
    CheckSite(#[source] crate::render::RenderError),
    #[error("stack bootstrap step {step} failed: {source}")]
    Step {
        step: Step,
        #[source]
        source: StepError,
    },
}

impl BootstrapError {
    /// The step that failed; `None` when the site check stopped the run
    /// before any step.
    pub fn step(&self) -> Option<Step> {
        match self {
            Self::CheckSite(_) => None,
            Self::Step { step, .. } => Some(*step),
        }
    }

    /// The reason alone, as written to the step's `error` in the status file.
    pub fn reason(&self) -> String {
        match self {
            Self::CheckSite(e) => e.to_string(),
            Self::Step { source, .. } => source.to_string(),
        }
    }
}

/// Runs every step in order; returns the final status. On failure the
/// status file names the step and the reason, and the error is returned.
pub async fn run(opts: BootstrapOptions) -> Result<StackStatus, BootstrapError> {
    crate::render::check_site(&opts.site).map_err(BootstrapError::CheckSite)?;
    let vault = VaultApi::new(&opts.layout.vault_local_url(), None, None).map_err(|e| {
        BootstrapError::Step {
            step: Step::VaultApi,
            source: e.into(),
        }
    })?;
    let names: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
    let mut run = Run {
        board: StatusBoard::new(&opts.layout.status_file, &names),
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
    for &step in Step::ALL {
        let name = step.name();
        run.board.begin(name);
        run.flush();
        match step.run(&mut run).await {
            Ok(outcome) => {
                let label = outcome.finished.label();
                run.board
                    .finish(name, outcome.finished.state(), outcome.detail.clone(), None);
                let ms = run
                    .board
                    .status()
                    .steps
                    .iter()
                    .find(|s| s.name == name)
                    .map(|s| s.duration_ms)
                    .unwrap_or(0);
                run.say(&format!(
                    "{name}: {label} ({ms} ms){}",
                    if outcome.detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", outcome.detail)
                    }
                ));
                run.flush();
            }
            Err(source) => {
                let message = source.to_string();
                run.board.finish(
                    name,
                    StepState::Failed,
                    String::new(),
                    Some(message.clone()),
                );
                run.board.set_overall(OverallState::Failed);
                run.say(&format!("{name}: FAILED: {message}"));
                run.flush();
                return Err(BootstrapError::Step { step, source });
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
