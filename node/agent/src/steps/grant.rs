//! `grant`: unwraps the response-wrapped secret-id once. The secret-id then
//! lives in memory until `login`; the state file records the grant's hash
//! before anything else, so no later run unwraps it again.

use super::Ctx;
use crate::error::StepError;
use crate::files::paths;
use crate::state::{grant_hash, now, GrantRecord};
use serde_json::Value;

pub(super) async fn run(ctx: &mut Ctx) -> Result<String, StepError> {
    let Some(enrollment) = ctx.enrollment.clone() else {
        return match &ctx.state.grant {
            Some(g) => Ok(format!(
                "enrolled before (grant redeemed at {}); no grant on disk",
                g.unwrapped_at
            )),
            None => Err(StepError::NoGrant(ctx.root.join(paths::ENROLLMENT))),
        };
    };
    let hash = grant_hash(&enrollment.wrapped_secret_id);
    if let Some(g) = ctx.state.grant.as_ref().filter(|g| g.sha256 == hash) {
        return Ok(format!(
            "redeemed before (at {}); not unwrapping it again",
            g.unwrapped_at
        ));
    }
    // The wrapping token authenticates the unwrap itself.
    let vault = crate::vault::client(
        &enrollment.vault_addr,
        &enrollment.wrapped_secret_id,
        &ctx.http,
    )?;
    let answer: Value =
        vaultrs::sys::wrapping::unwrap(&vault, None)
            .await
            .map_err(|e| match e {
                // Vault: "wrapping token is not valid or does not exist".
                vaultrs::error::ClientError::APIError { code: 400, errors } => {
                    StepError::GrantUsed(errors.join("; "))
                }
                other => crate::vault::error("unwrap the grant", other),
            })?;
    let secret_id = answer
        .get("secret_id")
        .or_else(|| answer.pointer("/data/secret_id"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| StepError::Vault("the unwrapped grant holds no secret_id".into()))?
        .to_string();
    let renewed = ctx.state.grant.is_some();
    ctx.state.grant = Some(GrantRecord {
        sha256: hash,
        unwrapped_at: now(),
    });
    ctx.state.save(&ctx.root)?;
    ctx.secret_id = Some(secret_id);
    Ok(if renewed {
        "a new grant (the node was re-armed) unwrapped; its secret-id is in memory only".into()
    } else {
        "unwrapped; the secret-id is in memory only".into()
    })
}
