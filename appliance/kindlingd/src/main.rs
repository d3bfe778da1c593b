//! `kindlingd`: one static binary, several roles, chosen by the first argument.
//! Each role lives in its own library crate; this file only dispatches.

use std::process::ExitCode;

mod api;
mod assignments;
mod backup;
mod catalog;
mod config;
mod console;
mod dashboard;
mod enroll;
mod install;
mod net;
mod node_tokens;
mod nomad_nodes;
mod ntp;
mod ownership;
mod pxe;
mod service_table;
mod site;
mod stack;
mod update;

/// `kindlingd ROLE [flags]`. A usage error prints clap's message and exits 2.
#[derive(clap::Parser)]
#[command(
    name = "kindlingd",
    about = "kindling's appliance roles, run by kindling-init"
)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(clap::Subcommand)]
enum Role {
    /// Verify and merge the signed overlays (init's config phase).
    Config(config::Args),
    /// The network service: links, addresses, uplink DHCP, NAT, LAN DNS.
    Net(net::Args),
    /// The PXE service: DHCP, TFTP, HTTP boot, router advertisements.
    Pxe(pxe::Args),
    /// The status and control API.
    Api(api::Args),
    /// The one-shot bootstrap of Consul, Vault and Nomad.
    StackBootstrap(stack::Args),
    /// The live status screen on the console (tty1).
    Dashboard(dashboard::Args),
    /// The update agent: the health gate and the A/B slots.
    Update(update::Args),
    /// The backup service: scheduled and requested encrypted backups.
    Backup(backup::Args),
    /// Revokes a re-armed node's Consul token and makes its next one.
    NodeTokens(node_tokens::Args),
    /// Reads Nomad's client node list for the inventory's `joined` check.
    NomadNodes(nomad_nodes::Args),
    /// Install the appliance booted from its ISO onto a local disk (one-shot).
    Install(install::Args),
}

impl Role {
    fn name(&self) -> &'static str {
        match self {
            Role::Config(_) => "config",
            Role::Net(_) => "net",
            Role::Pxe(_) => "pxe",
            Role::Api(_) => "api",
            Role::StackBootstrap(_) => "stack-bootstrap",
            Role::Dashboard(_) => "dashboard",
            Role::Update(_) => "update",
            Role::Backup(_) => "backup",
            Role::NodeTokens(_) => "node-tokens",
            Role::NomadNodes(_) => "nomad-nodes",
            Role::Install(_) => "install",
        }
    }
}

fn main() -> ExitCode {
    let role = <Cli as clap::Parser>::parse().role;
    let name = role.name();
    let result = match role {
        Role::Config(args) => config::run(args),
        Role::Net(args) => net::run(args),
        Role::Pxe(args) => pxe::run(args),
        Role::Api(args) => api::run(args),
        Role::StackBootstrap(args) => stack::run(args),
        Role::Dashboard(args) => dashboard::run(args),
        Role::Update(args) => update::run(args),
        Role::Backup(args) => backup::run(args),
        Role::NodeTokens(args) => node_tokens::run(args),
        Role::NomadNodes(args) => nomad_nodes::run(args),
        Role::Install(args) => install::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kindlingd {name}: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Tells kindling-init this service is ready (docs/contracts.md); a no-op when
/// run by hand. A failure is logged: the service keeps running either way.
pub(crate) fn notify_ready() {
    if let Err(e) = kindling_init_protocol::notify_ready() {
        eprintln!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// The argv init's service table and the benchmarks start roles with.
    #[test]
    fn the_argv_init_and_the_benchmarks_use_is_accepted() {
        for argv in [
            &["kindlingd", "config", "apply"][..],
            &["kindlingd", "net"],
            &["kindlingd", "pxe"],
            &["kindlingd", "api"],
            &["kindlingd", "stack-bootstrap"],
            &["kindlingd", "dashboard"],
            &["kindlingd", "backup"],
            &["kindlingd", "install"],
            &["kindlingd", "backup", "--once", "--site", "/s.json"],
            &["kindlingd", "api", "--listen", "127.0.0.1:9000"],
            &[
                "kindlingd",
                "config",
                "apply",
                "--run-dir",
                "/r",
                "--now",
                "1700000000",
            ],
            &[
                "kindlingd",
                "stack-bootstrap",
                "--site",
                "/s.json",
                "--timeout",
                "30",
            ],
            &[
                "kindlingd",
                "net",
                "--site",
                "s.json",
                "--status",
                "n.json",
                "--status-interval-ms",
                "200",
                "--include-virtual-nics",
                "--dns-port",
                "5353",
            ],
            &[
                "kindlingd",
                "pxe",
                "--site",
                "s.json",
                "--interface",
                "lan0",
                "--boot-dir",
                "/b",
                "--artifacts-dir",
                "/a1",
                "--artifacts-dir",
                "/a2",
                "--state-dir",
                "/st",
                "--status-file",
                "/p.json",
                "--dhcp-port",
                "1067",
                "--tftp-port",
                "1069",
                "--http-max-connections",
                "8",
            ],
        ] {
            assert!(Cli::try_parse_from(argv).is_ok(), "{argv:?}");
        }
    }

    #[test]
    fn usage_errors_are_refused() {
        for argv in [
            &["kindlingd"][..],
            &["kindlingd", "bogus"],
            &["kindlingd", "config"],
            &["kindlingd", "net", "--dns-port", "99999"],
            &["kindlingd", "api", "--listen"],
            &["kindlingd", "pxe", "--unknown"],
        ] {
            assert!(Cli::try_parse_from(argv).is_err(), "{argv:?}");
        }
    }
}
