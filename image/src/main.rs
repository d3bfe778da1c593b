//! `kindling`: the operator's CLI. Each command group lives in `cmd/<group>.rs`;
//! this file only parses and dispatches. Errors are printed as one line and the
//! process exits non-zero.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cmd;

#[derive(Parser)]
#[command(
    name = "kindling",
    version,
    about = "Build, sign and operate kindling appliances"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an Ed25519 signing key pair (minisign format).
    Keygen(cmd::keygen::Args),
    /// Build, sign, verify and inspect site overlays.
    #[command(subcommand)]
    Overlay(cmd::overlay::Command),
    /// Build appliance images (initramfs, ISO, raw disk, UKI, PXE artifacts).
    #[command(subcommand)]
    Image(cmd::image::Command),
    /// Inspect and assign PXE nodes on a running appliance.
    #[command(subcommand)]
    Node(cmd::node::Command),
    /// Show the HashiCorp stack's bootstrap status on a running appliance.
    #[command(subcommand)]
    Stack(cmd::stack::Command),
    /// Vault operations on a running appliance (unseal).
    #[command(subcommand)]
    Vault(cmd::vault::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Overlay(c) => cmd::overlay::run(c),
        Command::Image(c) => cmd::image::run(c),
        Command::Node(c) => cmd::node::run(c),
        Command::Stack(c) => cmd::stack::run(c),
        Command::Vault(c) => cmd::vault::run(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kindling: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
