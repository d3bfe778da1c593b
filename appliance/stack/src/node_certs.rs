//! A re-armed node's client certificates: the ones its old install issued
//! from `pki_int` (role `node`, which names the node's own hostname and
//! nothing another node could claim) are revoked when the operator runs
//! `kindling node reprovision MAC`, so a disk taken from the old install
//! cannot talk to Consul or Nomad with them.
//!
//! They are found in Vault's own record of what it issued (`LIST
//! pki_int/certs`, then each certificate), by the hostname in the subject's
//! common name or a DNS name: never from anything the node says. A
//! certificate the node asked for with only the names every client shares
//! (`client.<dc>.consul`) names no node and cannot be told apart; the
//! role's short life bounds those (docs/security.md).

use crate::bootstrap::policies::PKI_INT_MOUNT;
use crate::vault::{VaultApi, VaultError};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Revokes every live certificate in `pki_int` that names `hostname`;
/// returns the serial numbers revoked now. Safe to run again: a revoked
/// or expired certificate is left alone.
pub async fn revoke_for(vault: &VaultApi, hostname: &str) -> Result<Vec<String>, VaultError> {
    let mut revoked = Vec::new();
    let now = kindling_clock::unix_now();
    for serial in vault.pki_serials(PKI_INT_MOUNT).await? {
        let Some(cert) = vault.pki_cert(PKI_INT_MOUNT, &serial).await? else {
            continue;
        };
        let Some(names) = CertNames::parse(&cert.pem) else {
            tracing::warn!(%serial, "node-certs: a certificate in {PKI_INT_MOUNT} does not parse; skipped");
            continue;
        };
        if !names.names(hostname) {
            continue;
        }
        if cert.revoked || names.not_after <= now {
            continue;
        }
        vault.pki_revoke(PKI_INT_MOUNT, &serial).await?;
        revoked.push(serial);
    }
    Ok(revoked)
}

/// The names a certificate is for, and when it ends.
struct CertNames {
    common_name: Option<String>,
    dns: Vec<String>,
    not_after: u64,
}

impl CertNames {
    fn parse(pem: &str) -> Option<Self> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
        let (_, cert) = X509Certificate::from_der(&pem.contents).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let dns = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let not_after = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
        Some(Self {
            common_name,
            dns,
            not_after,
        })
    }

    /// Whether the certificate is for `hostname` (names are compared
    /// without case, as DNS does).
    fn names(&self, hostname: &str) -> bool {
        self.common_name
            .iter()
            .chain(&self.dns)
            .any(|n| n.eq_ignore_ascii_case(hostname))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cert(cn: &str, sans: &[&str]) -> String {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn a_certificate_names_a_node_by_common_name_or_dns_name_only() {
        let by_cn = CertNames::parse(&cert("node-dev-1", &["localhost"])).unwrap();
        assert!(by_cn.names("node-dev-1"));
        assert!(by_cn.names("NODE-DEV-1"));
        assert!(!by_cn.names("node-dev-10"));
        assert!(!by_cn.names("localhost-1"));
        let by_san = CertNames::parse(&cert("client.dc1.consul", &["node-dev-1"])).unwrap();
        assert!(by_san.names("node-dev-1"));
        let shared = CertNames::parse(&cert("client.dc1.consul", &["localhost"])).unwrap();
        assert!(!shared.names("node-dev-1"), "shared names name no node");
        assert!(by_cn.not_after > kindling_clock::unix_now());
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(CertNames::parse("not pem").is_none());
        assert!(
            CertNames::parse("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_none()
        );
    }
}
