//! `vault-storage`: when the site puts Vault on Consul storage, Vault needs a
//! Consul token before it can store anything, and Consul's ACLs deny by
//! default. This step bootstraps Consul's ACLs (the management token waits
//! in memory for the consul-acl step to store it in Vault), creates Vault's
//! storage token, writes it into Vault's rendered config (0600, tmpfs) and
//! the data partition (so the next render has it), and restarts Vault
//! through init's control socket. With raft storage it does nothing.

use super::acl_steps::{bootstrap_consul_acl, SETTLE};
use super::policies::CONSUL_VAULT_STORAGE_RULES;
use super::service_restart::restart_service;
use super::{Outcome, Run, StepError};
use kindling_site::VaultStorage;
use serde_json::{json, Value};

pub(super) async fn vault_storage(run: &Run) -> Result<Outcome, StepError> {
    let st = &run.opts.site.stack;
    if !st.vault.enabled || st.vault.storage != VaultStorage::Consul {
        return Ok(Outcome::skipped("Vault uses its integrated raft storage"));
    }
    let layout = run.opts.layout.clone();
    let consul = &run.consul;
    consul.wait_for_leader(run.opts.service_timeout).await?;
    let token_file = crate::render::consul_storage_token_file(&layout);
    let stored = std::fs::read_to_string(&token_file)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let mut did = Vec::new();
    let token = match stored {
        Some(t) if consul.with_token(&t).token_valid_settled(SETTLE).await? => t,
        _ => {
            let (mgmt, detail) = bootstrap_consul_acl(run, consul).await?;
            let admin = consul.with_token(&mgmt.secret_id);
            *run.consul_unsaved
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(mgmt);
            admin
                .upsert_policy(
                    "vault-storage",
                    CONSUL_VAULT_STORAGE_RULES,
                    "Vault's Consul storage",
                )
                .await?;
            let t = admin
                .create_token("Vault storage", &["vault-storage"], &[])
                .await?;
            kindling_atomic_write::write_atomic_with_mode(
                &token_file,
                t.secret_id.as_bytes(),
                0o600,
            )
            .map_err(|source| StepError::WriteFile {
                path: token_file.clone(),
                source,
            })?;
            did.push(format!("{detail}; Vault's storage token created"));
            t.secret_id
        }
    };
    // Vault reads the token from its config file only at start.
    let config_path = layout.vault_config();
    let text = std::fs::read_to_string(&config_path).map_err(|source| StepError::ReadFile {
        path: config_path.clone(),
        source,
    })?;
    let mut config: Value =
        serde_json::from_str(&text).map_err(|source| StepError::ParseVaultConfig {
            path: config_path.clone(),
            source,
        })?;
    if config
        .pointer("/storage/consul/token")
        .and_then(Value::as_str)
        != Some(token.as_str())
    {
        config["storage"]["consul"]["token"] = json!(token);
        crate::render::write_json(&config_path, &config, 0o640)?;
        crate::files::give_group(&config_path, kindling_init_protocol::accounts::VAULT.gid)
            .map_err(crate::render::RenderError::from)?;
        match run.init_socket() {
            Some(sock) => {
                restart_service(sock, "vault", run.opts.service_timeout)
                    .await
                    .map_err(|reason| StepError::RestartVault { reason })?;
                did.push("Vault restarted with it".into());
            }
            None => {
                return Err(StepError::NoControlSocket {
                    config: config_path,
                })
            }
        }
    }
    Ok(if did.is_empty() {
        Outcome::already("Vault's Consul storage token is valid and in its config")
    } else {
        Outcome::done(did.join("; "))
    })
}
