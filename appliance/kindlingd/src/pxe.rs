//! `kindlingd pxe`: the PXE service (DHCP, TFTP, HTTP boot, RAs) as one
//! long-running process supervised by kindling-init.
//!
//! Owns argument parsing and the readiness handshake only; everything else
//! is `kindling_pxe::service`.
//!
//! Flags are [`Args`]. The site file defaults to `$KINDLING_SITE_JSON` or
//! /run/kindling/site.json; `--interface` to the interface holding the LAN
//! address; the others to `PxePaths` and `ServiceOptions` defaults.

use anyhow::Context;
use kindling_pxe::service::{self, ServiceOptions};
use kindling_pxe::settings::{JoinPorts, NodeStack};
use kindling_pxe::{PxePaths, PxeSettings};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_name = "FILE")]
    site: Option<PathBuf>,
    #[arg(long, value_name = "IF")]
    interface: Option<String>,
    #[arg(long, value_name = "DIR")]
    boot_dir: Option<PathBuf>,
    /// Repeatable; replaces the default list when given.
    #[arg(long, value_name = "DIR")]
    artifacts_dir: Vec<PathBuf>,
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    repo_dir: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    status_file: Option<PathBuf>,
    #[arg(long, value_name = "N")]
    dhcp_port: Option<u16>,
    #[arg(long, value_name = "N")]
    client_port: Option<u16>,
    #[arg(long, value_name = "N")]
    proxy_port: Option<u16>,
    #[arg(long, value_name = "N")]
    tftp_port: Option<u16>,
    #[arg(long, value_name = "N")]
    http_max_connections: Option<usize>,
}

/// The flags applied over the defaults.
struct Settings {
    site: PathBuf,
    paths: PxePaths,
    options: ServiceOptions,
}

fn settings(args: Args) -> Settings {
    let mut paths = PxePaths::default();
    let mut options = ServiceOptions {
        interface: args.interface,
        ..ServiceOptions::default()
    };
    if let Some(dir) = args.boot_dir {
        paths.boot_dir = dir;
    }
    if !args.artifacts_dir.is_empty() {
        paths.artifact_dirs = args.artifacts_dir;
    }
    if let Some(dir) = args.state_dir {
        paths.state_dir = dir;
    }
    if args.repo_dir.is_some() {
        paths.repo_dir = args.repo_dir;
    }
    if let Some(file) = args.status_file {
        paths.status_file = file;
    }
    for (flag, port) in [
        (args.dhcp_port, &mut options.dhcp_port),
        (args.client_port, &mut options.client_port),
        (args.proxy_port, &mut options.proxy_port),
        (args.tftp_port, &mut options.tftp_port),
    ] {
        if let Some(value) = flag {
            *port = value;
        }
    }
    if let Some(n) = args.http_max_connections {
        options.http_max_connections = n;
    }
    Settings {
        site: args.site.unwrap_or_else(crate::site::effective_path),
        paths,
        options,
    }
}

/// The stack's LAN ports nodes join, from the layout the stack runs with.
fn join_ports() -> JoinPorts {
    let ports = kindling_stack::StackLayout::appliance().ports;
    JoinPorts {
        consul_serf_lan: ports.consul_serf_lan,
        nomad_rpc: ports.nomad_rpc,
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::console::init("pxe");
    let args = settings(args);
    let site = kindling_site::effective::load(&args.site)?;
    if !site.pxe.enabled {
        anyhow::bail!(
            "pxe.enabled is false in {}: nothing to serve",
            args.site.display()
        );
    }
    let mut settings = PxeSettings::from_site(&site, args.paths)
        .with_context(|| format!("in {}", args.site.display()))?;
    // Nodes dial the ports the appliance's stack actually listens on.
    settings.stack = NodeStack::from_site(&site, settings.lan_addr, join_ports());
    let mut options = args.options;
    options.enrollment = crate::enroll::source(&site);
    service::run(settings, options, crate::notify_ready)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kindling_stack::StackLayout;

    /// The PXE service hands nodes the very binaries the stack runs, and
    /// tells them the ports it listens on.
    #[test]
    fn nodes_get_the_stack_s_own_binaries_and_ports() {
        let layout = StackLayout::appliance();
        let paths = PxePaths::default();
        assert_eq!(paths.consul_binary, layout.binary("consul"));
        assert_eq!(paths.nomad_binary, layout.binary("nomad"));
        assert_eq!(join_ports(), JoinPorts::default());
    }
}
