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
    /// Show or follow the services' output kept on a running appliance.
    Logs(cmd::logs::Args),
    /// Show the HashiCorp stack's bootstrap status on a running appliance.
    #[command(subcommand)]
    Stack(cmd::stack::Command),
    /// Vault operations on a running appliance (unseal).
    #[command(subcommand)]
    Vault(cmd::vault::Command),
    /// Pin an appliance's CA (compare the fingerprint with its console) and
    /// save the operator token for it in the CLI config (0600).
    Login(cmd::login::LoginArgs),
    /// Forget a context of the CLI config and its token.
    Logout(cmd::login::LogoutArgs),
    /// Show which operator the token is, on the appliance.
    Whoami(cmd::Target),
    /// Mint operator tokens for the appliance's API.
    #[command(subcommand)]
    Token(cmd::token::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Overlay(c) => cmd::overlay::run(c),
        Command::Image(c) => cmd::image::run(c),
        Command::Node(c) => cmd::node::run(c),
        Command::Logs(args) => cmd::logs::run(args),
        Command::Stack(c) => cmd::stack::run(c),
        Command::Vault(c) => cmd::vault::run(c),
        Command::Login(args) => cmd::login::login(args),
        Command::Logout(args) => cmd::login::logout(args),
        Command::Whoami(target) => cmd::login::whoami(target),
        Command::Token(c) => cmd::token::run(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kindling: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
