//! Stage `validate`: an unpacked tree read as config files, checked against
//! its manifest's site, and merged over the layers already chosen into one
//! valid `SiteConfig`. Reads the unpacked directory only; on failure the
//! directory is discarded.

use super::unpack::Unpacked;
use crate::verify::Verified;
use kindling_api::{ApiFailure, ErrorKind};
use kindling_site::{merge_layers, Effective, Layer, LoadTreeError, SiteTree};

/// Why an unpacked tree does not make a valid configuration. Messages are one
/// line; files are named `overlay/file`, as merge errors name them.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("invalid configuration: {0}")]
    ReadTree(String),
    #[error(
        "invalid configuration: site.toml says site.id = {tree:?}, the manifest says {manifest:?}"
    )]
    SiteMismatch { tree: String, manifest: String },
    #[error("invalid configuration: {0}")]
    Merge(String),
}

impl ApiFailure for ValidateError {
    fn kind(&self) -> ErrorKind {
        match self {
            ValidateError::ReadTree(_)
            | ValidateError::SiteMismatch { .. }
            | ValidateError::Merge(_) => ErrorKind::Refused,
        }
    }
}

/// What `validate` hands on: the tree, its layer and the merged config.
#[derive(Debug)]
pub struct Validated {
    pub unpacked: Unpacked,
    pub layer: Layer,
    pub effective: Effective,
}

pub fn validate(
    unpacked: Unpacked,
    v: &Verified,
    layers: &[Layer],
) -> Result<Validated, ValidateError> {
    match merge(&unpacked, v, layers) {
        Ok((layer, effective)) => Ok(Validated {
            unpacked,
            layer,
            effective,
        }),
        Err(e) => {
            unpacked.discard();
            Err(e)
        }
    }
}

fn merge(
    unpacked: &Unpacked,
    v: &Verified,
    layers: &[Layer],
) -> Result<(Layer, Effective), ValidateError> {
    let tree = SiteTree::read_dir(&unpacked.dir).map_err(|e| match e {
        LoadTreeError::Invalid(mut c) => {
            for issue in &mut c.0 {
                issue.file = issue
                    .file
                    .take()
                    .map(|f| format!("{}/{f}", v.manifest.name));
            }
            ValidateError::ReadTree(c.one_line())
        }
        other => ValidateError::ReadTree(other.to_string()),
    })?;
    let tree_site = tree
        .site
        .as_ref()
        .and_then(|d| d.table.get("site"))
        .and_then(|s| s.get("id"))
        .and_then(|v| v.as_str());
    if let Some(id) = tree_site {
        if id != v.manifest.site_id {
            return Err(ValidateError::SiteMismatch {
                tree: id.to_string(),
                manifest: v.manifest.site_id.clone(),
            });
        }
    }
    let layer = Layer {
        label: v.manifest.name.clone(),
        tree,
    };
    let mut all = layers.to_vec();
    all.push(layer.clone());
    let effective = merge_layers(&all).map_err(|e| ValidateError::Merge(e.one_line()))?;
    Ok((layer, effective))
}
