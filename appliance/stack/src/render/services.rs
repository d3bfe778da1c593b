//! Service-table entries for the stack, in the JSON shape of
//! docs/contracts.md "Service table" (`kindling_init_protocol::ServiceSpec`): kindlingd's
//! service table puts these next to the other services.

use crate::layout::StackLayout;
pub use kindling_init_protocol::table::{Phase, Readiness, RestartPolicy, ServiceSpec};
use kindling_site::{SiteConfig, VaultStorage};
use std::collections::BTreeMap;

/// The stack's entries are the service-table type init parses.
pub type ServiceEntry = ServiceSpec;

fn path(p: std::path::PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

/// consul, vault, nomad (those the site enables) and the one-shot
/// `stack` (the `kindlingd stack-bootstrap` one-shot). None needs a capability: every port is above 1023.
pub fn service_entries(site: &SiteConfig, layout: &StackLayout) -> Vec<ServiceEntry> {
    let st = &site.stack;
    let lo = layout.loopback;
    let p = &layout.ports;
    let base = |name: &str, argv: Vec<String>, readiness: Readiness, depends_on: Vec<String>| {
        ServiceEntry {
            name: name.to_string(),
            argv,
            env: BTreeMap::new(),
            user: 0,
            group: 0,
            capabilities: Vec::new(),
            depends_on,
            readiness,
            restart: RestartPolicy::Always,
            oneshot: false,
            required: true,
            stop_grace_ms: 10_000,
            phase: Phase::Services,
        }
    };
    let mut out = Vec::new();
    if st.consul.enabled {
        out.push(base(
            "consul",
            vec![
                path(layout.binary("consul")),
                "agent".into(),
                format!("-config-file={}", layout.consul_config().display()),
            ],
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
            // Any answer means the API is up; sealed (503) and uninitialised (501)
            // are the bootstrap's business, not a reason to restart Vault.
            Readiness::Http {
                url: format!("http://{lo}:{}/v1/sys/health", p.vault_api),
                ok: vec![200, 429, 501, 503],
            },
            deps,
        );
        vault
            .env
            .insert("VAULT_ADDR".into(), layout.vault_local_url());
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
            Readiness::Http {
                url: format!("http://{lo}:{}/v1/status/leader", p.nomad_http),
                ok: vec![200],
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
