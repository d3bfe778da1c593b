//! The upstream router's services, run inside the upstream namespace only:
//! dnsmasq as DHCP server (and a tiny DNS) for the appliance's uplink segment,
//! an HTTP target whose access log shows each client's source address (a
//! request from a LAN node that arrives from the appliance's uplink address
//! proves NAT), and, when `ntp-daemon` is on PATH, a stratum-1 NTP server
//! serving the host's clock (the site's time source in the lab). None ever
//! binds outside that namespace, and the NTP server can never set the host's
//! clock: it has no sources and runs without CAP_SYS_TIME.

use crate::cmd;
use crate::error::{LabError, Result};
use crate::network::{LabNetwork, UPSTREAM_DHCP_RANGE, UPSTREAM_ROUTER_ADDR};
use crate::process::LabProcess;
use crate::watch::SerialWatcher;
use regex::Regex;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Path the node payload fetches through NAT (`payload/init`).
pub const NAT_PROBE_PATH: &str = "/nat-probe";
/// Name the upstream DNS answers, for checks through the appliance's forwarder.
pub const UPSTREAM_HOSTNAME: &str = "upstream.lab";

#[derive(Debug)]
pub struct Upstream {
    pub dnsmasq: LabProcess,
    pub http: LabProcess,
    /// The NTP reference, when ntp-daemon was found.
    pub ntp: Option<LabProcess>,
    pub dnsmasq_log: PathBuf,
    pub http_log: PathBuf,
    pub leases: PathBuf,
}

impl Upstream {
    pub fn start(net: &LabNetwork, run_dir: &Path) -> Result<Self> {
        cmd::require_tool("dnsmasq")?;
        cmd::require_tool("python3")?;
        let ns = net.names().upstream.as_str();
        let dnsmasq_log = run_dir.join("upstream-dnsmasq.log");
        let leases = run_dir.join("upstream-dhcp.leases");
        let (first, last) = UPSTREAM_DHCP_RANGE;
        let mut dnsmasq = cmd::in_netns(ns, "dnsmasq");
        dnsmasq
            .arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg(format!("--interface={}", net.router_interface()))
            .arg("--bind-interfaces")
            .arg("--except-interface=lo")
            .arg(format!("--dhcp-range={first},{last},255.255.255.0,1h"))
            .arg("--dhcp-authoritative")
            // No ping probe before an offer: it only costs time in the lab.
            .arg("--no-ping")
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .arg("--pid-file=")
            .arg("--user=root")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg(format!(
                "--host-record={UPSTREAM_HOSTNAME},{UPSTREAM_ROUTER_ADDR}"
            ))
            .arg("--log-dhcp")
            .arg("--log-queries")
            .arg(format!("--log-facility={}", dnsmasq_log.display()))
            .stdin(Stdio::null());
        let dnsmasq = LabProcess::spawn(
            "upstream-dnsmasq",
            dnsmasq,
            Some(&run_dir.join("upstream-dnsmasq.pid")),
        )?;

        let www = run_dir.join("upstream-www");
        std::fs::create_dir_all(&www).map_err(|e| LabError::io("creating", &www, e))?;
        let probe = www.join(NAT_PROBE_PATH.trim_start_matches('/'));
        std::fs::write(&probe, "kindling lab upstream: reached\n")
            .map_err(|e| LabError::io("writing", &probe, e))?;
        let http_log = run_dir.join("upstream-http.log");
        let log_file =
            std::fs::File::create(&http_log).map_err(|e| LabError::io("creating", &http_log, e))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| LabError::io("opening", &http_log, e))?;
        let mut http = cmd::in_netns(ns, "python3");
        http.args([
            "-u",
            "-m",
            "http.server",
            "80",
            "--bind",
            UPSTREAM_ROUTER_ADDR,
            "--directory",
        ])
        .arg(&www)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
        let http = LabProcess::spawn(
            "upstream-http",
            http,
            Some(&run_dir.join("upstream-http.pid")),
        )?;

        let ntp = start_ntp_reference(ns, run_dir)?;

        let mut up = Self {
            dnsmasq,
            http,
            ntp,
            dnsmasq_log,
            http_log,
            leases,
        };
        up.wait_started()?;
        Ok(up)
    }

    fn wait_started(&mut self) -> Result<()> {
        let checks = [
            (self.dnsmasq_log.clone(), r"started, version", "dnsmasq"),
            (self.http_log.clone(), r"Serving HTTP on", "HTTP target"),
        ];
        for (log, pattern, what) in checks {
            let re = Regex::new(pattern).map_err(|e| LabError::Payload(e.to_string()))?;
            let proc = if what == "dnsmasq" {
                &mut self.dnsmasq
            } else {
                &mut self.http
            };
            SerialWatcher::new(&log)
                .wait_for(&re, None, Duration::from_secs(10), || {
                    proc.exited().map(|s| format!("{what} exited ({s})"))
                })
                .map_err(|e| LabError::CommandFailed {
                    command: format!("upstream {what}"),
                    status: "did not start".into(),
                    stderr: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// Leases the upstream router handed out: (MAC, address).
    pub fn leases(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.leases)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((f.get(1)?.to_string(), f.get(2)?.to_string()))
            })
            .collect()
    }

    /// Source addresses of requests for `path` in the HTTP target's log.
    pub fn http_clients_for(&self, path: &str) -> Vec<String> {
        http_clients_for(
            &std::fs::read_to_string(&self.http_log).unwrap_or_default(),
            path,
        )
    }
}

/// ntpd-rs as a stratum-1 server of the host's clock on the router address:
/// `local-stratum = 1` with no sources makes it answer as synchronised
/// without ever steering a clock, and the bounding set without CAP_SYS_TIME
/// makes sure of the latter. `None` when ntp-daemon is not installed.
fn start_ntp_reference(ns: &str, run_dir: &Path) -> Result<Option<LabProcess>> {
    let Ok(daemon) = cmd::require_tool("ntp-daemon") else {
        return Ok(None);
    };
    let config = run_dir.join("upstream-ntp.toml");
    let text = format!(
        "[observability]\nlog-level = \"warn\"\nansi-colors = false\n\
         [synchronization]\nlocal-stratum = 1\nreference-id = \"LAB\"\n\
         [[server]]\nlisten = \"{UPSTREAM_ROUTER_ADDR}:123\"\n"
    );
    std::fs::write(&config, text).map_err(|e| LabError::io("writing", &config, e))?;
    let log = run_dir.join("upstream-ntp.log");
    let out = std::fs::File::create(&log).map_err(|e| LabError::io("creating", &log, e))?;
    let err = out
        .try_clone()
        .map_err(|e| LabError::io("opening", &log, e))?;
    let mut ntp = cmd::in_netns(ns, "setpriv");
    ntp.args(["--bounding-set", "-sys_time", "--"])
        .arg(daemon)
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    LabProcess::spawn("upstream-ntp", ntp, Some(&run_dir.join("upstream-ntp.pid"))).map(Some)
}

/// Parses python's http.server log lines: `10.0.2.100 - - [date] "GET /x HTTP/1.1" 200 -`.
pub fn http_clients_for(log: &str, path: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(&format!("\"GET {path}")))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_log_yields_client_addresses_per_path() {
        let log = "Serving HTTP on 10.0.2.1 port 80 (http://10.0.2.1:80/) ...\n\
10.0.2.100 - - [25/Nov/2026 23:50:01] \"GET /nat-probe?mac=52:54:00:6b:00:10 HTTP/1.1\" 200 -\n\
10.0.2.7 - - [25/Nov/2026 23:50:02] \"GET / HTTP/1.1\" 200 -\n";
        assert_eq!(
            http_clients_for(log, NAT_PROBE_PATH),
            vec!["10.0.2.100".to_string()]
        );
    }
}
