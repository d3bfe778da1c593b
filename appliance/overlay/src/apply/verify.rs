//! Stage `verify`: which gathered files are authentic and admissible. Each
//! must be signed by a trusted key (checked again while accepted overlays add
//! rotation keys), intact, unexpired, not below its name's floor, and named
//! after its overlay. Nothing is unpacked or written here.

use super::gather::Candidate;
use super::Refused;
use crate::limits::Limits;
use crate::minisign::{signature_key_id, PublicKey, SignatureError};
use crate::state::StateFile;
use crate::verify::{check_policy, verify_authentic, Policy, Verified, VerifyError};

/// A gathered file whose signature and policy checked out.
#[derive(Debug)]
pub struct VerifiedCandidate {
    pub candidate: Candidate,
    pub verified: Verified,
}

/// What `verify` hands on. Rollbacks are kept apart: their reason is
/// completed once the newer version in use is known.
pub struct VerifiedSet {
    pub verified: Vec<VerifiedCandidate>,
    pub refused: Vec<Refused>,
    pub rollbacks: Vec<Refused>,
}

pub fn verify(
    candidates: Vec<Candidate>,
    mut trusted: Vec<PublicKey>,
    state: &StateFile,
    now: u64,
    limits: &Limits,
    notes: &mut Vec<String>,
) -> VerifiedSet {
    let policy = Policy {
        now,
        floors: state.overlays.floors.clone(),
        site_id: None,
    };
    let mut out = VerifiedSet {
        verified: Vec::new(),
        refused: Vec::new(),
        rollbacks: Vec::new(),
    };
    // Repeated while key rotation adds trusted keys.
    let mut pending = candidates;
    loop {
        let mut progress = false;
        let mut untrusted = Vec::new();
        for c in pending {
            let Some(sig) = c.minisig.as_deref() else {
                let e = VerifyError::MissingSignature {
                    file: c.file.clone(),
                };
                out.refused.push(Refused::new(&c.file, c.source, None, e));
                continue;
            };
            let v = match verify_authentic(&c.kovl, sig, &trusted, limits) {
                Err(VerifyError::Signature(SignatureError::UntrustedKey(_))) => {
                    untrusted.push(c);
                    continue;
                }
                Err(e) => {
                    out.refused.push(Refused::new(&c.file, c.source, None, e));
                    continue;
                }
                Ok(v) => v,
            };
            match admit(&c, &v, &policy) {
                Err(e @ VerifyError::Rollback { .. }) => {
                    let r = Refused::new(&c.file, c.source, Some(&v.manifest), e);
                    out.rollbacks.push(r);
                }
                Err(e) => {
                    let r = Refused::new(&c.file, c.source, Some(&v.manifest), e);
                    out.refused.push(r);
                }
                Ok(()) => {
                    for b64 in &v.manifest.trusted_keys {
                        match PublicKey::from_base64(b64) {
                            Ok(k) if !trusted.contains(&k) => {
                                trusted.push(k);
                                progress = true;
                            }
                            Ok(_) => {}
                            Err(e) => notes.push(format!("{}: ignored rotation key: {e}", c.file)),
                        }
                    }
                    out.verified.push(VerifiedCandidate {
                        candidate: c,
                        verified: v,
                    });
                }
            }
        }
        pending = untrusted;
        if !progress || pending.is_empty() {
            break;
        }
    }
    for c in pending {
        let reason = match c.minisig.as_deref().map(signature_key_id) {
            Some(Ok(id)) => SignatureError::UntrustedKey(id),
            _ => SignatureError::Malformed("unreadable".into()),
        };
        let e = VerifyError::Signature(reason);
        out.refused.push(Refused::new(&c.file, c.source, None, e));
    }
    out
}

/// Policy (expiry, floor) and the file name, for an authentic overlay.
fn admit(c: &Candidate, v: &Verified, policy: &Policy) -> Result<(), VerifyError> {
    check_policy(&v.manifest, policy)?;
    match &c.stem {
        Some(stem) if *stem != v.manifest.name => Err(VerifyError::FileName {
            file: format!("{stem}.kovl"),
            name: v.manifest.name.clone(),
        }),
        _ => Ok(()),
    }
}

/// An older copy (e.g. stale boot media) is refused as a rollback, saying
/// which newer version is in use so the line reads as "handled".
pub fn explain_rollbacks(rollbacks: Vec<Refused>, chosen: &[VerifiedCandidate]) -> Vec<Refused> {
    rollbacks
        .into_iter()
        .map(|mut r| {
            let newer = chosen
                .iter()
                .find(|vc| Some(&vc.verified.manifest.name) == r.entry.name.as_ref());
            if let Some(vc) = newer {
                r.entry.reason = format!(
                    "{}; using v{} from {}",
                    r.entry.reason, vc.verified.manifest.version, vc.candidate.file
                );
            }
            r
        })
        .collect()
}
