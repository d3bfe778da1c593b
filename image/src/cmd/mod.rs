//! One module per command group, each owning its clap arguments and `run`.
//! `client` and `config` are how every appliance command reaches the API.

mod client;
mod config;
pub mod image;
pub mod keygen;
pub mod login;
pub mod logs;
pub mod node;
pub mod overlay;
pub mod stack;
pub mod token;
pub mod vault;

pub use client::Target;
