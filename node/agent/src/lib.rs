//! `kindling-node`: the agent a provisioned node runs on its first boot (and
//! any time after). It redeems the node's single-use enrollment grant with
//! the appliance's Vault, obtains what the node needs to join the stack
//! (Consul token, a client certificate, an SSH host certificate), installs
//! and configures the Consul and Nomad clients and starts them.
//!
//! Every step is reported to the appliance as an event and recorded in a
//! state file, so a rerun converges from what is on disk and never unwraps
//! the grant a second time. Owns nothing on the appliance; must never write
//! the secret-id anywhere (it lives in memory between unwrap and login) and
//! never log a token, key or grant.

pub mod error;
pub mod events;
pub mod files;
pub mod inputs;
pub mod state;
pub mod steps;
pub mod vault;

pub use error::StepError;
pub use steps::{run, Options, Report, StepReport, STEPS};
