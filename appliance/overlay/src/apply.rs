//! The appliance's config phase and runtime push, as one pipeline: gather
//! overlay files (boot media in `order`, the data partition's accepted copies,
//! an optionally pushed one), verify each, pick per name the newest version
//! that passes every check (so a bad new overlay falls back to the last good
//! one), unpack the chosen ones into fresh directories, merge them in layer
//! order into one validated `SiteConfig`, persist floors and accepted copies,
//! and write the runtime files and a report.
//!
//! It never fails as a whole: every problem becomes a line in the report and
//! whatever is valid is used. It never touches the network or services.

use crate::limits::Limits;
use crate::manifest::{rfc3339, LayerKind};
use crate::minisign::PublicKey;
use crate::state::{AcceptedOverlay, StateFile};
use crate::unpack::{swap_into_place, unpack_payload};
use crate::verify::{check_policy, verify_authentic, Policy, Refusal, Verified};
use kindling_atomic_write::write_atomic;
use kindling_site::{merge_layers, Effective, Layer, SiteTree};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
        self.run_dir.join("site.json")
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    BootMedia,
    DataPartition,
    Pushed,
}

/// An overlay delivered over the API.
#[derive(Debug, Clone)]
pub struct PushedOverlay {
    pub kovl: Vec<u8>,
    pub minisig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceptedEntry {
    pub name: String,
    pub version: u64,
    pub layer: LayerKind,
    pub site_id: String,
    pub source: Source,
    pub file: String,
    pub key_id: String,
    pub expires: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedEntry {
    pub file: String,
    pub name: Option<String>,
    pub version: Option<u64>,
    pub source: Source,
    pub reason: String,
}

impl RefusedEntry {
    /// The console/report line: names the overlay and the reason.
    pub fn line(&self) -> String {
        match (&self.name, self.version) {
            (Some(n), Some(v)) => {
                format!("refused overlay {n} v{v} ({}): {}", self.file, self.reason)
            }
            _ => format!("refused overlay {}: {}", self.file, self.reason),
        }
    }
}

/// `/run/kindling/config-report.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub site_id: Option<String>,
    /// A valid merged configuration exists (site.json was written).
    pub ok: bool,
    pub accepted: Vec<AcceptedEntry>,
    pub refused: Vec<RefusedEntry>,
    /// Informational: superseded older versions, state or key problems.
    pub notes: Vec<String>,
}

impl Report {
    /// One line per event, for init's console log.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .accepted
            .iter()
            .map(|a| {
                format!(
                    "accepted overlay {} v{} ({} layer, key {}, from {})",
                    a.name,
                    a.version,
                    a.layer.as_str(),
                    a.key_id,
                    a.file
                )
            })
            .collect();
        out.extend(self.refused.iter().map(RefusedEntry::line));
        out.extend(self.notes.iter().map(|n| format!("note: {n}")));
        if !self.ok {
            out.push("no valid site configuration: running on image defaults only".into());
        }
        out
    }
}

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Unix seconds; `None` means the clock.
    pub now: Option<u64>,
    pub limits: Limits,
}

/// What the pipeline produced.
#[derive(Debug, Clone)]
pub struct ApplyOutcome {
    pub effective: Option<Effective>,
    pub report: Report,
    /// For a push: the pushed overlay's fate.
    pub pushed: Option<Result<AcceptedEntry, RefusedEntry>>,
}

struct Candidate {
    file: String,
    stem: Option<String>,
    source: Source,
    order_pos: Option<usize>,
    kovl: Vec<u8>,
    minisig: Option<String>,
}

fn read_candidate(
    path: &Path,
    source: Source,
    order_pos: Option<usize>,
    limits: &Limits,
) -> Result<Candidate, RefusedEntry> {
    let file = path.display().to_string();
    let refuse = |reason: String| RefusedEntry {
        file: file.clone(),
        name: None,
        version: None,
        source,
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| refuse(format!("cannot read: {e}")))?;
    if meta.len() > limits.max_kovl_bytes {
        return Err(refuse(format!(
            "file is {} bytes, larger than the {}-byte limit",
            meta.len(),
            limits.max_kovl_bytes
        )));
    }
    let kovl = std::fs::read(path).map_err(|e| refuse(format!("cannot read: {e}")))?;
    let sig_path = PathBuf::from(format!("{file}.minisig"));
    let minisig = std::fs::read_to_string(&sig_path).ok();
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".kovl"))
        .map(str::to_string);
    Ok(Candidate {
        file,
        stem,
        source,
        order_pos,
        kovl,
        minisig,
    })
}

fn gather(
    paths: &ApplyPaths,
    pushed: Option<PushedOverlay>,
    limits: &Limits,
    report: &mut Report,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    let order_file = paths.boot_overlays.join("order");
    let boot_names: Vec<String> = match std::fs::read_to_string(&order_file) {
        Ok(text) => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
        Err(_) => list_kovl(&paths.boot_overlays),
    };
    for (pos, name) in boot_names.iter().enumerate() {
        // The order file names files in the boot overlay directory only.
        if name.contains('/') || name.starts_with('.') {
            report.refused.push(RefusedEntry {
                file: name.clone(),
                name: None,
                version: None,
                source: Source::BootMedia,
                reason: format!(
                    "{} lists a path, expected a file name",
                    order_file.display()
                ),
            });
            continue;
        }
        let file = if name.ends_with(".kovl") {
            name.clone()
        } else {
            format!("{name}.kovl")
        };
        match read_candidate(
            &paths.boot_overlays.join(file),
            Source::BootMedia,
            Some(pos),
            limits,
        ) {
            Ok(c) => out.push(c),
            Err(r) => report.refused.push(r),
        }
    }
    for file in list_kovl(&paths.persisted_dir()) {
        match read_candidate(
            &paths.persisted_dir().join(file),
            Source::DataPartition,
            None,
            limits,
        ) {
            Ok(c) => out.push(c),
            Err(r) => report.refused.push(r),
        }
    }
    if let Some(p) = pushed {
        out.push(Candidate {
            file: "pushed overlay".into(),
            stem: None,
            source: Source::Pushed,
            order_pos: None,
            kovl: p.kovl,
            minisig: Some(p.minisig),
        });
    }
    out
}

fn list_kovl(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.ends_with(".kovl") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn load_trust(paths: &ApplyPaths, state: &StateFile, report: &mut Report) -> Vec<PublicKey> {
    let mut keys = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&paths.trust_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for f in files {
        match std::fs::read_to_string(&f)
            .map_err(|e| e.to_string())
            .and_then(|t| PublicKey::from_file_text(&t).map_err(|e| e.to_string()))
        {
            Ok(k) => keys.push(k),
            Err(e) => report
                .notes
                .push(format!("ignored trust key {}: {e}", f.display())),
        }
    }
    for b64 in &state.overlays.trusted_keys {
        match PublicKey::from_base64(b64) {
            Ok(k) if !keys.contains(&k) => keys.push(k),
            Ok(_) => {}
            Err(e) => report
                .notes
                .push(format!("ignored rotated key in state.json: {e}")),
        }
    }
    if keys.is_empty() {
        report.notes.push(format!(
            "no trusted keys in {}: every overlay will be refused",
            paths.trust_dir.display()
        ));
    }
    keys
}

fn refused(c: &Candidate, v: Option<&Verified>, reason: &Refusal) -> RefusedEntry {
    RefusedEntry {
        file: c.file.clone(),
        name: v.map(|v| v.manifest.name.clone()),
        version: v.map(|v| v.manifest.version),
        source: c.source,
        reason: reason.to_string(),
    }
}

/// Runs the pipeline. Never fails: problems are in the report.
pub fn apply(
    paths: &ApplyPaths,
    opts: &ApplyOptions,
    pushed: Option<PushedOverlay>,
) -> ApplyOutcome {
    let now = opts.now.unwrap_or_else(crate::manifest::unix_now);
    let limits = &opts.limits;
    let mut report = Report {
        generated_at: rfc3339(now),
        ..Report::default()
    };
    let mut state = match StateFile::load(&paths.state_file()) {
        Ok(s) => s,
        Err(e) => {
            // Keep the unreadable file for inspection instead of overwriting it.
            let aside = paths.data_dir.join(format!("state.json.unreadable-{now}"));
            let kept =
                std::fs::rename(paths.state_file(), &aside).map(|()| aside.display().to_string());
            report.notes.push(format!(
                "{e}; starting without recorded floors (old file {})",
                kept.unwrap_or_else(|r| format!("could not be moved aside: {r}"))
            ));
            StateFile::default()
        }
    };
    let state_before = state.clone();
    let mut trusted = load_trust(paths, &state, &mut report);
    let candidates = gather(paths, pushed, limits, &mut report);
    let policy_base = Policy {
        now,
        floors: state.overlays.floors.clone(),
        site_id: None,
    };

    // Authenticity and policy, repeated while key rotation adds trusted keys.
    let mut pending: Vec<Candidate> = candidates;
    let mut verified: Vec<(Candidate, Verified)> = Vec::new();
    let mut fates: Vec<RefusedEntry> = Vec::new();
    let mut rollbacks: Vec<RefusedEntry> = Vec::new();
    loop {
        let mut progress = false;
        let mut still = Vec::new();
        for c in pending {
            let Some(sig) = c.minisig.clone() else {
                fates.push(RefusedEntry {
                    file: c.file.clone(),
                    name: None,
                    version: None,
                    source: c.source,
                    reason: format!("signature file {}.minisig is missing", c.file),
                });
                continue;
            };
            match verify_authentic(&c.kovl, &sig, &trusted, limits) {
                Err(Refusal::Signature(crate::minisign::SignatureError::UntrustedKey(_))) => {
                    still.push(c)
                }
                Err(e) => fates.push(refused(&c, None, &e)),
                Ok(v) => {
                    let checked =
                        check_policy(&v.manifest, &policy_base).and_then(|()| match &c.stem {
                            Some(stem) if *stem != v.manifest.name => Err(Refusal::FileName {
                                file: format!("{stem}.kovl"),
                                name: v.manifest.name.clone(),
                            }),
                            _ => Ok(()),
                        });
                    match checked {
                        Err(e @ Refusal::Rollback { .. }) => {
                            rollbacks.push(refused(&c, Some(&v), &e))
                        }
                        Err(e) => fates.push(refused(&c, Some(&v), &e)),
                        Ok(()) => {
                            for b64 in &v.manifest.trusted_keys {
                                match PublicKey::from_base64(b64) {
                                    Ok(k) if !trusted.contains(&k) => {
                                        trusted.push(k);
                                        progress = true;
                                    }
                                    Ok(_) => {}
                                    Err(e) => report
                                        .notes
                                        .push(format!("{}: ignored rotation key: {e}", c.file)),
                                }
                            }
                            verified.push((c, v));
                        }
                    }
                }
            }
        }
        pending = still;
        if !progress || pending.is_empty() {
            break;
        }
    }
    for c in pending {
        let reason = match c.minisig.as_deref().map(crate::minisign::signature_key_id) {
            Some(Ok(id)) => Refusal::Signature(crate::minisign::SignatureError::UntrustedKey(id)),
            _ => Refusal::Signature(crate::minisign::SignatureError::Malformed(
                "unreadable".into(),
            )),
        };
        fates.push(refused(&c, None, &reason));
    }

    // The site this appliance serves: recorded, else the first site overlay by order.
    let site_id = state.overlays.site_id.clone().or_else(|| {
        let mut site_layer: Vec<&(Candidate, Verified)> = verified
            .iter()
            .filter(|(_, v)| v.layer() == LayerKind::Site)
            .collect();
        site_layer.sort_by_key(|(c, _)| (c.order_pos.unwrap_or(usize::MAX), c.source));
        site_layer.first().map(|(_, v)| v.manifest.site_id.clone())
    });
    let mut by_name: BTreeMap<String, Vec<(Candidate, Verified)>> = BTreeMap::new();
    for (c, v) in verified {
        if let Some(want) = &site_id {
            if *want != v.manifest.site_id {
                let e = Refusal::WrongSite {
                    got: v.manifest.site_id.clone(),
                    want: want.clone(),
                };
                fates.push(refused(&c, Some(&v), &e));
                continue;
            }
        }
        by_name
            .entry(v.manifest.name.clone())
            .or_default()
            .push((c, v));
    }
    for list in by_name.values_mut() {
        // Newest first; for equal versions prefer pushed, then persisted copies.
        list.sort_by(|(ca, va), (cb, vb)| {
            vb.manifest
                .version
                .cmp(&va.manifest.version)
                .then(cb.source.cmp(&ca.source))
        });
    }
    let mut names: Vec<(LayerKind, usize, usize, String)> = by_name
        .iter()
        .map(|(name, list)| {
            let layer = list.first().map(|(_, v)| v.layer()).unwrap_or_default();
            let boot_pos = list
                .iter()
                .filter_map(|(c, _)| c.order_pos)
                .min()
                .unwrap_or(usize::MAX);
            let state_pos = state
                .overlays
                .order
                .iter()
                .position(|n| n == name)
                .unwrap_or(usize::MAX);
            (layer, boot_pos, state_pos, name.clone())
        })
        .collect();
    names.sort();

    // Per name, the newest candidate that unpacks and keeps the merged config valid.
    let unpack_root = paths.unpacked_dir();
    let _ = std::fs::create_dir_all(&unpack_root);
    let mut layers: Vec<Layer> = Vec::new();
    let mut effective: Option<Effective> = None;
    let mut chosen: Vec<(Candidate, Verified)> = Vec::new();
    for (_, _, _, name) in names {
        let Some(list) = by_name.remove(&name) else {
            continue;
        };
        let mut accepted_version: Option<u64> = None;
        for (c, v) in list {
            if let Some(av) = accepted_version {
                report.notes.push(format!(
                    "{} v{} from {} superseded by v{av}",
                    name, v.manifest.version, c.file
                ));
                continue;
            }
            let fresh = unpack_root.join(format!(".{name}.new-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&fresh);
            let tried = try_layer(&fresh, &v, &layers, limits);
            match tried {
                Ok((layer, eff)) => match swap_into_place(&fresh, &unpack_root.join(&name)) {
                    Ok(()) => {
                        layers.push(layer);
                        effective = Some(eff);
                        accepted_version = Some(v.manifest.version);
                        chosen.push((c, v));
                    }
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&fresh);
                        fates.push(refused(
                            &c,
                            Some(&v),
                            &Refusal::Read {
                                path: unpack_root.display().to_string(),
                                reason: e.to_string(),
                            },
                        ));
                    }
                },
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&fresh);
                    fates.push(refused(&c, Some(&v), &e));
                }
            }
        }
    }

    // An older copy (e.g. stale boot media) is refused as a rollback, saying
    // which newer version is in use so the line reads as "handled".
    for mut r in rollbacks {
        let newer = chosen
            .iter()
            .find(|(_, v)| Some(&v.manifest.name) == r.name.as_ref());
        if let Some((c, v)) = newer {
            r.reason = format!(
                "{}; using v{} from {}",
                r.reason, v.manifest.version, c.file
            );
        }
        fates.push(r);
    }

    // Record what was accepted: floors, copies on the data partition, the site.
    for (c, v) in &chosen {
        let m = &v.manifest;
        let entry = AcceptedEntry {
            name: m.name.clone(),
            version: m.version,
            layer: m.layer,
            site_id: m.site_id.clone(),
            source: c.source,
            file: c.file.clone(),
            key_id: v.key_id.to_string(),
            expires: rfc3339(m.expires),
        };
        report.accepted.push(entry);
        if c.source != Source::DataPartition {
            if let Err(e) = persist_copy(
                paths,
                &m.name,
                &c.kovl,
                c.minisig.as_deref().unwrap_or_default(),
            ) {
                report.notes.push(format!(
                    "could not persist {} v{} on the data partition: {e}",
                    m.name, m.version
                ));
            }
        }
        let floor = state.overlays.floors.entry(m.name.clone()).or_insert(0);
        *floor = (*floor).max(m.version);
        let prev = state.overlays.accepted.get(&m.name);
        let accepted_at = prev
            .filter(|p| p.version == m.version)
            .map(|p| p.accepted_at)
            .unwrap_or(now);
        state.overlays.accepted.insert(
            m.name.clone(),
            AcceptedOverlay {
                version: m.version,
                layer: m.layer,
                payload_sha256: m.payload_sha256.clone(),
                key_id: v.key_id.to_string(),
                expires: m.expires,
                accepted_at,
            },
        );
        if m.layer == LayerKind::Site && !state.overlays.order.contains(&m.name) {
            state.overlays.order.push(m.name.clone());
        }
        for k in &m.trusted_keys {
            if !state.overlays.trusted_keys.contains(k) {
                state.overlays.trusted_keys.push(k.clone());
            }
        }
    }
    if !chosen.is_empty() {
        state.overlays.site_id.clone_from(&site_id);
    }
    if state != state_before {
        if let Err(e) = state.save(&paths.state_file()) {
            report.notes.push(e.to_string());
        }
    }

    report.site_id = site_id;
    report.ok = effective.is_some();
    let pushed_fate = chosen
        .iter()
        .find(|(c, _)| c.source == Source::Pushed)
        .and_then(|_| {
            report
                .accepted
                .iter()
                .find(|a| a.source == Source::Pushed)
                .cloned()
        })
        .map(Ok)
        .or_else(|| {
            fates
                .iter()
                .find(|f| f.source == Source::Pushed)
                .cloned()
                .map(Err)
        });
    report.refused.extend(fates);
    if let Some(eff) = &effective {
        write_runtime(paths, eff, &mut report);
    }
    if let Err(e) = write_json(&paths.report_json(), &report) {
        report.notes.push(format!(
            "could not write {}: {e}",
            paths.report_json().display()
        ));
    }
    ApplyOutcome {
        effective,
        report,
        pushed: pushed_fate,
    }
}

/// Unpacks `v` into `fresh`, reads its config and merges it over `layers`.
fn try_layer(
    fresh: &Path,
    v: &Verified,
    layers: &[Layer],
    limits: &Limits,
) -> Result<(Layer, Effective), Refusal> {
    let files = unpack_payload(&v.payload, fresh, limits)?;
    if files != v.manifest.files {
        return Err(crate::unpack::UnpackError::FileList(format!(
            "{} unpacked, {} listed",
            files.len(),
            v.manifest.files.len()
        ))
        .into());
    }
    let tree = SiteTree::read_dir(fresh).map_err(|e| match e {
        kindling_site::LoadTreeError::Invalid(mut c) => {
            // Name files as merge errors do: overlay/file.
            for issue in &mut c.0 {
                issue.file = issue
                    .file
                    .take()
                    .map(|f| format!("{}/{f}", v.manifest.name));
            }
            Refusal::Config(c.one_line())
        }
        other => Refusal::Config(other.to_string()),
    })?;
    let tree_site = tree
        .site
        .as_ref()
        .and_then(|d| d.table.get("site"))
        .and_then(|s| s.get("id"))
        .and_then(|v| v.as_str());
    if let Some(id) = tree_site {
        if id != v.manifest.site_id {
            return Err(Refusal::Config(format!(
                "site.toml says site.id = {id:?}, the manifest says {:?}",
                v.manifest.site_id
            )));
        }
    }
    let layer = Layer {
        label: v.manifest.name.clone(),
        tree,
    };
    let mut all = layers.to_vec();
    all.push(layer.clone());
    let eff = merge_layers(&all).map_err(|e| Refusal::Config(e.one_line()))?;
    Ok((layer, eff))
}

fn persist_copy(paths: &ApplyPaths, name: &str, kovl: &[u8], minisig: &str) -> std::io::Result<()> {
    let dir = paths.persisted_dir();
    std::fs::create_dir_all(&dir)?;
    let target = dir.join(format!("{name}.kovl"));
    if std::fs::read(&target).is_ok_and(|old| old == kovl)
        && std::fs::read_to_string(dir.join(format!("{name}.kovl.minisig")))
            .is_ok_and(|s| s == minisig)
    {
        return Ok(());
    }
    write_atomic(&target, kovl, true)?;
    write_atomic(
        &dir.join(format!("{name}.kovl.minisig")),
        minisig.as_bytes(),
        true,
    )
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    // /run is a tmpfs: no fsync needed, only atomic replacement.
    write_atomic(path, &bytes, false)
}

fn write_runtime(paths: &ApplyPaths, eff: &Effective, report: &mut Report) {
    for (path, result) in [
        (
            paths.site_json(),
            write_json(&paths.site_json(), &eff.config),
        ),
        (
            paths.effective_json(),
            write_json(&paths.effective_json(), eff),
        ),
    ] {
        if let Err(e) = result {
            report
                .notes
                .push(format!("could not write {}: {e}", path.display()));
        }
    }
}
