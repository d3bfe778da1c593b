//! `kindling`: the operator's CLI. Each command group lives in `cmd/<group>.rs`;
//! this file only parses and dispatches. Errors are printed as one line and the
//! process exits with the code `cmd::exit` gives the error.

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

mod cmd;

/// The end of `kindling --help`: where the appliance comes from, a first
/// session, and the exit codes.
const AFTER_HELP: &str = "\
Which appliance: --appliance ADDR and --context NAME on each appliance
command, else $KINDLING_APPLIANCE / $KINDLING_CONTEXT, else the current
context of ~/.config/kindling/config.toml (kindling login writes it;
$KINDLING_TOKEN overrides its token). Read commands take --json.

Example:
  kindling login --appliance 192.168.100.1 --context lab
  kindling status
  kindling node list

";

#[derive(Parser)]
#[command(
    name = "kindling",
    version,
    about = "Build, sign and operate kindling appliances",
    after_help = format!("{AFTER_HELP}{}", cmd::exit::HELP)
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an Ed25519 signing key pair (minisign format).
    #[command(after_help = "Example:\n  kindling keygen --out keys/")]
    Keygen(cmd::keygen::Args),
    /// Build, sign, verify and inspect site overlays.
    #[command(subcommand)]
    Overlay(cmd::overlay::Command),
    /// Build appliance images (initramfs, ISO, raw disk, UKI, PXE artifacts).
    #[command(subcommand)]
    Image(cmd::image::Command),
    /// Health, readiness, boot phases, services and node counts of an appliance.
    #[command(after_help = "Example:\n  kindling status --context lab")]
    Status(cmd::status::Args),
    /// The appliance's supervised services: state, readiness, restarts, uptime.
    #[command(after_help = "Example:\n  kindling services --json")]
    Services(cmd::status::Args),
    /// Inspect, assign, reprovision and forget PXE nodes on a running appliance.
    #[command(subcommand)]
    Node(cmd::node::Command),
    /// Show or follow the services' output kept on a running appliance.
    Logs(cmd::logs::Args),
    /// Show the HashiCorp stack's bootstrap status on a running appliance.
    #[command(subcommand)]
    Stack(cmd::stack::Command),
    /// The CLI config's named contexts (one appliance each): list, use, remove.
    #[command(subcommand)]
    Context(cmd::context::Command),
    /// Print a shell completion script (bash, zsh, fish, …).
    Completions(cmd::completions::Args),
    /// Vault operations on a running appliance (unseal).
    #[command(subcommand)]
    Vault(cmd::vault::Command),
    /// Pin an appliance's CA (compare the fingerprint with its console) and
    /// save the operator token for it in the CLI config (0600).
    #[command(
        after_help = "Example:\n  kindling login --appliance 192.168.100.1 --context lab --fingerprint sha256:…"
    )]
    Login(cmd::login::LoginArgs),
    /// Forget a context of the CLI config and its token.
    #[command(after_help = "Example:\n  kindling logout --context old-lab")]
    Logout(cmd::login::LogoutArgs),
    /// Show which operator the token is, on the appliance.
    #[command(after_help = "Example:\n  kindling whoami --context lab")]
    Whoami(cmd::status::Args),
    /// Mint operator tokens for the appliance's API.
    #[command(subcommand)]
    Token(cmd::token::Command),
    /// Build and check signed A/B update bundles.
    #[command(subcommand)]
    Update(cmd::update::Command),
    /// Encrypted backups of an appliance: make, list, pull, inspect, restore.
    #[command(subcommand)]
    Backup(cmd::backup::Command),
    /// Files kept on an appliance for nodes, by sha256: push, list, delete.
    #[command(subcommand)]
    Artifact(cmd::artifact::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Overlay(c) => cmd::overlay::run(c),
        Command::Image(c) => cmd::image::run(c),
        Command::Status(args) => cmd::status::status(args),
        Command::Services(args) => cmd::status::services(args),
        Command::Node(c) => cmd::node::run(c),
        Command::Context(c) => cmd::context::run(c),
        Command::Completions(args) => cmd::completions::run(args, &mut Cli::command()),
        Command::Logs(args) => cmd::logs::run(args),
        Command::Stack(c) => cmd::stack::run(c),
        Command::Vault(c) => cmd::vault::run(c),
        Command::Login(args) => cmd::login::login(args),
        Command::Logout(args) => cmd::login::logout(args),
        Command::Whoami(args) => cmd::login::whoami(args),
        Command::Token(c) => cmd::token::run(c),
        Command::Update(c) => cmd::update::run(c),
        Command::Backup(c) => cmd::backup::run(c),
        Command::Artifact(c) => cmd::artifact::run(c),
    };
    match result {
        Ok(()) => ExitCode::from(cmd::exit::Exit::Ok as u8),
        Err(err) => {
            eprintln!("kindling: error: {err:#}");
            ExitCode::from(cmd::exit::code_of(&err) as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command a user runs (each leaf of the tree) shows an example
    /// in its `--help`, and the top-level help lists the exit codes.
    #[test]
    fn every_command_has_an_example_and_help_lists_exit_codes() {
        fn leaves(cmd: &clap::Command, path: String, out: &mut Vec<(String, bool)>) {
            let subs: Vec<&clap::Command> = cmd
                .get_subcommands()
                .filter(|s| s.get_name() != "help")
                .collect();
            if subs.is_empty() {
                let example = [cmd.get_after_help(), cmd.get_long_about()]
                    .into_iter()
                    .flatten()
                    .any(|h| h.to_string().contains("Example"));
                out.push((path.clone(), example));
            }
            for s in subs {
                leaves(s, format!("{path} {}", s.get_name()), out);
            }
        }
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut found = Vec::new();
        leaves(&cli, "kindling".into(), &mut found);
        let missing: Vec<&String> = found.iter().filter(|(_, e)| !e).map(|(p, _)| p).collect();
        assert!(missing.is_empty(), "no example in --help of: {missing:?}");
        assert!(found.len() > 25, "{found:?}");
        let help = cli.clone().render_long_help().to_string();
        assert!(
            help.contains("Exit codes:") && help.contains("5  not found"),
            "{help}"
        );
    }
}
