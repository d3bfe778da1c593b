//! Vault steps: API up, init (once, secrets encrypted before anything else),
//! unseal (fresh keys, local keys, or the operator's shares). Setup (audit,
//! KV, AppRole, SSH CA, PKI, policies, roles) is `setup_steps`; the
//! bootstrap's token and the root token's revocation are `token_steps`.

use super::{Outcome, Run, Step, StepError};
use crate::patience::Backoff;
use crate::secrets::{self, InitSecrets};
use crate::status::{OverallState, StepState};
use crate::vault::Health;
use kindling_site::UnsealMode;
use std::time::{Duration, Instant};

fn vault_enabled(run: &Run) -> bool {
    run.opts.site.stack.vault.enabled
}

pub(super) async fn api(run: &Run) -> Result<Outcome, StepError> {
    if !vault_enabled(run) {
        return Ok(Outcome::skipped("stack.vault.enabled = false"));
    }
    let start = Instant::now();
    let mut last = String::new();
    let mut backoff = Backoff::default();
    while start.elapsed() < run.opts.service_timeout {
        match run.vault.health().await {
            Ok(Health::Other(code)) => last = format!("health answered HTTP {code}"),
            Ok(h) => return Ok(Outcome::done(format!("answering ({h:?})"))),
            Err(e) => last = e.to_string(),
        }
        if run.stopping() {
            return Err(StepError::StoppedWaiting {
                what: "Vault's API",
            });
        }
        backoff.pause().await;
    }
    // OpenBao (2.x) dropped Consul storage and exits at once with such a config.
    let hint = if run.opts.site.stack.vault.storage == kindling_site::VaultStorage::Consul {
        " (stack.vault.storage = \"consul\" needs HashiCorp Vault: OpenBao has no Consul storage; see Vault's log)"
    } else {
        ""
    };
    Err(StepError::WaitVaultApi {
        secs: run.opts.service_timeout.as_secs(),
        last,
        hint,
    })
}

pub(super) async fn init(run: &Run) -> Result<Outcome, StepError> {
    if !vault_enabled(run) {
        return Ok(Outcome::skipped("stack.vault.enabled = false"));
    }
    let file = run.store.init_file();
    let have_file = run.store.read_init()?.is_some();
    run.set_init_secrets("/v1/vault/init-secrets");
    match run.vault.health().await? {
        Health::Uninitialized => {}
        Health::Other(code) => return Err(StepError::VaultHealth(code)),
        _ if have_file => return Ok(Outcome::already("initialised earlier by this appliance")),
        _ if run.store.was_started("vault-init") => {
            return Err(StepError::InitAnswerLost {
                secrets_file: file,
                vault_data: run.opts.layout.vault_data(),
            })
        }
        _ => {
            return Err(StepError::InitForeignVault {
                secrets_file: file,
                vault_data: run.opts.layout.vault_data(),
            })
        }
    }
    let cfg = &run.opts.site.stack.vault;
    let recipients = secrets::parse_recipients(&cfg.recipients)?;
    let mut detail = String::new();
    if have_file {
        // A Vault with empty storage but an old secrets file: keep the old
        // file under another name rather than overwrite it.
        let now = kindling_clock::unix_now();
        let aside = file.with_extension(format!("age.superseded-{now}"));
        std::fs::rename(&file, &aside).map_err(|source| StepError::SetOldSecretsAside {
            path: file.clone(),
            source,
        })?;
        detail.push_str(&format!(
            "Vault storage was empty; the old secrets file was kept as {}. ",
            aside.display()
        ));
    }
    // Prove the state dir can take the secrets file before Vault hands out
    // keys that would otherwise exist only in memory (e.g. a full disk).
    let probe = run.opts.layout.state_dir().join(".space-probe");
    kindling_atomic_write::write_atomic_with_mode(&probe, &[0u8; 16 * 1024], 0o600).map_err(
        |source| StepError::ProbeSecretsSpace {
            path: probe.clone(),
            source,
        },
    )?;
    let _ = std::fs::remove_file(&probe);

    run.store.mark_started("vault-init")?;
    let (keys, root_token) = run.vault.init(cfg.key_shares, cfg.key_threshold).await?;
    let secrets = InitSecrets {
        keys_base64: keys,
        root_token,
        shares: cfg.key_shares,
        threshold: cfg.key_threshold,
        created_unix: kindling_clock::unix_now(),
    };
    let armored = secrets::encrypt_init(&secrets, &recipients)?;
    run.store.write_init(&armored)?;
    if cfg.unseal == UnsealMode::Local {
        let threshold = usize::from(cfg.key_threshold);
        run.store
            .write_local_unseal(&secrets.keys_base64[..threshold.min(secrets.keys_base64.len())])?;
        run.say("WARNING: unseal = \"local\": Vault unseal keys are kept in plain text on the data partition (lab only)");
        detail.push_str("LAB ONLY: unseal keys also kept locally. ");
    }
    run.store.clear_started("vault-init")?;
    detail.push_str(&format!(
        "initialised ({} shares, threshold {}); keys and root token encrypted to {} recipient(s) in {}",
        cfg.key_shares,
        cfg.key_threshold,
        recipients.len(),
        file.display()
    ));
    // Set once: only this step writes it, and it runs once.
    let _ = run.fresh_init.set(secrets);
    Ok(Outcome::done(detail))
}

pub(super) async fn unseal(run: &Run) -> Result<Outcome, StepError> {
    if !vault_enabled(run) {
        return Ok(Outcome::skipped("stack.vault.enabled = false"));
    }
    let start = Instant::now();
    let mut submitted_here = false;
    let mut announced = false;
    let mut last_progress = u64::MAX;
    // A single node turns active a moment after it is unsealed.
    let mut standby_backoff = Backoff::up_to(Duration::from_millis(100));
    loop {
        match run.vault.health().await? {
            // A single node is standby only while it takes over: writes
            // fail ("readonly storage") until it is active.
            Health::Standby if start.elapsed() < run.opts.service_timeout => {
                standby_backoff.pause().await;
                continue;
            }
            Health::Standby => return Err(StepError::VaultStaysStandby),
            Health::Active => {
                run.set_overall(OverallState::Running);
                return Ok(if submitted_here {
                    Outcome::done("unsealed")
                } else {
                    Outcome::already("already unsealed")
                });
            }
            Health::Sealed => {}
            Health::Uninitialized => return Err(StepError::VaultNotInitialised),
            Health::Other(code) => return Err(StepError::VaultHealth(code)),
        }
        let keys = if let Some(s) = run.fresh_init.get() {
            Some((s.keys_base64.clone(), "the keys from this run's init"))
        } else if run.opts.site.stack.vault.unseal == UnsealMode::Local {
            run.store
                .read_local_unseal()?
                .map(|k| (k, "the local unseal keys (lab only)"))
        } else {
            None
        };
        if let Some((keys, source)) = keys {
            if run.fresh_init.get().is_none() {
                run.say("WARNING: unsealing Vault with keys kept in plain text on the data partition (unseal = \"local\", lab only)");
            }
            if submitted_here {
                return Err(StepError::StillSealed { keys: source });
            }
            submitted_here = true;
            for key in &keys {
                match run.vault.unseal(key).await {
                    Ok(s) if !s.sealed => break,
                    Ok(_) => {}
                    Err(e) => {
                        return Err(StepError::SubmitUnsealKeys {
                            keys: source,
                            source: e,
                        })
                    }
                }
            }
            continue;
        }
        // Manual mode: the operator submits shares through the status API.
        let seal = run.vault.seal_status().await?;
        if seal.progress != last_progress {
            last_progress = seal.progress;
            run.note(
                Step::VaultUnseal,
                StepState::Waiting,
                format!(
                    "sealed: {} of {} key shares submitted; run `kindling vault unseal` (it reaches the appliance as `kindling login` set up)",
                    seal.progress, seal.threshold
                ),
            );
            run.set_overall(OverallState::Waiting);
            run.flush();
        }
        if !announced {
            announced = true;
            run.say(&format!(
                "vault sealed: waiting for {} operator key shares (kindling vault unseal)",
                seal.threshold
            ));
        }
        if run.stopping() {
            return Err(StepError::StoppedWaiting {
                what: "the operators' key shares",
            });
        }
        if let Some(limit) = run.opts.unseal_timeout {
            if start.elapsed() >= limit {
                return Err(StepError::WaitOperatorShares {
                    secs: limit.as_secs(),
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Shares arriving through the API unseal Vault without us; the next
        // health check notices. Count that as this run's doing.
        if matches!(
            run.vault.health().await,
            Ok(Health::Active | Health::Standby)
        ) {
            submitted_here = true;
        }
    }
}
