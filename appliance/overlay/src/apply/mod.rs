//! The appliance's config phase and runtime push, as one pipeline of named
//! stages, each a module with its own error and an output that is the next
//! stage's input:
//!
//! 1. [`prepare`]: the recorded state (floors, pinned site) and trusted keys;
//! 2. [`gather`]: overlay files from the boot media (in `order`), the data
//!    partition's accepted copies and an optionally pushed one;
//! 3. [`verify`]: signature by a trusted key (repeated while key rotation adds
//!    keys), integrity, expiry, version floor, file name;
//! 4. [`select`]: the site this appliance serves, and per overlay name its
//!    candidates, newest first, in layer order;
//! 5. per name, the newest candidate that passes [`unpack`] (into a fresh
//!    directory), [`validate`] (its tree merged over the layers below into one
//!    valid `SiteConfig`) and [`stage`] (swapped into `run/overlays/NAME`);
//! 6. [`commit`]: floors, accepted copies and state.json on the data
//!    partition, then site.json, config-effective.json and the report in /run.
//!    While the running image is on trial ([`ApplyOptions::image_on_trial`])
//!    its own overlays are used but not recorded: an update that fails its
//!    health gate must not raise the floor under the image the firmware
//!    falls back to.
//!
//! A bad new overlay falls back to the last good one. The pipeline never fails
//! as a whole: every problem becomes a line in the report and whatever is
//! valid is used. It never touches the network or services, and never decides
//! what a change means for running services (kindlingd does).

pub mod commit;
pub mod gather;
pub mod prepare;
pub mod select;
pub mod stage;
pub mod unpack;
pub mod validate;
pub mod verify;

use crate::limits::Limits;
use crate::manifest::Manifest;
use kindling_api::{ApiFailure, ErrorKind};
use kindling_clock::rfc3339;
use kindling_site::Effective;
use std::path::PathBuf;

pub use kindling_api::overlays::{AcceptedEntry, RefusedEntry, Report, Source};

/// Where the pipeline reads and writes; the defaults are the appliance's paths.
#[derive(Debug, Clone)]
pub struct ApplyPaths {
    /// Trusted public keys, `*.pub` (`/etc/kindling/trust`).
    pub trust_dir: PathBuf,
    /// Boot media overlays and their `order` file (`/etc/kindling/overlays`).
    pub boot_overlays: PathBuf,
    /// Data partition (`/var/lib/kindling`): `state.json`, `overlays/`.
    pub data_dir: PathBuf,
    /// Runtime files (`/run/kindling`): `site.json`, `config-report.json`,
    /// `config-effective.json`, unpacked trees in `overlays/NAME/`.
    pub run_dir: PathBuf,
}

impl Default for ApplyPaths {
    fn default() -> Self {
        Self {
            trust_dir: "/etc/kindling/trust".into(),
            boot_overlays: "/etc/kindling/overlays".into(),
            data_dir: "/var/lib/kindling".into(),
            run_dir: "/run/kindling".into(),
        }
    }
}

impl ApplyPaths {
    pub fn state_file(&self) -> PathBuf {
        self.data_dir.join("state.json")
    }
    pub fn persisted_dir(&self) -> PathBuf {
        self.data_dir.join("overlays")
    }
    pub fn site_json(&self) -> PathBuf {
        kindling_site::effective::in_run_dir(&self.run_dir)
    }
    pub fn report_json(&self) -> PathBuf {
        self.run_dir.join("config-report.json")
    }
    pub fn effective_json(&self) -> PathBuf {
        self.run_dir.join("config-effective.json")
    }
    pub fn unpacked_dir(&self) -> PathBuf {
        self.run_dir.join("overlays")
    }
}

/// An overlay delivered over the API.
#[derive(Debug, Clone)]
pub struct PushedOverlay {
    pub kovl: Vec<u8>,
    pub minisig: String,
}

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Unix seconds; `None` means the clock.
    pub now: Option<u64>,
    pub limits: Limits,
    /// The running image is an update on trial (its boot entry still
    /// counts tries, not blessed yet). Its own overlays (boot media) may be
    /// used for this boot but are not recorded: no floor raised, no copy
    /// or accepted record replaced on the data partition, no key or site
    /// pinned. A failed trial then leaves the older image its own
    /// overlays; once the slot is blessed a run without this flag records
    /// them. Overlays pushed over the API are recorded either way.
    pub image_on_trial: bool,
}

/// What the pipeline produced.
#[derive(Debug)]
pub struct ApplyOutcome {
    pub effective: Option<Effective>,
    pub report: Report,
    /// For a push: the pushed overlay's fate.
    pub pushed: Option<Result<AcceptedEntry, Refused>>,
}

/// The stage at which one overlay file was refused, and why.
#[derive(Debug, thiserror::Error)]
pub enum CandidateError {
    #[error(transparent)]
    Gather(#[from] gather::GatherError),
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
    #[error(transparent)]
    Unpack(#[from] crate::unpack::UnpackError),
    #[error(transparent)]
    Validate(#[from] validate::ValidateError),
    #[error(transparent)]
    Stage(#[from] stage::StageError),
}

impl ApiFailure for CandidateError {
    fn kind(&self) -> ErrorKind {
        match self {
            CandidateError::Gather(e) => e.kind(),
            CandidateError::Verify(e) => e.kind(),
            CandidateError::Unpack(e) => e.kind(),
            CandidateError::Validate(e) => e.kind(),
            CandidateError::Stage(e) => e.kind(),
        }
    }
}

/// One overlay file that was not used: the report's entry (file, name,
/// version, source, reason) and the typed error behind its reason.
#[derive(Debug, thiserror::Error)]
#[error("{}", entry.line())]
pub struct Refused {
    pub entry: RefusedEntry,
    #[source]
    pub error: CandidateError,
}

impl Refused {
    /// `file` from `source` was refused; `manifest` once it was verified.
    pub(crate) fn new(
        file: &str,
        source: Source,
        manifest: Option<&Manifest>,
        error: impl Into<CandidateError>,
    ) -> Self {
        let error = error.into();
        Self {
            entry: RefusedEntry {
                file: file.to_string(),
                name: manifest.map(|m| m.name.clone()),
                version: manifest.map(|m| m.version),
                source,
                reason: error.to_string(),
            },
            error,
        }
    }

    /// The console/report line: names the overlay and the reason.
    pub fn line(&self) -> String {
        self.entry.line()
    }
}

impl ApiFailure for Refused {
    fn kind(&self) -> ErrorKind {
        self.error.kind()
    }
}

/// Runs the pipeline. Never fails: problems are in the report.
pub fn apply(
    paths: &ApplyPaths,
    opts: &ApplyOptions,
    pushed: Option<PushedOverlay>,
) -> ApplyOutcome {
    let now = opts.now.unwrap_or_else(kindling_clock::unix_now);
    let limits = &opts.limits;
    let mut report = Report {
        generated_at: rfc3339(now),
        ..Report::default()
    };
    let prepared = prepare::prepare(paths, now, &mut report.notes);
    let gathered = gather::gather(paths, pushed, limits);
    let mut refused = gathered.refused;
    let verified = verify::verify(
        gathered.candidates,
        prepared.trusted,
        &prepared.state,
        now,
        limits,
        &mut report.notes,
    );
    refused.extend(verified.refused);
    let selection = select::select(verified.verified, &prepared.state);
    refused.extend(selection.refused);
    let chosen = choose(
        paths,
        selection.names,
        limits,
        &mut report.notes,
        &mut refused,
    );
    refused.extend(verify::explain_rollbacks(
        verified.rollbacks,
        &chosen.accepted,
    ));
    commit::commit(
        paths,
        prepared.state,
        selection.site_id,
        chosen,
        refused,
        commit::Clock {
            now,
            image_on_trial: opts.image_on_trial,
        },
        report,
    )
}

/// The overlays chosen per name: each unpacked, validated and staged, in
/// layer order, with the configuration they merge into.
pub struct Chosen {
    pub accepted: Vec<verify::VerifiedCandidate>,
    pub effective: Option<Effective>,
}

/// Per name (in layer order), the newest candidate that unpacks, keeps the
/// merged config valid and is staged; older ones are noted as superseded.
fn choose(
    paths: &ApplyPaths,
    names: Vec<select::NamedCandidates>,
    limits: &Limits,
    notes: &mut Vec<String>,
    refused: &mut Vec<Refused>,
) -> Chosen {
    let unpack_root = paths.unpacked_dir();
    // A missing directory fails each unpack below with its path named.
    let _ = std::fs::create_dir_all(&unpack_root);
    let mut layers = Vec::new();
    let mut chosen = Chosen {
        accepted: Vec::new(),
        effective: None,
    };
    for named in names {
        let mut accepted_version: Option<u64> = None;
        for vc in named.candidates {
            let m = &vc.verified.manifest;
            if let Some(av) = accepted_version {
                notes.push(format!(
                    "{} v{} from {} superseded by v{av}",
                    named.name, m.version, vc.candidate.file
                ));
                continue;
            }
            let tried = take(&unpack_root, &vc.verified, &layers, limits);
            match tried {
                Ok(staged) => {
                    layers.push(staged.layer);
                    chosen.effective = Some(staged.effective);
                    accepted_version = Some(m.version);
                    chosen.accepted.push(vc);
                }
                Err(e) => refused.push(Refused::new(
                    &vc.candidate.file,
                    vc.candidate.source,
                    Some(m),
                    e,
                )),
            }
        }
    }
    chosen
}

/// One candidate through unpack → validate → stage.
fn take(
    unpack_root: &std::path::Path,
    v: &crate::verify::Verified,
    layers: &[kindling_site::Layer],
    limits: &Limits,
) -> Result<stage::Staged, CandidateError> {
    let unpacked = unpack::unpack(unpack_root, v, limits)?;
    let validated = validate::validate(unpacked, v, layers)?;
    Ok(stage::stage(validated, unpack_root)?)
}
