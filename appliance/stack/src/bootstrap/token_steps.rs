//! The bootstrap's own Vault token and the end of the root token.
//!
//! `vault-token`: the bootstrap works with a token of its own (policy
//! `kindling-bootstrap`, exact paths only), orphan and periodic (768 h,
//! renewed on every run), stored 0600 on the data partition. It is made once
//! with the root token of this run's `sys/init` (or, lab only, a root token
//! regenerated from the local unseal keys and revoked at once).
//!
//! `vault-root`: the root token `sys/init` returned is revoked as soon as the
//! bootstrap token exists; every later run checks, by the root token's
//! accessor (kept on the data partition, not a secret), that it stays
//! revoked. A root token is only ever made again by the operators, with
//! their key shares (`bao operator generate-root`, docs/security/stack.md).
//!
//! Must never store a root token anywhere, nor keep one past the step that
//! needed it.

use super::policies::{self, BOOTSTRAP_POLICY_NAME};
use super::{Outcome, Run, StepError};

/// How long the bootstrap token lives without a renewal: every run renews
/// it, so an appliance switched off longer than this needs the recovery
/// procedure.
pub const BOOTSTRAP_TOKEN_PERIOD: &str = "768h";

fn vault_enabled(run: &Run) -> bool {
    run.opts.site.stack.vault.enabled
}

pub(super) async fn token(run: &Run) -> Result<Outcome, StepError> {
    if !vault_enabled(run) {
        return Ok(Outcome::skipped("stack.vault.enabled = false"));
    }
    let mut note = String::new();
    if let Some(t) = run.store.read_appliance_token()? {
        let api = run.vault.with_token(&t);
        if api.token_valid().await? {
            api.renew_self().await?;
            // Set once: only this step writes it, and it runs once.
            let _ = run.vault_token.set(t);
            return Ok(Outcome::already(
                "the bootstrap's Vault token is valid; renewed",
            ));
        }
        note = "the stored token was rejected; ".into();
    }
    // Creating the token needs root: this run's init, or a root token
    // regenerated from the local keys (lab), revoked right after use.
    let (root, generated) = if let Some(s) = run.fresh_init.get() {
        (s.root_token.clone(), false)
    } else if let Some(keys) = run.store.read_local_unseal()? {
        (run.vault.generate_root(&keys).await?, true)
    } else {
        return Err(StepError::NoRootToken {
            note,
            token_file: run.opts.layout.state_dir().join("appliance-token"),
        });
    };
    let root_api = run.vault.with_token(&root);
    if !generated {
        // Only the accessor of the init's root token stays on the appliance
        // (Vault is unsealed only now): enough for the vault-root step to
        // check and revoke it, useless for anything else.
        let accessor = root_api.own_accessor().await?;
        run.store.write_root_accessor(&accessor)?;
    }
    root_api
        .set_policy(BOOTSTRAP_POLICY_NAME, policies::BOOTSTRAP_POLICY)
        .await?;
    let token = root_api
        .create_orphan_token(
            BOOTSTRAP_POLICY_NAME,
            &[BOOTSTRAP_POLICY_NAME],
            BOOTSTRAP_TOKEN_PERIOD,
        )
        .await?;
    run.store.write_appliance_token(&token)?;
    if generated {
        root_api.revoke_self().await?;
        note.push_str("root token regenerated from the local keys and revoked after use; ");
    }
    let _ = run.vault_token.set(token);
    Ok(Outcome::done(format!(
        "{note}created the bootstrap's Vault token (policy {BOOTSTRAP_POLICY_NAME}, period {BOOTSTRAP_TOKEN_PERIOD})"
    )))
}

pub(super) async fn root(run: &Run) -> Result<Outcome, StepError> {
    if !vault_enabled(run) {
        return Ok(Outcome::skipped("stack.vault.enabled = false"));
    }
    let v = run.vault_authed()?;
    let Some(accessor) = run.store.read_root_accessor()? else {
        // Initialised before kindling kept the accessor: nothing to look
        // the root token up by. Say so rather than claim it is revoked.
        return Ok(Outcome::skipped(format!(
            "no root token accessor in {}: if Vault's first root token was never revoked, revoke it with `bao token revoke -accessor`",
            run.store.root_accessor_file().display()
        )));
    };
    match v.accessor_policies(&accessor).await? {
        None => Ok(Outcome::already(format!(
            "the root token (accessor {accessor}) is revoked"
        ))),
        Some(policies) => {
            v.revoke_accessor(&accessor).await?;
            // Believe it only when Vault no longer knows it.
            if v.accessor_policies(&accessor).await?.is_some() {
                return Err(StepError::RootTokenSurvives { accessor });
            }
            Ok(Outcome::done(format!(
                "revoked the root token (accessor {accessor}, policies {})",
                policies.join(",")
            )))
        }
    }
}
