//! One module per command group, each owning its clap arguments and `run`.
//! `client` and `config` are how every appliance command reaches the API;
//! `exit` defines the exit codes, `table` the human tables, `progress` the
//! spinner of network calls.

pub mod artifact;
mod artifact_iso;
mod artifact_push;
pub mod backup;
mod client;
pub mod completions;
mod config;
pub mod context;
pub mod exit;
pub mod image;
pub mod keygen;
pub mod login;
pub mod logs;
pub mod node;
pub mod overlay;
mod overlay_list;
mod progress;
pub mod stack;
pub mod status;
mod table;
pub mod token;
pub mod update;
mod update_channel;
mod update_poll;
pub mod vault;
