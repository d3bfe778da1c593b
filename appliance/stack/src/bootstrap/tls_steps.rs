//! `server-trust`: Consul and Nomad check client certificates against a
//! bundle of the appliance CA (the appliance's own clients) and Vault's PKI
//! root (the nodes' certificates, issued by `pki_int`). Vault's root exists
//! only once `vault-setup` ran, so on the first boot the servers start with
//! the appliance CA alone; this step adds Vault's root to the bundle, has
//! Consul reload its TLS files and Nomad restart. Later renders include it
//! from the start.
//!
//! Owns `<state>/vault-pki-ca.pem` and the bundle's refresh. Must never put
//! a certificate in the bundle that Vault did not answer for its own PKI root.

use super::policies::PKI_ROOT_MOUNT;
use super::{service_restart::restart_service, Outcome, Run, StepError};
use crate::tls;
use reqwest::Method;
use serde_json::Value;

pub(super) async fn server_trust(run: &Run) -> Result<Outcome, StepError> {
    let st = &run.opts.site.stack;
    if !(st.consul.enabled || st.nomad.enabled) {
        return Ok(Outcome::skipped("neither Consul nor Nomad runs here"));
    }
    let state = run.opts.layout.state_dir();
    if st.vault.enabled {
        let v = run.vault_authed()?;
        let (status, body) = v
            .raw(
                Method::GET,
                &format!("{PKI_ROOT_MOUNT}/cert/ca"),
                None,
                None,
            )
            .await?;
        let pem = body
            .pointer("/data/certificate")
            .and_then(Value::as_str)
            .filter(|c| status == 200 && c.contains("-----BEGIN CERTIFICATE-----"))
            .ok_or(StepError::NoVaultPkiRoot { status })?;
        let path = tls::vault_pki_ca(&state);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(pem) {
            kindling_atomic_write::write_atomic_with_mode(&path, pem.as_bytes(), 0o644).map_err(
                |source| StepError::WriteFile {
                    path: path.clone(),
                    source,
                },
            )?;
        }
    }
    let changed = tls::write_trust_bundle(&state).map_err(crate::render::RenderError::from)?;
    if !changed {
        return Ok(Outcome::already(
            "Consul and Nomad trust the appliance CA and Vault's PKI root",
        ));
    }
    let mut did = vec![format!(
        "{} now holds the appliance CA and Vault's PKI root",
        tls::trust_bundle_file(&state).display()
    )];
    if st.consul.enabled {
        run.consul_admin()?.reload().await?;
        did.push("Consul reloaded".into());
    }
    if st.nomad.enabled {
        // Nomad reads its CA file at start; the bootstrap may restart it.
        did.push(match run.init_socket() {
            Some(sock) => match restart_service(sock, "nomad", run.opts.service_timeout).await {
                Ok(()) => "Nomad restarted".to_string(),
                Err(e) => format!("restarting Nomad through init failed ({e}); it loads the bundle at its next start"),
            },
            None => "no init control socket; Nomad loads the bundle at its next start".to_string(),
        });
    }
    Ok(Outcome::done(did.join("; ")))
}
