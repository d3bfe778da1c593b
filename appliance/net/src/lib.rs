//! Network bring-up of the kindling appliance: NIC roles, LAN and uplink
//! addressing over rtnetlink, the DHCPv4 client, the nftables forwarding/NAT
//! ruleset, the LAN DNS forwarder, carrier watch and the status file.
//!
//! Everything here talks to the kernel through netlink sockets, `/proc/sys`
//! and packet sockets; nothing shells out to `ip`, `nft` or `iptables`. The
//! crate works in whatever network namespace the calling thread is in, which
//! is how the tests run it.

pub mod dhcp;
pub mod dns;
pub mod firewall;
pub mod link;
pub mod linkwatch;
pub mod nic;
pub mod plan;
pub mod service;
pub mod status;
pub mod sysctl;

pub use plan::NetPlan;
pub use service::{run, LanReady, NetOptions, NetServiceError};

/// Runs the service on its own single-threaded runtime until SIGTERM or
/// SIGINT: the entry point for `kindlingd net`.
pub fn run_until_signalled(
    plan: NetPlan,
    options: NetOptions,
    on_lan_ready: impl FnOnce(LanReady),
) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        run(plan, options, on_lan_ready, shutdown)
            .await
            .map_err(RunError::Service)
    })
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("install SIGTERM/SIGINT handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Service(#[from] NetServiceError),
}
