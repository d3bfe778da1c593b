//! Service-table entries for the stack, in the JSON shape of
//! docs/contracts.md "Service table" (`kindling_init_protocol::ServiceSpec`): kindlingd's
//! service table puts these next to the other services.
//!
//! Each runs as its own account (`kindling_init_protocol::accounts`) with
//! the capabilities it needs: none for Consul, Nomad and the bootstrap (every
//! port is above 1023), `CAP_IPC_LOCK` for Vault (HashiCorp Vault locks its
//! memory unless `disable_mlock`, which OpenBao no longer accepts; OpenBao
//! does not use it).

use crate::layout::StackLayout;
use kindling_init_protocol::accounts::{self, Account};
pub use kindling_init_protocol::table::{LogLimit, Phase, Readiness, RestartPolicy, ServiceSpec};
use kindling_site::{SiteConfig, VaultStorage};
use std::net::SocketAddr;

/// The stack's entries are the service-table type init parses.
pub type ServiceEntry = ServiceSpec;

/// Vault's audit log is rotated past this size, three copies kept: at most
/// 64 MiB on the data partition (plus what is written between two checks).
pub const AUDIT_LOG_MAX_BYTES: u64 = 16 << 20;
pub const AUDIT_LOG_KEEP: u32 = 3;

fn path(p: std::path::PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

fn base(
    name: &str,
    argv: Vec<String>,
    account: Account,
    readiness: Readiness,
    depends_on: Vec<String>,
) -> ServiceEntry {
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut spec = ServiceSpec::new(name, &argv);
    spec.user = account.uid;
    spec.group = account.gid;
    spec.groups = accounts::supplementary_groups(account);
    spec.readiness = readiness;
    spec.depends_on = depends_on;
    spec.restart = RestartPolicy::Always;
    spec.stop_grace_ms = 10_000;
    spec.phase = Phase::Services;
    spec
}

/// consul, vault, nomad (those the site enables) and the one-shot
/// `stack` (the `kindlingd stack-bootstrap` one-shot).
pub fn service_entries(site: &SiteConfig, layout: &StackLayout) -> Vec<ServiceEntry> {
    let st = &site.stack;
    let lo = layout.loopback;
    let p = &layout.ports;
    let mut out = Vec::new();
    if st.consul.enabled {
        out.push(base(
            "consul",
            vec![
                path(layout.binary("consul")),
                "agent".into(),
                format!("-config-file={}", layout.consul_config().display()),
            ],
            accounts::CONSUL,
            // /v1/status/leader needs no ACL token and answers 200 once the agent serves HTTP.
            Readiness::Http {
                url: format!("http://{lo}:{}/v1/status/leader", p.consul_http),
                ok: vec![200],
            },
            Vec::new(),
        ));
    }
    if st.vault.enabled {
        let deps = if st.vault.storage == VaultStorage::Consul {
            vec!["consul".to_string()]
        } else {
            Vec::new()
        };
        let mut vault = base(
            "vault",
            vec![
                path(layout.binary("vault")),
                "server".into(),
                format!("-config={}", layout.vault_config().display()),
            ],
            accounts::VAULT,
            // Any answer means the API is up; sealed (503) and uninitialised (501)
            // are the bootstrap's business, not a reason to restart Vault.
            Readiness::Http {
                url: format!("http://{lo}:{}/v1/sys/health", p.vault_local),
                ok: vec![200, 429, 501, 503],
            },
            deps,
        );
        vault.capabilities = vec!["CAP_IPC_LOCK".to_string()];
        vault
            .env
            .insert("VAULT_ADDR".into(), layout.vault_local_url());
        vault.logs = vec![LogLimit {
            path: path(layout.vault_audit_log()),
            max_bytes: AUDIT_LOG_MAX_BYTES,
            keep: AUDIT_LOG_KEEP,
            // Vault's file audit device reopens its file on SIGHUP.
            reopen_signal: "SIGHUP".to_string(),
        }];
        out.push(vault);
    }
    if st.nomad.enabled {
        let deps = if st.consul.enabled {
            vec!["consul".to_string()]
        } else {
            Vec::new()
        };
        out.push(base(
            "nomad",
            vec![
                path(layout.binary("nomad")),
                "agent".into(),
                format!("-config={}", layout.nomad_config_dir().display()),
            ],
            accounts::NOMAD,
            // Its API is mutual TLS only: a plain probe cannot ask it
            // anything, so accepting connections counts as ready; the
            // bootstrap waits for its leader over TLS.
            Readiness::Tcp {
                addr: SocketAddr::from((lo, p.nomad_http)),
            },
            deps,
        ));
    }
    if !out.is_empty() {
        let deps = out.iter().map(|s| s.name.clone()).collect();
        // Named `stack` so init's readiness line reads `kindling: stack: ready`.
        let mut boot = base(
            "stack",
            vec![path(layout.kindlingd.clone()), "stack-bootstrap".into()],
            accounts::STACK,
            Readiness::Exited,
            deps,
        );
        boot.restart = RestartPolicy::OnFailure;
        boot.oneshot = true;
        // It may wait for an operator's unseal shares; the appliance is up meanwhile.
        boot.required = false;
        boot.stop_grace_ms = 5_000;
        boot.env.insert("RUST_LOG".into(), "info".into());
        out.push(boot);
    }
    out
}
