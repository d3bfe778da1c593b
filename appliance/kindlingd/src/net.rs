//! `kindlingd net`: the network service. Reads the effective site config,
//! runs `kindling_net` until SIGTERM/SIGINT, and tells init "ready" through
//! `KINDLING_NOTIFY_FD` as soon as the LAN is up (not waiting for a lease).
//!
//! Flags (tests and the benchmark use them; the appliance passes none) are
//! [`Args`].

use kindling_net::nic::NicFilter;
use kindling_net::{NetOptions, NetPlan};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Effective config (default $KINDLING_SITE_JSON or /run/kindling/site.json).
    #[arg(long, value_name = "PATH")]
    site: Option<PathBuf>,
    /// Status file (default /run/kindling/status/net.json).
    #[arg(long, value_name = "PATH")]
    status: Option<PathBuf>,
    /// Treat veth devices as NICs (network-namespace tests).
    #[arg(long)]
    include_virtual_nics: bool,
    /// Port of the LAN DNS forwarder (default 53).
    #[arg(long, value_name = "N")]
    dns_port: Option<u16>,
    /// How often the status file is refreshed (default 5000, at least 100).
    #[arg(long, value_name = "N")]
    status_interval_ms: Option<u64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let site_path = args.site.unwrap_or_else(crate::site::effective_path);
    let mut options = NetOptions::default();
    if let Some(path) = args.status {
        options.status_path = path;
    }
    // The stack's status sits beside ours; on the appliance only the stack
    // bootstrap's account may declare the stack ready.
    options.stack_status_path = options.status_path.with_file_name("stack.json");
    if rustix::process::geteuid().as_raw() == kindling_init_protocol::accounts::NET.uid {
        options.stack_status_owner = Some(kindling_init_protocol::accounts::STACK.uid);
    }
    if args.include_virtual_nics {
        options.nic_filter = NicFilter::AnyEthernet;
    }
    if let Some(port) = args.dns_port {
        options.dns_port = port;
    }
    if let Some(ms) = args.status_interval_ms {
        options.status_interval = Duration::from_millis(ms.max(100));
    }
    crate::console::init("net");
    let site = kindling_site::effective::load(&site_path)?;
    let plan = NetPlan::from_site(&site);
    let mut notify = kindling_init_protocol::take_notify_pipe()?;
    kindling_net::run_until_signalled(plan, options, move |_ready| {
        if let Some(pipe) = notify.take() {
            // Init may have died or closed its end; nothing to do about it here.
            let _ = pipe.ready();
        }
    })?;
    Ok(())
}
