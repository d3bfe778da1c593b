//! `tls`: a client certificate for the node's Consul and Nomad agents from
//! the appliance's Vault PKI (`pki_int`, role `node`: only the node's own
//! hostname, `client.<dc>.consul`, `client.global.nomad` and `localhost`),
//! its key root-only, and the appliance CA the agents check servers with.

use super::Ctx;
use crate::error::StepError;
use crate::files::paths;

const PKI_MOUNT: &str = "pki_int";
const PKI_ROLE: &str = "node";
const TTL: &str = "720h";

pub(super) async fn run(ctx: &mut Ctx) -> Result<String, StepError> {
    let ca = ctx.ca_pem.clone().ok_or_else(|| {
        StepError::Config(format!(
            "no appliance CA at {}",
            crate::files::Root::on_node(paths::APPLIANCE_CA)
        ))
    })?;
    ctx.root.write(paths::TLS_CA, &ca, 0o644)?;
    let Some(vault) = ctx.vault.as_ref() else {
        if ctx.root.exists(paths::TLS_CERT) && ctx.root.exists(paths::TLS_KEY) {
            return Ok("already on disk".into());
        }
        return Err(StepError::NeedsLogin {
            what: "the node's TLS certificate".into(),
        });
    };
    let who = ctx.identity()?.clone();
    let dc = ctx.stack()?.datacenter.clone();
    let alt = [
        who.hostname.clone(),
        format!("client.{dc}.consul"),
        "client.global.nomad".to_string(),
        "localhost".to_string(),
    ]
    .join(",");
    let mut opts = vaultrs::api::pki::requests::GenerateCertificateRequest::builder();
    opts.common_name(who.hostname.clone())
        .alt_names(alt)
        .ttl(TTL);
    let cert = vaultrs::pki::cert::generate(vault, PKI_MOUNT, PKI_ROLE, Some(&mut opts))
        .await
        .map_err(|e| {
            crate::vault::error(
                &format!("issue a certificate from {PKI_MOUNT}/issue/{PKI_ROLE}"),
                e,
            )
        })?;
    let chain = format!("{}\n{}\n", cert.certificate.trim(), cert.issuing_ca.trim());
    ctx.root.create_dir("etc/kindling/tls", 0o755)?;
    let key = format!("{}\n", cert.private_key.trim());
    ctx.root.write(paths::TLS_KEY, key.as_bytes(), 0o600)?;
    ctx.root.write(paths::TLS_CERT, chain.as_bytes(), 0o644)?;
    ctx.changed.insert("consul");
    ctx.changed.insert("nomad");
    Ok(format!(
        "certificate for {} (serial {}) valid {TTL}",
        who.hostname, cert.serial_number
    ))
}
