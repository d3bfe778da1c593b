//! `kindlingd net`: the network service. Reads the effective site config,
//! runs `kindling_net` until SIGTERM/SIGINT, and tells init "ready" through
//! `KINDLING_NOTIFY_FD` as soon as the LAN is up (not waiting for a lease).
//!
//! Flags (tests and the benchmark use them; the appliance passes none):
//!   --site PATH              effective config (default $KINDLING_SITE_JSON or /run/kindling/site.json)
//!   --status PATH            status file (default /run/kindling/status/net.json)
//!   --include-virtual-nics   treat veth devices as NICs (network-namespace tests)
//!   --dns-port N             port of the LAN DNS forwarder (default 53)
//!   --status-interval-ms N   how often the status file is refreshed (default 5000)

use anyhow::{bail, Context};
use kindling_net::nic::NicFilter;
use kindling_net::{NetOptions, NetPlan};
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut site_path = crate::site::effective_path();
    let mut options = NetOptions::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--site" => site_path = PathBuf::from(value("--site")?),
            "--status" => options.status_path = PathBuf::from(value("--status")?),
            "--include-virtual-nics" => options.nic_filter = NicFilter::AnyEthernet,
            "--dns-port" => {
                options.dns_port = value("--dns-port")?.parse().context("--dns-port")?
            }
            "--status-interval-ms" => {
                let ms: u64 = value("--status-interval-ms")?
                    .parse()
                    .context("--status-interval-ms")?;
                options.status_interval = Duration::from_millis(ms.max(100));
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    crate::console::init("net");
    let bytes =
        std::fs::read(&site_path).with_context(|| format!("read {}", site_path.display()))?;
    let site: kindling_site::SiteConfig = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a valid site config", site_path.display()))?;
    let plan = NetPlan::from_site(&site);
    let mut notify = take_notify_fd()?;
    kindling_net::run_until_signalled(plan, options, move |_ready| {
        if let Some(mut pipe) = notify.take() {
            // Init may have died or closed its end; nothing to do about it here.
            let _ = pipe.write_all(b"ready\n");
        }
    })?;
    Ok(())
}

/// The readiness pipe init passed, if any (`KINDLING_NOTIFY_FD`).
fn take_notify_fd() -> anyhow::Result<Option<std::fs::File>> {
    let Some(value) = std::env::var_os("KINDLING_NOTIFY_FD") else {
        return Ok(None);
    };
    let fd: i32 = value
        .to_str()
        .and_then(|s| s.trim().parse().ok())
        .context("KINDLING_NOTIFY_FD is not a number")?;
    if fd < 3 {
        bail!("KINDLING_NOTIFY_FD={fd} would be a standard stream");
    }
    // Refuse an fd that is not open, rather than adopting a number that a
    // later open() could reuse.
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .with_context(|| format!("KINDLING_NOTIFY_FD={fd} is not open"))?;
    // SAFETY: init gave this process the descriptor for this purpose, it is
    // open (checked above) and nothing else in kindlingd uses it, so taking
    // ownership once here is sound.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(Some(std::fs::File::from(owned)))
}
