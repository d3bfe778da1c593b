//! Vault steps: API up, init (once, secrets encrypted before anything else),
//! unseal (fresh keys, local keys, or the operator's shares) and setup
//! (audit, KV, AppRole, SSH CA, PKI, policies, roles). The bootstrap's token
//! and the root token's revocation are `token_steps`.

use super::policies::{self, APPROLE_MOUNT, KV_MOUNT, PKI_INT_MOUNT, PKI_ROOT_MOUNT, SSH_MOUNT};
use super::{Outcome, Run, Step, StepError};
use crate::secrets::{self, InitSecrets};
use crate::status::{OverallState, StepState};
use crate::vault::{Health, VaultError};
use kindling_site::UnsealMode;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn vault_enabled(run: &Run) -> bool {
    run.opts.site.stack.vault.enabled
}

pub(super) async fn api(run: &mut Run) -> Result<Outcome, StepError> {
    if !vault_enabled(run) {
        return Ok(Outcome::skipped("stack.vault.enabled = false"));
    }
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < run.opts.service_timeout {
        match run.vault.health().await {
            Ok(Health::Other(code)) => last = format!("health answered HTTP {code}"),
            Ok(h) => return Ok(Outcome::done(format!("answering ({h:?})"))),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
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

pub(super) async fn init(run: &mut Run) -> Result<Outcome, StepError> {
    if !vault_enabled(run) {
        return Ok(Outcome::skipped("stack.vault.enabled = false"));
    }
    let file = run.store.init_file();
    let have_file = run.store.read_init()?.is_some();
    run.board.set_init_secrets("/v1/vault/init-secrets");
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
    run.fresh_init = Some(secrets);
    Ok(Outcome::done(detail))
}

pub(super) async fn unseal(run: &mut Run) -> Result<Outcome, StepError> {
    if !vault_enabled(run) {
        return Ok(Outcome::skipped("stack.vault.enabled = false"));
    }
    let start = Instant::now();
    let mut submitted_here = false;
    let mut announced = false;
    let mut last_progress = u64::MAX;
    loop {
        match run.vault.health().await? {
            // A single node is standby only while it takes over: writes
            // fail ("readonly storage") until it is active.
            Health::Standby if start.elapsed() < run.opts.service_timeout => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Health::Standby => return Err(StepError::VaultStaysStandby),
            Health::Active => {
                run.board.set_overall(OverallState::Running);
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
        let keys = if let Some(s) = &run.fresh_init {
            Some((s.keys_base64.clone(), "the keys from this run's init"))
        } else if run.opts.site.stack.vault.unseal == UnsealMode::Local {
            run.store
                .read_local_unseal()?
                .map(|k| (k, "the local unseal keys (lab only)"))
        } else {
            None
        };
        if let Some((keys, source)) = keys {
            if run.fresh_init.is_none() {
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
            run.board.note(
                Step::VaultUnseal.name(),
                StepState::Waiting,
                format!(
                    "sealed: {} of {} key shares submitted; run `kindling vault unseal` (it reaches the appliance as `kindling login` set up)",
                    seal.progress, seal.threshold
                ),
            );
            run.board.set_overall(OverallState::Waiting);
            run.flush();
        }
        if !announced {
            announced = true;
            run.say(&format!(
                "vault sealed: waiting for {} operator key shares (kindling vault unseal)",
                seal.threshold
            ));
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

pub(super) async fn setup(run: &mut Run) -> Result<Outcome, StepError> {
    if !vault_enabled(run) {
        return Ok(Outcome::skipped("stack.vault.enabled = false"));
    }
    let v = run.vault_authed()?;
    let mut changed: Vec<String> = Vec::new();
    let site = &run.opts.site;
    let audit_log = run.opts.layout.vault_audit_log();
    if v.ensure_file_audit(&audit_log.to_string_lossy()).await? {
        changed.push("audit".into());
    }
    if v.ensure_secrets_engine(KV_MOUNT, "kv-v2", None).await? {
        changed.push("kv".into());
    }
    if v.ensure_auth(APPROLE_MOUNT, "approle").await? {
        changed.push("approle".into());
    }

    // SSH CA: one signing key for user and host certificates.
    if v.ensure_secrets_engine(SSH_MOUNT, "ssh", None).await? {
        changed.push("ssh".into());
    }
    let (status, ca) = v.raw(Method::GET, "ssh/config/ca", None, None).await?;
    let has_key = status == 200
        && ca
            .pointer("/data/public_key")
            .and_then(Value::as_str)
            .is_some_and(|k| !k.is_empty());
    if !has_key {
        v.call(
            "generate the SSH CA key",
            Method::POST,
            "ssh/config/ca",
            Some(&json!({"generate_signing_key": true})),
        )
        .await?;
        changed.push("ssh-ca".into());
    }
    let domain = &site.site.domain;
    v.call(
        "write SSH role client",
        Method::POST,
        "ssh/roles/client",
        Some(&json!({"key_type": "ca", "allow_user_certificates": true, "allowed_users": "*", "default_extensions": {"permit-pty": ""}, "ttl": "24h"})),
    )
    .await?;
    v.call(
        "write SSH role host",
        Method::POST,
        "ssh/roles/host",
        Some(&json!({"key_type": "ca", "allow_host_certificates": true, "allowed_domains": domain, "allow_subdomains": true, "allow_bare_domains": true, "ttl": "8760h"})),
    )
    .await?;

    // PKI: root, and an intermediate signed by it that issues service certs.
    if v.ensure_secrets_engine(PKI_ROOT_MOUNT, "pki", Some("87600h"))
        .await?
    {
        changed.push("pki".into());
    }
    if !has_ca(&v, PKI_ROOT_MOUNT).await? {
        v.call(
            "generate the PKI root",
            Method::POST,
            "pki/root/generate/internal",
            Some(&json!({"common_name": format!("kindling {} root CA", site.site.id), "ttl": "87600h"})),
        )
        .await?;
        changed.push("pki-root".into());
    }
    if v.ensure_secrets_engine(PKI_INT_MOUNT, "pki", Some("43800h"))
        .await?
    {
        changed.push("pki_int".into());
    }
    if !has_ca(&v, PKI_INT_MOUNT).await? {
        let csr = v
            .call(
                "generate the intermediate CSR",
                Method::POST,
                "pki_int/intermediate/generate/internal",
                Some(&json!({"common_name": format!("kindling {} intermediate CA", site.site.id)})),
            )
            .await?;
        let csr = csr
            .pointer("/data/csr")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let signed = v
            .call(
                "sign the intermediate",
                Method::POST,
                "pki/root/sign-intermediate",
                Some(&json!({"csr": csr, "format": "pem_bundle", "ttl": "43800h"})),
            )
            .await?;
        let cert = signed
            .pointer("/data/certificate")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        v.call(
            "install the intermediate",
            Method::POST,
            "pki_int/intermediate/set-signed",
            Some(&json!({"certificate": cert})),
        )
        .await?;
        changed.push("pki-intermediate".into());
    }
    let dc = &site.stack.datacenter;
    for (role, domain) in [
        ("consul-server", format!("server.{dc}.consul")),
        ("consul-client", format!("client.{dc}.consul")),
        ("nomad-server", "server.global.nomad".to_string()),
        ("nomad-client", "client.global.nomad".to_string()),
    ] {
        v.call(
            &format!("write PKI role {role}"),
            Method::POST,
            &format!("pki_int/roles/{role}"),
            Some(&json!({"allowed_domains": [domain, "localhost"], "allow_bare_domains": true, "allow_subdomains": true, "allow_localhost": true, "allow_ip_sans": true, "max_ttl": "720h"})),
        )
        .await?;
    }

    // A role and a policy per node profile.
    let accessor = v
        .auth_mounts()
        .await?
        .get(&format!("{APPROLE_MOUNT}/"))
        .map(|(_, acc)| acc.clone())
        .ok_or(StepError::NoApproleAccessor)?;
    for name in site.profiles.keys() {
        let profile = name.to_string();
        let policy = format!("node-{profile}");
        v.set_policy(&policy, &policies::node_policy(&profile, &accessor))
            .await?;
        v.set_approle_role(APPROLE_MOUNT, &policy, std::slice::from_ref(&policy), "24h")
            .await?;
    }
    // Service tokens come from token roles: the bootstrap hands out these
    // policies without holding them or `sudo` on token creation.
    if site.stack.consul.enabled && site.stack.consul.connect_vault_ca {
        v.set_policy("consul-connect-ca", policies::CONSUL_CONNECT_CA_POLICY)
            .await?;
    }
    for role in policies::TOKEN_ROLES {
        v.set_token_role(role).await?;
    }
    if site.stack.nomad.enabled {
        v.set_policy("nomad-server", policies::NOMAD_SERVER_POLICY)
            .await?;
        v.call(
            "write token role nomad-cluster",
            Method::POST,
            "auth/token/roles/nomad-cluster",
            Some(&json!({"disallowed_policies": ["nomad-server"], "orphan": true, "token_period": "72h", "renewable": true, "token_explicit_max_ttl": 0})),
        )
        .await?;
    }
    let profiles = site.profiles.len();
    if changed.is_empty() {
        Ok(Outcome::already(format!(
            "engines already configured; roles and policies for {profiles} profile(s) checked"
        )))
    } else {
        Ok(Outcome::done(format!(
            "enabled {}; roles and policies for {profiles} profile(s)",
            changed.join(", ")
        )))
    }
}

async fn has_ca(v: &crate::vault::VaultApi, mount: &str) -> Result<bool, VaultError> {
    let (status, body) = v
        .raw(Method::GET, &format!("{mount}/cert/ca"), None, None)
        .await?;
    Ok(status == 200
        && body
            .pointer("/data/certificate")
            .and_then(Value::as_str)
            .is_some_and(|c| !c.trim().is_empty()))
}
