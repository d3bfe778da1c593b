//! The agent's steps, in order, as data ([`STEPS`]), and the run that takes
//! them: each step's outcome is printed, recorded in the state file and
//! reported to the appliance; the first failure ends the run (every later
//! step needs what the earlier ones make).
//!
//! Steps that need Vault act only with a fresh login, which exists only
//! right after a grant was unwrapped. On a rerun they find their files on
//! disk and leave them; a file missing then is an error that says the node
//! must be re-provisioned, never a second unwrap.

mod binaries;
mod consul_config;
mod consul_token;
mod grant;
mod login;
mod nomad_config;
mod ssh_host_cert;
mod tls;
mod units;

use crate::error::StepError;
use crate::events::EventSink;
use crate::files::{paths, Root};
use crate::inputs::{self, EnrollmentFile, NodeFile, StackFile};
use crate::state::{NodeIdentity, State, StepRecord};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use vaultrs::client::VaultClient;

/// What the agent is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// `/` on a node; a directory standing for it otherwise (then nothing
    /// is started).
    pub root: PathBuf,
    /// Connect from this address (the node's leased one) instead of the
    /// one the kernel picks.
    pub source_address: Option<IpAddr>,
}

/// One step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Grant,
    Login,
    ConsulToken,
    Tls,
    SshHostCert,
    Binaries,
    ConsulConfig,
    NomadConfig,
    Units,
}

/// Every step, in the order they run.
pub const STEPS: &[Step] = &[
    Step::Grant,
    Step::Login,
    Step::ConsulToken,
    Step::Tls,
    Step::SshHostCert,
    Step::Binaries,
    Step::ConsulConfig,
    Step::NomadConfig,
    Step::Units,
];

impl Step {
    /// The name in events, the state file and on the console.
    pub fn name(self) -> &'static str {
        match self {
            Step::Grant => "grant",
            Step::Login => "login",
            Step::ConsulToken => "consul-token",
            Step::Tls => "tls",
            Step::SshHostCert => "ssh-host-cert",
            Step::Binaries => "binaries",
            Step::ConsulConfig => "consul-config",
            Step::NomadConfig => "nomad-config",
            Step::Units => "units",
        }
    }

    async fn take(self, ctx: &mut Ctx) -> Result<String, StepError> {
        match self {
            Step::Grant => grant::run(ctx).await,
            Step::Login => login::run(ctx).await,
            Step::ConsulToken => consul_token::run(ctx).await,
            Step::Tls => tls::run(ctx).await,
            Step::SshHostCert => ssh_host_cert::run(ctx).await,
            Step::Binaries => binaries::run(ctx).await,
            Step::ConsulConfig => consul_config::run(ctx),
            Step::NomadConfig => nomad_config::run(ctx),
            Step::Units => units::run(ctx),
        }
    }
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub step: &'static str,
    pub result: Result<String, String>,
}

/// A run's outcome: the steps taken, the last one failed if any did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub steps: Vec<StepReport>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.result.is_ok())
    }

    pub fn get(&self, step: &str) -> Option<&Result<String, String>> {
        self.steps
            .iter()
            .find(|s| s.step == step)
            .map(|s| &s.result)
    }
}

/// What the steps share during a run.
pub(crate) struct Ctx {
    pub root: Root,
    pub node: NodeFile,
    pub enrollment: Option<EnrollmentFile>,
    pub ca_pem: Option<Vec<u8>>,
    pub state: State,
    pub http: reqwest::Client,
    /// Between `grant` and `login` only.
    pub secret_id: Option<String>,
    /// A Vault client with the node's token, after a fresh login.
    pub vault: Option<VaultClient>,
    /// Services whose configuration or binary changed in this run.
    pub changed: BTreeSet<&'static str>,
}

impl Ctx {
    /// Who the node is (from this run's login or an earlier one).
    pub fn identity(&self) -> Result<&NodeIdentity, StepError> {
        self.state
            .node
            .as_ref()
            .ok_or_else(|| StepError::NeedsLogin {
                what: "the node's identity (hostname, profile)".into(),
            })
    }

    /// Whether this node runs a Nomad client: node.json names the
    /// appliance's Nomad servers (the site runs Nomad).
    pub fn runs_nomad(&self) -> bool {
        self.node
            .stack
            .as_ref()
            .is_some_and(|s| !s.nomad_servers.is_empty())
    }

    pub fn stack(&self) -> Result<&StackFile, StepError> {
        self.node.stack.as_ref().ok_or_else(|| {
            StepError::Config(format!(
                "{} names no stack (datacenter, consul_join, nomad_servers)",
                Root::on_node(paths::NODE)
            ))
        })
    }
}

/// Reads the inputs, then takes every step in order until one fails.
pub async fn run(opts: &Options) -> Report {
    let root = Root::new(&opts.root);
    let mut report = Report::default();
    let mut ctx = match setup(&root, opts) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("kindling-node: inputs: failed: {e}");
            report.steps.push(StepReport {
                step: "inputs",
                result: Err(e.to_string()),
            });
            return report;
        }
    };
    let mac = ctx.node.mac.clone();
    let events = EventSink::new(Some(&ctx.node.appliance), &mac, ctx.http.clone());
    for step in STEPS {
        let outcome = step.take(&mut ctx).await;
        let unwrap_failed = matches!(outcome, Err(StepError::GrantUsed(_)));
        let result = outcome.map_err(|e| e.to_string());
        match &result {
            Ok(detail) => println!("kindling-node: {}: ok: {detail}", step.name()),
            Err(e) => eprintln!("kindling-node: {}: failed: {e}", step.name()),
        }
        let (ok, detail) = match &result {
            Ok(d) => (true, d.clone()),
            Err(e) => (false, e.clone()),
        };
        ctx.state.steps.insert(
            step.name().to_string(),
            StepRecord {
                ok,
                detail,
                at: crate::state::now(),
            },
        );
        if let Err(e) = ctx.state.save(&ctx.root) {
            eprintln!("kindling-node: recording {}: {e}", step.name());
        }
        events.report(step.name(), &result, unwrap_failed).await;
        report.steps.push(StepReport {
            step: step.name(),
            result,
        });
        if !ok {
            break;
        }
    }
    report
}

fn setup(root: &Root, opts: &Options) -> Result<Ctx, StepError> {
    let node = inputs::node_file(root)?;
    let enrollment = inputs::enrollment_file(root)?;
    let ca_pem = root.read(paths::APPLIANCE_CA)?;
    let state = State::load(root)?;
    let http = crate::vault::http_client(ca_pem.as_deref(), opts.source_address)?;
    Ok(Ctx {
        root: root.clone(),
        node,
        enrollment,
        ca_pem,
        state,
        http,
        secret_id: None,
        vault: None,
        changed: BTreeSet::new(),
    })
}
