//! `login`: AppRole login with the role-id and the unwrapped secret-id
//! (which is dropped right after), then who Vault says the node is: the
//! token carries the secret-id's metadata (mac, profile, hostname), which
//! the appliance set when it minted the grant.

use super::Ctx;
use crate::error::StepError;
use crate::inputs::mac_key;
use crate::state::NodeIdentity;

const APPROLE_MOUNT: &str = "approle";

pub(super) async fn run(ctx: &mut Ctx) -> Result<String, StepError> {
    let Some(secret_id) = ctx.secret_id.take() else {
        let who = ctx.identity()?;
        return Ok(format!(
            "no fresh grant; enrolled before as {} ({})",
            who.hostname, who.mac
        ));
    };
    let enrollment = ctx
        .enrollment
        .as_ref()
        .ok_or_else(|| StepError::Vault("no enrollment to log in with".into()))?;
    let anonymous = crate::vault::client(&enrollment.vault_addr, "", &ctx.http)?;
    let auth =
        vaultrs::auth::approle::login(&anonymous, APPROLE_MOUNT, &enrollment.role_id, &secret_id)
            .await
            .map_err(|e| crate::vault::error("AppRole login", e))?;
    drop(secret_id);
    let vault = crate::vault::client(&enrollment.vault_addr, &auth.client_token, &ctx.http)?;
    let me = vaultrs::token::lookup_self(&vault)
        .await
        .map_err(|e| crate::vault::error("token lookup-self", e))?;
    let meta = me.meta.unwrap_or_default();
    let field = |k: &str| meta.get(k).cloned().unwrap_or_default();
    let identity = NodeIdentity {
        hostname: field("hostname"),
        mac: field("mac"),
        profile: field("profile"),
        tags: Default::default(),
    };
    if identity.hostname.is_empty() || identity.mac.is_empty() {
        return Err(StepError::Vault(
            "the login's metadata names no hostname or mac".into(),
        ));
    }
    let ours = mac_key(&ctx.node.mac);
    if identity.mac != ours {
        return Err(StepError::WrongNode {
            granted: identity.mac,
            ours,
        });
    }
    let detail = format!(
        "logged in as {} ({}, profile {})",
        identity.hostname, identity.mac, identity.profile
    );
    ctx.state.node = Some(identity);
    ctx.state.save(&ctx.root)?;
    ctx.vault = Some(vault);
    Ok(detail)
}
