//! Consul and Nomad steps: Consul's readiness, ACL bootstrap (once; a
//! half-done bootstrap of our own is finished with the documented reset,
//! someone else's is reported and left alone), Nomad's integration tokens,
//! and the Consul KV mirror of profiles and MAC assignments (seed 004). The
//! Consul tokens kindling hands out are `consul_token_steps`.

use super::policies::{self, KV_MOUNT};
use super::service_restart::restart_service;
use super::{Outcome, Run, StepError};
use crate::consul::{AclToken, ConsulApi, ConsulError};
use crate::nomad::{NomadApi, NomadError};
use serde_json::{json, Value};

use crate::patience::Backoff;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a token rejection must persist before it is believed (ACL
/// state loads a moment after a restarted server elects itself).
pub(super) const SETTLE: Duration = Duration::from_secs(10);
const CONSUL_MANAGEMENT: &str = policies::CONSUL_MANAGEMENT_KV;
const NOMAD_MANAGEMENT: &str = policies::NOMAD_MANAGEMENT_KV;
const NOMAD_VAULT: &str = "stack/nomad/vault-token";
const NOMAD_CONSUL: &str = "stack/nomad/consul-token";

pub(super) async fn stored_secret(run: &Run, path: &str) -> Result<Option<String>, StepError> {
    let v = run.vault_authed()?;
    Ok(v.kv_read(KV_MOUNT, path).await?.and_then(|d| {
        d.get("secret_id")
            .and_then(Value::as_str)
            .map(str::to_string)
    }))
}

pub(super) async fn store_secret(
    run: &Run,
    path: &str,
    accessor: &str,
    secret: &str,
) -> Result<(), StepError> {
    run.vault_authed()?
        .kv_write(
            KV_MOUNT,
            path,
            &json!({"accessor_id": accessor, "secret_id": secret}),
        )
        .await?;
    Ok(())
}

/// The Consul token recorded in Vault at `path` while Consul still accepts
/// it; otherwise a new one with `policy`, recorded there. True when new.
pub(super) async fn kept_or_new_consul_token(
    run: &Run,
    consul: &ConsulApi,
    path: &str,
    description: &str,
    policy: &str,
) -> Result<(String, bool), StepError> {
    if let Some(secret) = stored_secret(run, path).await? {
        if consul
            .with_token(&secret)
            .token_valid_settled(SETTLE)
            .await?
        {
            return Ok((secret, false));
        }
    }
    let t = consul.create_token(description, &[policy], &[]).await?;
    store_secret(run, path, &t.accessor_id, &t.secret_id).await?;
    Ok((t.secret_id, true))
}

/// 0640: the data directory is the service's group's (setgid), so the
/// service reads what the bootstrap wrote.
fn write_reset_file(path: &Path, index: u64) -> Result<(), StepError> {
    kindling_atomic_write::write_atomic_with_mode(path, index.to_string().as_bytes(), 0o640)
        .map_err(|source| StepError::WriteFile {
            path: path.to_path_buf(),
            source,
        })
}

/// Bootstraps Consul's ACL system, once. The "started" marker tells our own
/// interrupted bootstrap (finished with Consul's documented reset) from
/// someone else's (reported, left alone). The marker is cleared by the
/// caller once the management token is stored in Vault.
pub(super) async fn bootstrap_consul_acl(
    run: &Run,
    consul: &ConsulApi,
) -> Result<(AclToken, String), StepError> {
    let ours_before = run.store.was_started("consul-acl-bootstrap");
    run.store.mark_started("consul-acl-bootstrap")?;
    let mut detail = String::from("ACLs bootstrapped");
    let token = match consul.acl_bootstrap(run.opts.service_timeout).await {
        Ok(t) => t,
        Err(ConsulError::AlreadyBootstrapped { reset_index }) if ours_before => {
            // Our own earlier bootstrap crashed before its token was stored:
            // Consul's documented reset lets us bootstrap once more.
            write_reset_file(
                &run.opts.layout.consul_data().join("acl-bootstrap-reset"),
                reset_index,
            )?;
            detail = format!("ACLs re-bootstrapped with Consul's reset (index {reset_index}) after an interrupted first attempt");
            consul.acl_bootstrap(run.opts.service_timeout).await?
        }
        Err(ConsulError::AlreadyBootstrapped { .. }) => {
            run.store.clear_started("consul-acl-bootstrap")?;
            return Err(StepError::ConsulAclForeign {
                kv_path: CONSUL_MANAGEMENT,
            });
        }
        Err(e) => return Err(e.into()),
    };
    Ok((token, detail))
}

/// `consul-api`: everything kindling waits for from Consul before its ACL
/// work, a leader (seconds after a start: Raft's election timeout) and ACLs
/// out of legacy mode. Nothing here needs Vault, so this runs while Vault
/// initialises and unseals, and `consul-acl` finds Consul ready.
pub(super) async fn consul_api(run: &Run) -> Result<Outcome, StepError> {
    if !run.opts.site.stack.consul.enabled {
        return Ok(Outcome::skipped("stack.consul.enabled = false"));
    }
    let start = Instant::now();
    let mut backoff = Backoff::default();
    let mut last = String::from("no answer yet");
    while start.elapsed() < run.opts.service_timeout {
        match run.consul.acl_not_ready().await {
            Ok(None) => return Ok(Outcome::done("leader elected; ACL system answering")),
            Ok(Some(why)) => last = why,
            Err(e) => last = e.to_string(),
        }
        if run.stopping() {
            return Err(StepError::StoppedWaiting { what: "Consul" });
        }
        backoff.pause().await;
    }
    Err(StepError::WaitConsulApi {
        secs: run.opts.service_timeout.as_secs(),
        last,
    })
}

pub(super) async fn consul_acl(run: &Run) -> Result<Outcome, StepError> {
    if !run.opts.site.stack.consul.enabled {
        return Ok(Outcome::skipped("stack.consul.enabled = false"));
    }
    let consul = &run.consul;
    consul.wait_for_leader(run.opts.service_timeout).await?;
    if let Some(secret) = stored_secret(run, CONSUL_MANAGEMENT).await? {
        if !consul
            .with_token(&secret)
            .token_valid_settled(SETTLE)
            .await?
        {
            return Err(StepError::ConsulRejectsStoredToken {
                kv_path: CONSUL_MANAGEMENT,
            });
        }
        // Set once: only this step writes it, and it runs once.
        let _ = run.consul_management.set(secret);
        return Ok(Outcome::already(
            "ACLs bootstrapped earlier; management token in Vault is valid",
        ));
    }
    // The vault-storage step may have bootstrapped already in this run.
    let unsaved = run
        .consul_unsaved
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let (token, detail) = match unsaved {
        Some(t) => (
            t,
            String::from("ACLs bootstrapped (for Vault's Consul storage)"),
        ),
        None => bootstrap_consul_acl(run, consul).await?,
    };
    store_secret(run, CONSUL_MANAGEMENT, &token.accessor_id, &token.secret_id).await?;
    run.store.clear_started("consul-acl-bootstrap")?;
    let _ = run.consul_management.set(token.secret_id);
    Ok(Outcome::done(format!(
        "{detail}; management token stored in Vault"
    )))
}

pub(super) async fn nomad_acl(run: &Run) -> Result<Outcome, StepError> {
    if !run.opts.site.stack.nomad.enabled {
        return Ok(Outcome::skipped("stack.nomad.enabled = false"));
    }
    let nomad = NomadApi::appliance(&run.opts.layout)?;
    nomad.wait_for_leader(run.opts.service_timeout).await?;
    if let Some(secret) = stored_secret(run, NOMAD_MANAGEMENT).await? {
        if !nomad
            .with_token(&secret)
            .token_valid_settled(SETTLE)
            .await?
        {
            return Err(StepError::NomadRejectsStoredToken {
                kv_path: NOMAD_MANAGEMENT,
            });
        }
        let _ = run.nomad_management.set(secret);
        return Ok(Outcome::already(
            "ACLs bootstrapped earlier; management token in Vault is valid",
        ));
    }
    let ours_before = run.store.was_started("nomad-acl-bootstrap");
    run.store.mark_started("nomad-acl-bootstrap")?;
    let mut detail = String::from("ACLs bootstrapped");
    let token = match nomad.acl_bootstrap().await {
        Ok(t) => t,
        Err(NomadError::AlreadyBootstrapped { reset_index }) if ours_before => {
            write_reset_file(
                &run.opts
                    .layout
                    .nomad_data()
                    .join("server")
                    .join("acl-bootstrap-reset"),
                reset_index,
            )?;
            detail = format!("ACLs re-bootstrapped with Nomad's reset (index {reset_index}) after an interrupted first attempt");
            nomad.acl_bootstrap().await?
        }
        Err(NomadError::AlreadyBootstrapped { .. }) => {
            run.store.clear_started("nomad-acl-bootstrap")?;
            return Err(StepError::NomadAclForeign {
                kv_path: NOMAD_MANAGEMENT,
            });
        }
        Err(e) => return Err(e.into()),
    };
    store_secret(run, NOMAD_MANAGEMENT, &token.accessor_id, &token.secret_id).await?;
    run.store.clear_started("nomad-acl-bootstrap")?;
    let _ = run.nomad_management.set(token.secret_id);
    Ok(Outcome::done(format!(
        "{detail}; management token stored in Vault"
    )))
}

/// Nomad's Vault and Consul tokens, written to `nomad.d/50-kindling-tokens.json`
/// (0640, Nomad's group); Nomad is restarted through init when that file changed.
pub(super) async fn nomad_integration(run: &Run) -> Result<Outcome, StepError> {
    let st = &run.opts.site.stack;
    if !st.nomad.enabled {
        return Ok(Outcome::skipped("stack.nomad.enabled = false"));
    }
    let vault = run.vault_authed()?;
    let mut file = json!({});
    let vault_token = match vault.kv_read(KV_MOUNT, NOMAD_VAULT).await? {
        Some(v) if v.get("token").and_then(Value::as_str).is_some() => {
            v["token"].as_str().unwrap_or_default().to_string()
        }
        _ => {
            let t = vault
                .create_role_token("nomad-server", "nomad-server")
                .await?;
            vault
                .kv_write(KV_MOUNT, NOMAD_VAULT, &json!({"token": t}))
                .await?;
            t
        }
    };
    file["vault"] =
        json!({"enabled": true, "token": vault_token, "create_from_role": "nomad-cluster"});
    if st.consul.enabled {
        let consul = run.consul_admin()?;
        consul
            .upsert_policy(
                "nomad-server",
                policies::CONSUL_NOMAD_SERVER_RULES,
                "Nomad servers",
            )
            .await?;
        let token = match stored_secret(run, NOMAD_CONSUL).await? {
            Some(s) if consul.with_token(&s).token_valid_settled(SETTLE).await? => s,
            _ => {
                let t = consul
                    .create_token("Nomad server", &["nomad-server"], &[])
                    .await?;
                store_secret(run, NOMAD_CONSUL, &t.accessor_id, &t.secret_id).await?;
                t.secret_id
            }
        };
        file["consul"] = json!({"token": token});
    }
    let path = run
        .opts
        .layout
        .nomad_config_dir()
        .join("50-kindling-tokens.json");
    let body = serde_json::to_vec_pretty(&file).unwrap_or_default();
    if std::fs::read(&path).ok().as_deref() == Some(body.as_slice()) {
        return Ok(Outcome::already("Nomad's Vault and Consul tokens in place"));
    }
    // 0640 in Nomad's setgid config directory: Nomad's group reads it.
    kindling_atomic_write::write_atomic_with_mode(&path, &body, 0o640).map_err(|source| {
        StepError::WriteFile {
            path: path.clone(),
            source,
        }
    })?;
    let restart = match run.init_socket() {
        Some(sock) => match restart_service(sock, "nomad", run.opts.service_timeout).await {
            Ok(()) => "Nomad restarted to load them".to_string(),
            Err(e) => format!(
                "restarting Nomad through init failed ({e}); it loads them at its next start"
            ),
        },
        None => "no init control socket; Nomad loads them at its next start".to_string(),
    };
    Ok(Outcome::done(format!(
        "wrote {}; {restart}",
        path.display()
    )))
}

/// The overlay's profiles and `[[nodes]]`, readable with `consul kv get
/// -recurse kindling/`. Runtime assignments (`kindling/assignments/`) are
/// not the bootstrap's: `kindlingd api` keeps them in step continuously.
pub(super) async fn kv_mirror(run: &Run) -> Result<Outcome, StepError> {
    if !run.opts.site.stack.consul.enabled {
        return Ok(Outcome::skipped("stack.consul.enabled = false"));
    }
    let consul = run.consul_admin()?;
    let mut wanted: Vec<(String, String)> = Vec::new();
    for (name, profile) in &run.opts.site.profiles {
        wanted.push((
            format!("kindling/profiles/{name}"),
            serde_json::to_string_pretty(profile).unwrap_or_default(),
        ));
    }
    for node in &run.opts.site.nodes {
        wanted.push((
            format!("kindling/nodes/{}", node.mac),
            serde_json::to_string_pretty(node).unwrap_or_default(),
        ));
    }
    let (mut written, mut same) = (0, 0);
    for (key, value) in &wanted {
        if consul.kv_get(key).await?.as_deref() == Some(value.as_str()) {
            same += 1;
        } else {
            consul.kv_put(key, value).await?;
            written += 1;
        }
    }
    let detail = format!("{written} key(s) written, {same} unchanged under kindling/");
    Ok(if written == 0 {
        Outcome::already(detail)
    } else {
        Outcome::done(detail)
    })
}
