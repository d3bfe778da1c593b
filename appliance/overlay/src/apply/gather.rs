//! Stage `gather`: the overlay files this run considers, read whole and
//! bounded by the size limit: the boot media's in `order` (or sorted when
//! there is no order file), the data partition's accepted copies, and an
//! optionally pushed one. Reads only; decides nothing about trust.

use super::{ApplyPaths, PushedOverlay, Refused, Source};
use crate::limits::Limits;
use kindling_api::{ApiFailure, ErrorKind};
use std::path::{Path, PathBuf};

/// The file name the report uses for an overlay delivered over the API.
pub const PUSHED_FILE: &str = "pushed overlay";

/// One overlay file and its signature, as read.
#[derive(Debug)]
pub struct Candidate {
    /// Path (or [`PUSHED_FILE`]) as the report names it.
    pub file: String,
    /// `NAME` of a `NAME.kovl` file; it must match the manifest's name.
    pub stem: Option<String>,
    pub source: Source,
    /// Position in the boot media's order file.
    pub order_pos: Option<usize>,
    pub kovl: Vec<u8>,
    pub minisig: Option<String>,
}

/// Why a file could not be gathered; the message is the report's reason.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error("cannot read: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("file is {size} bytes, larger than the {limit}-byte limit")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{} lists a path, expected a file name", order_file.display())]
    OrderListsPath { order_file: PathBuf, entry: String },
}

impl ApiFailure for GatherError {
    fn kind(&self) -> ErrorKind {
        match self {
            GatherError::ReadFile { .. } => ErrorKind::Internal,
            GatherError::TooLarge { .. } => ErrorKind::TooLarge,
            GatherError::OrderListsPath { .. } => ErrorKind::Refused,
        }
    }
}

/// What `gather` hands on: the candidates, and the files it could not read.
pub struct Gathered {
    pub candidates: Vec<Candidate>,
    pub refused: Vec<Refused>,
}

pub fn gather(paths: &ApplyPaths, pushed: Option<PushedOverlay>, limits: &Limits) -> Gathered {
    let mut out = Gathered {
        candidates: Vec::new(),
        refused: Vec::new(),
    };
    let mut add = |read: Result<Candidate, GatherError>, file: &str, source: Source| match read {
        Ok(c) => out.candidates.push(c),
        Err(e) => out.refused.push(Refused::new(file, source, None, e)),
    };
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
            let e = GatherError::OrderListsPath {
                order_file: order_file.clone(),
                entry: name.clone(),
            };
            add(Err(e), name, Source::BootMedia);
            continue;
        }
        let file = if name.ends_with(".kovl") {
            name.clone()
        } else {
            format!("{name}.kovl")
        };
        let path = paths.boot_overlays.join(file);
        let read = read_candidate(&path, Source::BootMedia, Some(pos), limits);
        add(read, &path.display().to_string(), Source::BootMedia);
    }
    let persisted = paths.persisted_dir();
    for file in list_kovl(&persisted) {
        let path = persisted.join(file);
        let read = read_candidate(&path, Source::DataPartition, None, limits);
        add(read, &path.display().to_string(), Source::DataPartition);
    }
    if let Some(p) = pushed {
        out.candidates.push(Candidate {
            file: PUSHED_FILE.into(),
            stem: None,
            source: Source::Pushed,
            order_pos: None,
            kovl: p.kovl,
            minisig: Some(p.minisig),
        });
    }
    out
}

fn read_candidate(
    path: &Path,
    source: Source,
    order_pos: Option<usize>,
    limits: &Limits,
) -> Result<Candidate, GatherError> {
    let read_failed = |source| GatherError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_failed)?;
    if meta.len() > limits.max_kovl_bytes {
        return Err(GatherError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit: limits.max_kovl_bytes,
        });
    }
    let kovl = std::fs::read(path).map_err(read_failed)?;
    let file = path.display().to_string();
    // A missing signature is the verify stage's refusal, not a read error.
    let minisig = std::fs::read_to_string(format!("{file}.minisig")).ok();
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
