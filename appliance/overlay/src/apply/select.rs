//! Stage `select`: the site this appliance serves (recorded, else the first
//! site-layer overlay by boot order), and per overlay name its verified
//! candidates, newest first, with the names in layer order (layer kind, then
//! boot media order, then the order they were first accepted, then name).
//! Pure: no I/O.

use super::verify::VerifiedCandidate;
use super::Refused;
use crate::manifest::LayerKind;
use crate::state::StateFile;
use crate::verify::VerifyError;
use std::collections::BTreeMap;

/// One overlay name and its candidates, newest first; for equal versions a
/// pushed copy comes before a persisted one, which comes before boot media.
pub struct NamedCandidates {
    pub name: String,
    pub candidates: Vec<VerifiedCandidate>,
}

/// What `select` hands on.
pub struct Selection {
    pub site_id: Option<String>,
    /// In layer order: later names are merged over earlier ones.
    pub names: Vec<NamedCandidates>,
    /// Overlays for another site.
    pub refused: Vec<Refused>,
}

pub fn select(verified: Vec<VerifiedCandidate>, state: &StateFile) -> Selection {
    let site_id = state.overlays.site_id.clone().or_else(|| {
        verified
            .iter()
            .filter(|vc| vc.verified.layer() == LayerKind::Site)
            .min_by_key(|vc| {
                (
                    vc.candidate.order_pos.unwrap_or(usize::MAX),
                    vc.candidate.source,
                )
            })
            .map(|vc| vc.verified.manifest.site_id.clone())
    });
    let mut refused = Vec::new();
    let mut by_name: BTreeMap<String, Vec<VerifiedCandidate>> = BTreeMap::new();
    for vc in verified {
        let m = &vc.verified.manifest;
        if let Some(want) = site_id.as_ref().filter(|want| **want != m.site_id) {
            let e = VerifyError::WrongSite {
                got: m.site_id.clone(),
                want: want.clone(),
            };
            refused.push(Refused::new(
                &vc.candidate.file,
                vc.candidate.source,
                Some(m),
                e,
            ));
            continue;
        }
        by_name.entry(m.name.clone()).or_default().push(vc);
    }
    let mut names: Vec<((LayerKind, usize, usize, String), NamedCandidates)> = by_name
        .into_iter()
        .map(|(name, mut candidates)| {
            candidates.sort_by(|a, b| {
                b.verified
                    .manifest
                    .version
                    .cmp(&a.verified.manifest.version)
                    .then(b.candidate.source.cmp(&a.candidate.source))
            });
            let layer = candidates
                .first()
                .map(|vc| vc.verified.layer())
                .unwrap_or_default();
            let boot_pos = candidates
                .iter()
                .filter_map(|vc| vc.candidate.order_pos)
                .min()
                .unwrap_or(usize::MAX);
            let state_pos = state
                .overlays
                .order
                .iter()
                .position(|n| *n == name)
                .unwrap_or(usize::MAX);
            let key = (layer, boot_pos, state_pos, name.clone());
            (key, NamedCandidates { name, candidates })
        })
        .collect();
    names.sort_by(|(a, _), (b, _)| a.cmp(b));
    Selection {
        site_id,
        names: names.into_iter().map(|(_, n)| n).collect(),
        refused,
    }
}
