//! Trusting one appliance: its CA, pinned by the operator, is the only root.
//!
//! The pin is either the CA certificate itself (saved by `kindling login`) or
//! only its SHA-256 fingerprint (read from the appliance's console): then the
//! CA is taken from the chain the server presents, and only if its
//! fingerprint matches. Either way the server's certificate must chain to
//! that CA and name the address or host name dialled, as with any CA. The
//! system's trust store is never consulted: a public CA vouches for nothing
//! here. [`Presented`] only records what a server shows and accepts nothing:
//! the first step of pinning on first use.

use kindling_pki::Fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::{Arc, Mutex};

/// What the operator pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustAnchor {
    /// The CA certificate (DER).
    Ca(CertificateDer<'static>),
    /// Only the CA certificate's fingerprint: the CA comes from the chain.
    Fingerprint(Fingerprint),
}

impl TrustAnchor {
    /// The first certificate of a PEM text (a `ca.pem`).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .map(|der| Self::Ca(der.into_owned()))
            .map_err(|e| format!("not a PEM certificate: {e}"))
    }

    pub fn fingerprint(&self) -> Fingerprint {
        match self {
            Self::Ca(der) => Fingerprint::of_der(der),
            Self::Fingerprint(fp) => *fp,
        }
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Verifies a server against the pinned CA and remembers the CA certificate
/// it matched (so a fingerprint pin can be turned into a saved CA).
#[derive(Debug)]
pub struct PinnedCa {
    anchor: TrustAnchor,
    provider: Arc<CryptoProvider>,
    matched: Mutex<Option<CertificateDer<'static>>>,
}

impl PinnedCa {
    pub fn new(anchor: TrustAnchor) -> Self {
        Self {
            anchor,
            provider: provider(),
            matched: Mutex::new(None),
        }
    }

    /// The CA certificate the last successful handshake chained to.
    pub fn matched_ca(&self) -> Option<CertificateDer<'static>> {
        self.matched.lock().ok().and_then(|m| m.clone())
    }

    fn ca_for(
        &self,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<CertificateDer<'static>, rustls::Error> {
        match &self.anchor {
            TrustAnchor::Ca(der) => Ok(der.clone()),
            TrustAnchor::Fingerprint(fp) => intermediates
                .iter()
                .find(|c| Fingerprint::of_der(c) == *fp)
                .map(|c| c.clone().into_owned())
                .ok_or_else(|| {
                    let shown: Vec<String> = intermediates
                        .iter()
                        .map(|c| Fingerprint::of_der(c).to_string())
                        .collect();
                    rustls::Error::General(format!(
                        "the appliance did not present the pinned CA {fp} (it presented {})",
                        if shown.is_empty() {
                            "no CA".to_string()
                        } else {
                            shown.join(", ")
                        }
                    ))
                }),
        }
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = self.ca_for(intermediates)?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(format!("the pinned CA: {e}")))?;
        let rest: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .filter(|c| **c != ca)
            .cloned()
            .collect();
        let verified =
            verifier.verify_server_cert(end_entity, &rest, server_name, ocsp_response, now)?;
        if let Ok(mut matched) = self.matched.lock() {
            *matched = Some(ca);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Records the chain a server presents and then fails the handshake, so
/// nothing is ever sent to a server that is not yet trusted.
#[derive(Debug)]
pub struct Presented {
    provider: Arc<CryptoProvider>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

/// The error [`Presented`] ends every handshake with.
pub(crate) const RECORDED_ONLY: &str = "certificate chain recorded, not trusted";

impl Presented {
    pub fn new() -> Self {
        Self {
            provider: provider(),
            chain: Mutex::new(Vec::new()),
        }
    }

    /// The chain after a handshake: the server's certificate first.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.chain.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Default for Presented {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerCertVerifier for Presented {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut chain) = self.chain.lock() {
            *chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        }
        Err(rustls::Error::General(RECORDED_ONLY.into()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(RECORDED_ONLY.into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(RECORDED_ONLY.into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
