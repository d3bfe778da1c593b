//! `ssh-host-cert`: the node's Ed25519 host key signed by the appliance's
//! SSH CA (role `node-host`: principals the node's own hostname and
//! `<hostname>.<domain>` only), the CA's public key as the user CA, and an
//! sshd drop-in presenting the one and trusting the other.

use super::Ctx;
use crate::error::StepError;
use crate::files::{paths, Root};

const SSH_MOUNT: &str = "ssh";
const SSH_ROLE: &str = "node-host";

pub(super) async fn run(ctx: &mut Ctx) -> Result<String, StepError> {
    let host_key = ctx
        .root
        .read_string(paths::SSH_HOST_KEY_PUB)?
        .ok_or_else(|| {
            StepError::Config(format!(
                "no SSH host key at {} (is openssh-server installed?)",
                Root::on_node(paths::SSH_HOST_KEY_PUB)
            ))
        })?;
    let drop_in = format!(
        "# Written by kindling-node: the host certificate from the appliance's SSH CA,\n# and users with certificates from the same CA may log in.\nHostCertificate {}\nTrustedUserCAKeys {}\n",
        Root::on_node(paths::SSH_HOST_CERT),
        Root::on_node(paths::SSH_USER_CA)
    );
    let Some(vault) = ctx.vault.as_ref() else {
        if ctx.root.exists(paths::SSH_HOST_CERT) && ctx.root.exists(paths::SSH_USER_CA) {
            ctx.root
                .write(paths::SSHD_DROP_IN, drop_in.as_bytes(), 0o644)?;
            return Ok("already on disk".into());
        }
        return Err(StepError::NeedsLogin {
            what: "the SSH host certificate".into(),
        });
    };
    let who = ctx.identity()?.clone();
    let mut principals = vec![who.hostname.clone()];
    if let Some(domain) = ctx.node.domain.as_deref().filter(|d| !d.is_empty()) {
        principals.push(format!("{}.{domain}", who.hostname));
    }
    let mut opts = vaultrs::api::ssh::requests::SignSSHKeyRequest::builder();
    // The key id is the role's to set (the node may not choose it).
    opts.cert_type("host")
        .valid_principals(principals.join(","));
    let signed =
        vaultrs::ssh::ca::sign(vault, SSH_MOUNT, SSH_ROLE, host_key.trim(), Some(&mut opts))
            .await
            .map_err(|e| {
                crate::vault::error(
                    &format!("sign the host key ({SSH_MOUNT}/sign/{SSH_ROLE})"),
                    e,
                )
            })?;
    let ca = vaultrs::ssh::ca::read(vault, SSH_MOUNT)
        .await
        .map_err(|e| crate::vault::error("read the SSH CA's public key", e))?;
    ctx.root.write(
        paths::SSH_HOST_CERT,
        format!("{}\n", signed.signed_key.trim()).as_bytes(),
        0o644,
    )?;
    ctx.root.write(
        paths::SSH_USER_CA,
        format!("{}\n", ca.public_key.trim()).as_bytes(),
        0o644,
    )?;
    ctx.root
        .write(paths::SSHD_DROP_IN, drop_in.as_bytes(), 0o644)?;
    ctx.changed.insert("ssh");
    Ok(format!(
        "host certificate for {} (serial {})",
        principals.join(", "),
        signed.serial_number
    ))
}
