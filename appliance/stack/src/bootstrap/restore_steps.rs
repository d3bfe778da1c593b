//! Restore steps: a backup restored onto this appliance (the config phase
//! applied it, `kindling_backup::staged`) left the Vault and Consul
//! snapshots in `stack/restore/`, with both services' data directories
//! emptied. These steps put the snapshots into the empty services; every
//! later step then finds the backed-up cluster, as after a warm boot.
//!
//! `vault-restore`: initialises the empty Vault with a throwaway key (the
//! only way to get a token that may force a snapshot in), forces the
//! snapshot, and has init restart Vault, which then holds the backed-up
//! Vault with its seal: only the ORIGINAL shares open it (`vault-unseal`
//! waits for them). `consul-restore`: bootstraps the empty Consul's ACLs
//! (a token allowed the snapshot API) and restores the snapshot, after
//! Vault is unsealed, since the snapshot's Connect CA is that Vault.
//!
//! Must never force a snapshot into a Vault that holds data, nor restore
//! into a Consul whose ACLs someone bootstrapped. Each snapshot file is
//! removed once it is in, so a rerun does not restore twice; a marker
//! says Vault's is in (and whether Vault was restarted onto it) until the
//! restored Vault is open.

use super::service_restart::restart_service;
use super::{Outcome, Run, StepError};
use crate::patience::Backoff;
use crate::snapshot_http::{exchange, Endpoint};
use crate::vault::Health;
use std::path::Path;
use std::time::Instant;

/// What a restore left at `path` (a snapshot, or the marker), if anything.
fn left_at(path: &Path) -> Result<Option<Vec<u8>>, StepError> {
    crate::files::read_opt(path).map_err(|e| StepError::ReadFile {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

fn remove(path: &Path) -> Result<(), StepError> {
    std::fs::remove_file(path).map_err(|source| StepError::WriteFile {
        path: path.to_path_buf(),
        source,
    })
}

pub(super) async fn vault_restore(run: &Run) -> Result<Outcome, StepError> {
    let path = run.opts.layout.restore_vault_snapshot();
    let Some(snapshot) = left_at(&path)? else {
        return vault_restored_earlier(run).await;
    };
    if !run.opts.site.stack.vault.enabled {
        return Ok(Outcome::skipped(format!(
            "a restore left {}, but this site does not enable Vault",
            path.display()
        )));
    }
    if run.vault.health().await? != Health::Uninitialized {
        return Err(StepError::RestoreOntoVaultWithData { snapshot: path });
    }
    let Some(socket) = run.init_socket() else {
        return Err(StepError::RestoreNeedsInit { snapshot: path });
    };
    // A key and token that die with this Vault: the snapshot replaces both.
    let (keys, root) = run.vault.init(1, 1).await?;
    for key in &keys {
        run.vault.unseal(key).await?;
    }
    wait_vault(
        run,
        |h| h == Health::Active,
        "active after the throwaway init",
    )
    .await?;
    let endpoint = Endpoint {
        url: run.opts.layout.vault_local_url(),
        token: root,
        ca_pem: None,
    };
    exchange(
        &endpoint,
        reqwest::Method::POST,
        "/v1/sys/storage/raft/snapshot-force",
        "X-Vault-Token",
        Some(snapshot),
        "POST /v1/sys/storage/raft/snapshot-force",
    )
    .await
    .map_err(|e| StepError::RestoreSnapshot(e.to_string()))?;
    mark(run, FORCED)?;
    remove(&path)?;
    restart_restored(run, socket).await?;
    Ok(Outcome::done(
        "the backed-up Vault restored over the empty one; it opens with the ORIGINAL key shares",
    ))
}

/// What the marker holds: the snapshot is in, but Vault still runs with
/// the throwaway seal; or Vault was restarted onto the restored one.
const FORCED: &[u8] = b"forced\n";
const RESTARTED: &[u8] = b"restarted\n";

fn mark(run: &Run, stage: &[u8]) -> Result<(), StepError> {
    let marker = run.opts.layout.restore_vault_marker();
    kindling_atomic_write::write_atomic_with_mode(&marker, stage, 0o600).map_err(|source| {
        StepError::WriteFile {
            path: marker,
            source,
        }
    })
}

/// Has init restart the Vault a snapshot was forced into, so that it
/// reads the restored seal.
async fn restart_restored(run: &Run, socket: &Path) -> Result<(), StepError> {
    // Vault installs the snapshot and seals itself after it answered: a
    // restart before that would lose the install.
    wait_vault(run, |h| h == Health::Sealed, "sealed by the snapshot").await?;
    // A Vault sealed by a restore keeps the seal it started with; restarted,
    // it reads the restored one (the original shares and threshold).
    restart_service(socket, "vault", run.opts.service_timeout)
        .await
        .map_err(|reason| StepError::RestartVault { reason })?;
    wait_vault(run, |h| h == Health::Sealed, "sealed after its restart").await?;
    mark(run, RESTARTED)?;
    run.say("vault: the backed-up Vault is restored: unseal it with the ORIGINAL key shares (kindling vault unseal)");
    Ok(())
}

/// No snapshot waiting: no restore, or one already forced in. A run cut
/// off before Vault's restart finishes it; after, Vault waits for the
/// original shares until it is open (the marker tells these apart).
async fn vault_restored_earlier(run: &Run) -> Result<Outcome, StepError> {
    let marker = run.opts.layout.restore_vault_marker();
    let Some(stage) = left_at(&marker)? else {
        return Ok(Outcome::skipped("no restore"));
    };
    if stage == FORCED {
        let Some(socket) = run.init_socket() else {
            return Err(StepError::RestoreNeedsInit { snapshot: marker });
        };
        restart_restored(run, socket).await?;
        return Ok(Outcome::done(
            "the backed-up Vault's snapshot was in; Vault restarted onto it; it opens with the ORIGINAL key shares",
        ));
    }
    if run.vault.health().await? == Health::Sealed {
        return Ok(Outcome::already(
            "the backed-up Vault is restored; it opens with the ORIGINAL key shares",
        ));
    }
    remove(&marker)?;
    Ok(Outcome::skipped("no restore (the restored Vault is open)"))
}

/// Waits until Vault's health satisfies `want` (`what` names it in the
/// error), within the service timeout.
async fn wait_vault(
    run: &Run,
    want: impl Fn(Health) -> bool,
    what: &'static str,
) -> Result<(), StepError> {
    let start = Instant::now();
    let mut backoff = Backoff::default();
    let mut last = String::new();
    while start.elapsed() < run.opts.service_timeout {
        match run.vault.health().await {
            Ok(h) if want(h) => return Ok(()),
            Ok(h) => last = format!("{h:?}"),
            Err(e) => last = e.to_string(),
        }
        backoff.pause().await;
    }
    Err(StepError::RestoreVaultState { what, last })
}

pub(super) async fn consul_restore(run: &Run) -> Result<Outcome, StepError> {
    let path = run.opts.layout.restore_consul_snapshot();
    let Some(snapshot) = left_at(&path)? else {
        return Ok(Outcome::skipped("no restore"));
    };
    if !run.opts.site.stack.consul.enabled {
        return Ok(Outcome::skipped(format!(
            "a restore left {}, but this site does not enable Consul",
            path.display()
        )));
    }
    let token = match run.consul.acl_bootstrap(run.opts.service_timeout).await {
        Ok(t) => t,
        Err(crate::consul::ConsulError::AlreadyBootstrapped { .. }) => {
            return Err(StepError::RestoreOntoConsulWithAcls { snapshot: path })
        }
        Err(e) => return Err(e.into()),
    };
    let endpoint = Endpoint {
        url: run.opts.layout.consul_local_url(),
        token: token.secret_id,
        ca_pem: None,
    };
    exchange(
        &endpoint,
        reqwest::Method::PUT,
        "/v1/snapshot",
        "X-Consul-Token",
        Some(snapshot),
        "PUT /v1/snapshot",
    )
    .await
    .map_err(|e| StepError::RestoreSnapshot(e.to_string()))?;
    remove(&path)?;
    Ok(Outcome::done(
        "the backed-up Consul restored (its ACLs, KV and catalog); its management token is the one the restored Vault keeps",
    ))
}
