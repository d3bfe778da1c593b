//! `kindlingd pxe`: the PXE service (DHCP, TFTP, HTTP boot, RAs) as one
//! long-running process supervised by kindling-init.
//!
//! Owns argument parsing and the readiness handshake only; everything else
//! is `kindling_pxe::service`.
//!
//! usage: kindlingd pxe [--site FILE] [--interface IF] [--boot-dir DIR]
//!        [--artifacts-dir DIR]… [--state-dir DIR] [--repo-dir DIR]
//!        [--status-file FILE] [--dhcp-port N] [--client-port N]
//!        [--proxy-port N] [--tftp-port N] [--http-max-connections N]
//! The site file defaults to `$KINDLING_SITE_JSON` or /run/kindling/site.json;
//! `--interface` to the interface holding the LAN address.

use anyhow::Context;
use kindling_pxe::service::{self, ServiceOptions};
use kindling_pxe::{PxePaths, PxeSettings};
use std::path::PathBuf;

const USAGE: &str = "usage: kindlingd pxe [--site FILE] [--interface IF] [--boot-dir DIR] [--artifacts-dir DIR]… \
[--state-dir DIR] [--repo-dir DIR] [--status-file FILE] [--dhcp-port N] [--client-port N] [--proxy-port N] \
[--tftp-port N] [--http-max-connections N]";

struct Args {
    site: PathBuf,
    paths: PxePaths,
    options: ServiceOptions,
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let mut site = crate::site::effective_path();
    let mut paths = PxePaths::default();
    let mut options = ServiceOptions::default();
    let mut artifact_dirs: Vec<PathBuf> = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let port = |v: &String| {
            v.parse::<u16>()
                .with_context(|| format!("{flag}: {v:?} is not a port number"))
        };
        match flag.as_str() {
            "--site" => site = value()?.into(),
            "--interface" => options.interface = Some(value()?.clone()),
            "--boot-dir" => paths.boot_dir = value()?.into(),
            "--artifacts-dir" => artifact_dirs.push(value()?.into()),
            "--state-dir" => paths.state_dir = value()?.into(),
            "--repo-dir" => paths.repo_dir = Some(value()?.into()),
            "--status-file" => paths.status_file = value()?.into(),
            "--dhcp-port" => options.dhcp_port = port(value()?)?,
            "--client-port" => options.client_port = port(value()?)?,
            "--proxy-port" => options.proxy_port = port(value()?)?,
            "--tftp-port" => options.tftp_port = port(value()?)?,
            "--http-max-connections" => {
                let v = value()?;
                options.http_max_connections = v
                    .parse()
                    .with_context(|| format!("{flag}: {v:?} is not a number"))?;
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if !artifact_dirs.is_empty() {
        paths.artifact_dirs = artifact_dirs;
    }
    Ok(Args {
        site,
        paths,
        options,
    })
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    crate::console::init("pxe");
    let args = parse(args)?;
    let bytes =
        std::fs::read(&args.site).with_context(|| format!("reading {}", args.site.display()))?;
    let site: kindling_site::SiteConfig = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a valid site config", args.site.display()))?;
    if !site.pxe.enabled {
        anyhow::bail!(
            "pxe.enabled is false in {}: nothing to serve",
            args.site.display()
        );
    }
    let settings = PxeSettings::from_site(&site, args.paths)
        .with_context(|| format!("in {}", args.site.display()))?;
    let mut options = args.options;
    options.enrollment = crate::enroll::source(&site);
    service::run(settings, options, crate::notify_ready)?;
    Ok(())
}
