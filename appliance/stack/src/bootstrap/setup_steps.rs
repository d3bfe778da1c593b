//! `vault-setup`: audit, KV, AppRole (a role and policy per profile), the
//! PKI root and intermediate with their roles, and the token roles the
//! bootstrap hands service tokens out with. `vault-ssh-ca`: the SSH CA, a
//! step of its own because no other step needs it and OpenBao takes up to
//! a second or more to make its RSA key: it runs beside the Consul steps.
//!
//! The parts touch different Vault paths and none reads what another
//! writes, so they are sent at the same time; inside a part the order is
//! the order of need (the intermediate is signed by the root). Every call
//! is an "ensure": a part cut off by another's failure is finished by the
//! next run. Must never replace an existing engine or CA.

use super::policies::{self, APPROLE_MOUNT, KV_MOUNT, PKI_INT_MOUNT, PKI_ROOT_MOUNT, SSH_MOUNT};
use super::{Outcome, Run, StepError};
use crate::vault::{VaultApi, VaultError};
use futures_util::future::try_join_all;
use kindling_site::SiteConfig;
use reqwest::Method;
use serde_json::{json, Value};

/// What a part enabled or created in this run ("kv", "pki-root", …).
type Changed = Vec<&'static str>;

pub(super) async fn setup(run: &Run) -> Result<Outcome, StepError> {
    if !run.opts.site.stack.vault.enabled {
        return Ok(Outcome::skipped("stack.vault.enabled = false"));
    }
    let v = run.vault_authed()?;
    let site = &run.opts.site;
    let audit_log = run.opts.layout.vault_audit_log();
    let audit_log = audit_log.to_string_lossy();
    let parts = tokio::try_join!(
        audit(&v, &audit_log),
        kv(&v),
        approle(&v, site),
        pki(&v, site),
        token_roles(&v, site),
    )?;
    let (a, b, c, d, e) = parts;
    let changed: Changed = [a, b, c, d, e].concat();
    let profiles = site.profiles.len();
    Ok(if changed.is_empty() {
        Outcome::already(format!(
            "engines already configured; roles and policies for {profiles} profile(s) checked"
        ))
    } else {
        Outcome::done(format!(
            "enabled {}; roles and policies for {profiles} profile(s)",
            changed.join(", ")
        ))
    })
}

async fn audit(v: &VaultApi, log: &str) -> Result<Changed, StepError> {
    Ok(if v.ensure_file_audit(log).await? {
        vec!["audit"]
    } else {
        Vec::new()
    })
}

async fn kv(v: &VaultApi) -> Result<Changed, StepError> {
    Ok(if v.ensure_secrets_engine(KV_MOUNT, "kv-v2", None).await? {
        vec!["kv"]
    } else {
        Vec::new()
    })
}

/// AppRole, and a role and a policy per node profile.
async fn approle(v: &VaultApi, site: &SiteConfig) -> Result<Changed, StepError> {
    let mut changed = Vec::new();
    if v.ensure_auth(APPROLE_MOUNT, "approle").await? {
        changed.push("approle");
    }
    let accessor = v
        .auth_mounts()
        .await?
        .get(&format!("{APPROLE_MOUNT}/"))
        .map(|(_, acc)| acc.clone())
        .ok_or(StepError::NoApproleAccessor)?;
    try_join_all(site.profiles.keys().map(|name| {
        let accessor = &accessor;
        async move {
            let profile = name.to_string();
            let policy = format!("node-{profile}");
            v.set_policy(&policy, &policies::node_policy(&profile, accessor))
                .await?;
            v.set_approle_role(APPROLE_MOUNT, &policy, std::slice::from_ref(&policy), "24h")
                .await
        }
    }))
    .await?;
    // A role of its own for each node the site names (see
    // `policies::site_node_role`), with its profile's policy.
    try_join_all(site.nodes.iter().filter_map(|node| {
        let key = crate::enroll::mac_key(&node.mac.to_string()).ok()?;
        let policy = policies::node_role(node.profile.as_str());
        Some(async move {
            v.set_approle_role(
                APPROLE_MOUNT,
                &policies::site_node_role(&key),
                std::slice::from_ref(&policy),
                "24h",
            )
            .await
        })
    }))
    .await?;
    Ok(changed)
}

pub(super) async fn ssh_ca(run: &Run) -> Result<Outcome, StepError> {
    if !run.opts.site.stack.vault.enabled {
        return Ok(Outcome::skipped("stack.vault.enabled = false"));
    }
    let changed = ssh(&run.vault_authed()?, &run.opts.site).await?;
    Ok(if changed.is_empty() {
        Outcome::already("SSH CA in place; roles client and host checked")
    } else {
        Outcome::done(format!(
            "enabled {}; roles client and host",
            changed.join(", ")
        ))
    })
}

/// SSH CA: one signing key for user and host certificates. Ed25519: made
/// in milliseconds where OpenBao's default RSA-4096 took up to 1.6 s of the
/// cold bootstrap, and trusted by every OpenSSH since 6.5. A CA made
/// before keeps its key.
async fn ssh(v: &VaultApi, site: &SiteConfig) -> Result<Changed, StepError> {
    let mut changed = Vec::new();
    if v.ensure_secrets_engine(SSH_MOUNT, "ssh", None).await? {
        changed.push("ssh");
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
            Some(&json!({"generate_signing_key": true, "key_type": "ssh-ed25519"})),
        )
        .await?;
        changed.push("ssh-ca");
    }
    let domain = &site.site.domain;
    let client = json!({"key_type": "ca", "allow_user_certificates": true, "allowed_users": "*", "default_extensions": {"permit-pty": ""}, "ttl": "24h"});
    let host = json!({"key_type": "ca", "allow_host_certificates": true, "allowed_domains": domain, "allow_subdomains": true, "allow_bare_domains": true, "ttl": "8760h"});
    tokio::try_join!(
        v.call(
            "write SSH role client",
            Method::POST,
            "ssh/roles/client",
            Some(&client)
        ),
        v.call(
            "write SSH role host",
            Method::POST,
            "ssh/roles/host",
            Some(&host)
        ),
    )?;
    Ok(changed)
}

/// PKI: a root, and an intermediate signed by it that issues service certs.
async fn pki(v: &VaultApi, site: &SiteConfig) -> Result<Changed, StepError> {
    let mut changed = Vec::new();
    if v.ensure_secrets_engine(PKI_ROOT_MOUNT, "pki", Some("87600h"))
        .await?
    {
        changed.push("pki");
    }
    if !has_ca(v, PKI_ROOT_MOUNT).await? {
        v.call(
            "generate the PKI root",
            Method::POST,
            "pki/root/generate/internal",
            Some(&json!({"common_name": format!("kindling {} root CA", site.site.id), "ttl": "87600h"})),
        )
        .await?;
        changed.push("pki-root");
    }
    if v.ensure_secrets_engine(PKI_INT_MOUNT, "pki", Some("43800h"))
        .await?
    {
        changed.push("pki_int");
    }
    if !has_ca(v, PKI_INT_MOUNT).await? {
        install_intermediate(v, site).await?;
        changed.push("pki-intermediate");
    }
    let dc = &site.stack.datacenter;
    let roles = [
        ("consul-server", format!("server.{dc}.consul")),
        ("consul-client", format!("client.{dc}.consul")),
        ("nomad-server", "server.global.nomad".to_string()),
        ("nomad-client", "client.global.nomad".to_string()),
    ];
    try_join_all(roles.iter().map(|(role, domain)| async move {
        v.call(
            &format!("write PKI role {role}"),
            Method::POST,
            &format!("{PKI_INT_MOUNT}/roles/{role}"),
            Some(&json!({"allowed_domains": [domain, "localhost"], "allow_bare_domains": true, "allow_subdomains": true, "allow_localhost": true, "allow_ip_sans": true, "max_ttl": "720h"})),
        )
        .await
    }))
    .await?;
    Ok(changed)
}

/// The intermediate's key and CSR in `pki_int`, signed by the root.
async fn install_intermediate(v: &VaultApi, site: &SiteConfig) -> Result<(), StepError> {
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
    Ok(())
}

/// Service tokens come from token roles: the bootstrap hands out these
/// policies without holding them or `sudo` on token creation.
async fn token_roles(v: &VaultApi, site: &SiteConfig) -> Result<Changed, StepError> {
    let connect_ca = async {
        if site.stack.consul.enabled && site.stack.consul.connect_vault_ca {
            v.set_policy("consul-connect-ca", policies::CONSUL_CONNECT_CA_POLICY)
                .await?;
        }
        Ok::<_, VaultError>(())
    };
    let roles = try_join_all(
        policies::TOKEN_ROLES
            .iter()
            .map(|role| v.set_token_role(role)),
    );
    let nomad = async {
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
        Ok(())
    };
    tokio::try_join!(connect_ca, roles, nomad)?;
    Ok(Vec::new())
}

async fn has_ca(v: &VaultApi, mount: &str) -> Result<bool, VaultError> {
    let (status, body) = v
        .raw(Method::GET, &format!("{mount}/cert/ca"), None, None)
        .await?;
    Ok(status == 200
        && body
            .pointer("/data/certificate")
            .and_then(Value::as_str)
            .is_some_and(|c| !c.trim().is_empty()))
}
