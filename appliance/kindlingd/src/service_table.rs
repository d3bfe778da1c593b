//! SiteConfig → this boot's service table (`/run/kindling/services.json`).
//!
//! Decides which of kindlingd's roles run, in which phase, with which
//! capabilities and dependencies. It only describes; kindling-init supervises.
//! The HashiCorp services are described by the stack crate, which knows their
//! binaries, config files and health endpoints.

use kindling_init::table::{Phase, Readiness, ServiceSpec, ServiceTable};
use kindling_site::SiteConfig;
use std::path::Path;

/// Where kindlingd lives in the image; tests run the binary from `target/`.
fn kindlingd_path() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned))
        .unwrap_or_else(|| "/bin/kindlingd".to_owned())
}

fn kindlingd_role(
    name: &str,
    role: &str,
    caps: &[&str],
    depends_on: &[&str],
    phase: Phase,
) -> ServiceSpec {
    let mut spec = ServiceSpec::new(name, &[&kindlingd_path(), role]);
    spec.env.insert("RUST_LOG".to_owned(), "info".to_owned());
    spec.capabilities = caps.iter().map(|c| (*c).to_owned()).collect();
    spec.depends_on = depends_on.iter().map(|d| (*d).to_owned()).collect();
    spec.readiness = Readiness::Notify;
    spec.phase = phase;
    spec
}

fn api() -> ServiceSpec {
    // Reads status and talks to init's socket; binds an unprivileged port.
    kindlingd_role("api", "api", &[], &[], Phase::Services)
}

/// The full table for `site`. The stack's config files go under `run_dir`
/// and its data under `data_dir` (the data partition).
pub fn build(site: &SiteConfig, run_dir: &Path, data_dir: &Path) -> ServiceTable {
    // net configures links, addresses, routes and nftables, runs the uplink DHCP
    // client (raw sockets) and the LAN DNS forwarder on port 53.
    let mut services = vec![kindlingd_role(
        "net",
        "net",
        &["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"],
        &[],
        Phase::Network,
    )];
    if site.pxe.enabled {
        // DHCP/TFTP/HTTP on privileged ports, SO_BINDTODEVICE and raw RA sockets.
        services.push(kindlingd_role(
            "pxe",
            "pxe",
            &["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
            &["net"],
            Phase::Services,
        ));
    }
    services.push(api());
    // Consul, Vault, Nomad and the one-shot bootstrap: the stack crate writes
    // their config files and describes their entries.
    // A stack that cannot be rendered must not cost the appliance its network
    // and PXE: its services are left out and the reason goes to the console.
    let layout = kindling_stack::StackLayout {
        config_dir: run_dir.join("stack"),
        data_dir: data_dir.to_owned(),
        status_file: run_dir.join("status/stack.json"),
        kindlingd: kindlingd_path().into(),
        ..kindling_stack::StackLayout::appliance()
    };
    match kindling_stack::render(site, &layout) {
        Ok(stack) => services.extend(stack.services),
        Err(e) => println!("degraded: stack: not started: {e}"),
    }
    ServiceTable {
        hostname: Some(site.site.hostname.clone()),
        services,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab_site() -> SiteConfig {
        let toml = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../overlays/lab/site.toml"
        ))
        .unwrap_or_default();
        toml::from_str(&toml).unwrap_or_else(|e| panic!("lab site.toml does not parse: {e}"))
    }

    #[test]
    fn lab_table_is_valid_and_ordered() {
        let dir = std::env::temp_dir();
        let table = build(&lab_site(), &dir, &dir);
        if let Err(e) = table.validate("lab") {
            panic!("lab service table is invalid: {e}");
        }
        let names: Vec<_> = table.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["net", "pxe", "api"]);
        assert_eq!(
            table.get("pxe").map(|s| s.depends_on.clone()),
            Some(vec!["net".to_owned()])
        );
        assert_eq!(table.get("net").map(|s| s.phase), Some(Phase::Network));
        assert_eq!(table.hostname.as_deref(), Some("kindling-lab"));
    }

    #[test]
    fn pxe_disabled_leaves_it_out() {
        let mut site = lab_site();
        site.pxe.enabled = false;
        let dir = std::env::temp_dir();
        let table = build(&site, &dir, &dir);
        assert!(table.get("pxe").is_none());
        assert!(table.get("api").is_some());
    }

    #[test]
    fn stack_services_follow_the_site_and_write_under_run_dir() {
        let mut site = lab_site();
        site.stack.consul.enabled = true;
        site.stack.vault.enabled = true;
        site.stack.vault.recipients =
            vec!["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".to_owned()];
        let dir = tempfile::tempdir().unwrap();
        let (run, data) = (dir.path().join("run"), dir.path().join("data"));
        let table = build(&site, &run, &data);
        table.validate("stack").unwrap();
        let names: Vec<_> = table.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["net", "pxe", "api", "consul", "vault", "stack"]);
        assert!(
            run.join("stack/consul.json").is_file(),
            "consul config not under run_dir"
        );
        assert!(
            data.join("consul").is_dir(),
            "consul data dir not under data_dir"
        );
    }

    #[test]
    fn a_stack_that_cannot_render_leaves_the_rest_running() {
        let mut site = lab_site();
        site.stack.vault.enabled = true; // no recipients: cannot be rendered
        let dir = tempfile::tempdir().unwrap();
        let table = build(&site, dir.path(), dir.path());
        let names: Vec<_> = table.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["net", "pxe", "api"]);
    }
}
