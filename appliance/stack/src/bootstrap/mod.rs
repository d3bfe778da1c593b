//! The one-shot, idempotent, resumable stack bootstrap (`kindlingd
//! stack-bootstrap`). Every step first reads the real state of Vault, Consul
//! or Nomad and only then acts, so a crash or reboot at any point resumes
//! cleanly: Vault is initialised once, ACL systems are bootstrapped once,
//! and what was stored is reused.
//!
//! Owns running the steps of [`Step::ALL`] (the table in `steps.rs`, run
//! as a graph by `schedule.rs`) and the status board. Must never print or log a
//! secret, re-initialise a Vault it has no keys for, or reset an ACL system
//! someone else bootstrapped.

mod acl_steps;
mod consul_token_steps;
mod enroll_steps;
mod error;
pub mod policies;
mod restore_steps;
mod schedule;
mod service_restart;
mod setup_steps;
mod steps;
mod storage_steps;
mod tls_steps;
mod token_steps;
mod vault_steps;

pub use error::StepError;
pub use steps::Step;

use crate::consul::ConsulApi;
use crate::layout::StackLayout;
use crate::secrets::{InitSecrets, SecretStore};
use crate::status::{OverallState, StackStatus, StatusBoard, StepState};
use crate::vault::VaultApi;
use kindling_site::SiteConfig;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
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

/// State carried between steps of one run. Steps that do not need each
/// other run at the same time (see `schedule.rs`), so they share the run by
/// reference: what one step hands to later ones is set once, and the status
/// board sits behind a lock that is never held across an await.
pub(crate) struct Run {
    pub(crate) opts: BootstrapOptions,
    board: Mutex<StatusBoard>,
    pub(crate) store: SecretStore,
    pub(crate) vault: VaultApi,
    /// Consul's local API without a token; steps add theirs with
    /// `with_token`. One client per run: building one takes tens of ms.
    pub(crate) consul: ConsulApi,
    /// Init secrets, only in the run that initialised Vault (memory only).
    pub(crate) fresh_init: OnceLock<InitSecrets>,
    /// kindling's Vault token, once `vault-token` ran.
    pub(crate) vault_token: OnceLock<String>,
    pub(crate) consul_management: OnceLock<String>,
    /// A Consul management token bootstrapped before Vault could store it
    /// (Vault on Consul storage); the consul-acl step stores it.
    pub(crate) consul_unsaved: Mutex<Option<crate::consul::AclToken>>,
    pub(crate) nomad_management: OnceLock<String>,
    /// Set once a step failed: steps that only wait (for a service, for the
    /// operator's shares) give up instead of holding the failed run open.
    stopping: AtomicBool,
}

impl Run {
    /// The Vault client with kindling's token.
    pub(crate) fn vault_authed(&self) -> Result<VaultApi, StepError> {
        match self.vault_token.get() {
            Some(t) => Ok(self.vault.with_token(t)),
            None => Err(StepError::NoVaultToken),
        }
    }

    /// Consul's management token, once `consul-acl` ran.
    pub(crate) fn consul_management(&self) -> Result<String, StepError> {
        self.consul_management
            .get()
            .cloned()
            .ok_or(StepError::NoConsulManagementToken)
    }

    /// Consul's API with the management token.
    pub(crate) fn consul_admin(&self) -> Result<ConsulApi, StepError> {
        Ok(self.consul.with_token(&self.consul_management()?))
    }

    pub(crate) fn say(&self, line: &str) {
        if self.opts.console {
            println!("stack: {line}");
        }
    }

    /// The board, for one change; a step that panicked while holding it
    /// left a board that is still worth writing.
    fn board(&self) -> MutexGuard<'_, StatusBoard> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the status file.
    pub(crate) fn flush(&self) {
        if let Err(e) = self.board().flush() {
            eprintln!("stack: {e}");
        }
    }

    /// A step still running or waiting reports progress (unseal shares).
    pub(crate) fn note(&self, step: Step, state: StepState, detail: String) {
        self.board().note(step.name(), state, detail);
        self.flush();
    }

    pub(crate) fn set_overall(&self, state: OverallState) {
        self.board().set_overall(state);
    }

    pub(crate) fn set_init_secrets(&self, where_: &str) {
        self.board().set_init_secrets(where_);
    }

    /// Whether another step failed and waiting steps should give up.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    fn begin(&self, step: Step) {
        self.board().begin(step.name());
        self.flush();
    }

    fn finish(&self, step: Step, outcome: Outcome) {
        let name = step.name();
        let ms = {
            let mut board = self.board();
            board.finish(name, outcome.finished.state(), outcome.detail.clone(), None);
            board.duration_ms(name)
        };
        self.say(&format!(
            "{name}: {} ({ms} ms){}",
            outcome.finished.label(),
            if outcome.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", outcome.detail)
            }
        ));
        self.flush();
    }

    /// Records the failure; the first one also stops the run.
    fn fail(&self, step: Step, error: &StepError) {
        let message = error.to_string();
        {
            let mut board = self.board();
            board.finish(
                step.name(),
                StepState::Failed,
                String::new(),
                Some(message.clone()),
            );
            board.set_overall(OverallState::Failed);
        }
        self.stopping.store(true, Ordering::Relaxed);
        self.say(&format!("{}: FAILED: {message}", step.name()));
        self.flush();
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

/// Runs every step, each as soon as the steps it needs are done (steps
/// that do not need each other at the same time); returns the final status.
/// On failure the status file names the step and the reason, and the error
/// of the first step that failed is returned.
pub async fn run(opts: BootstrapOptions) -> Result<StackStatus, BootstrapError> {
    crate::render::check_site(&opts.site).map_err(BootstrapError::CheckSite)?;
    let vault = VaultApi::new(&opts.layout.vault_local_url(), None, None).map_err(|e| {
        BootstrapError::Step {
            step: Step::VaultApi,
            source: e.into(),
        }
    })?;
    let names: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
    let run = Run {
        board: Mutex::new(StatusBoard::new(&opts.layout.status_file, &names)),
        store: SecretStore::new(&opts.layout.state_dir()),
        vault,
        consul: ConsulApi::new(&opts.layout.consul_local_url(), None),
        fresh_init: OnceLock::new(),
        vault_token: OnceLock::new(),
        consul_management: OnceLock::new(),
        consul_unsaved: Mutex::new(None),
        nomad_management: OnceLock::new(),
        stopping: AtomicBool::new(false),
        opts,
    };
    run.flush();
    if let Err((step, source)) = schedule::run_all(&run).await {
        // A step that was still waiting when another failed may have moved
        // the overall state since: the run failed.
        run.set_overall(OverallState::Failed);
        run.flush();
        return Err(BootstrapError::Step { step, source });
    }
    run.set_overall(OverallState::Ready);
    run.flush();
    // The line operators, tests and init wait for.
    if run.opts.console {
        println!("stack: ready");
    }
    let status = run.board().status().clone();
    Ok(status)
}
