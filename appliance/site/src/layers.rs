//! Stacking config trees: image defaults < site overlays in order < the
//! per-appliance overlay. Tables merge key by key, any other value (including
//! arrays such as `nodes`) is replaced whole by a later layer, and a profile
//! file replaces the profile of the same name. Every value set by a layer is
//! recorded with its origin, so the effective config can say where each value
//! came from and errors point at the file and line that set the bad value.
//!
//! Pure: works on parsed trees, never reads or writes files.

use crate::error::{ConfigErrors, ConfigIssue};
use crate::keypath::{locate, KeyPath};
use crate::load::{SiteTree, SourceDoc};
use crate::SiteConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One layer: a label (the overlay's name) and its config files.
#[derive(Debug, Clone)]
pub struct Layer {
    pub label: String,
    pub tree: SiteTree,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Origin {
    pub layer: String,
    pub file: String,
}

/// The merged, validated configuration and the origin of every value a layer set
/// (keys are dotted paths; a value not listed is the image default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Effective {
    pub config: SiteConfig,
    pub provenance: BTreeMap<String, Origin>,
}

/// Label used in provenance for values no layer set.
pub const DEFAULT_LAYER: &str = "default";

impl Effective {
    /// The origin of the value at `path` (or the nearest enclosing value a layer
    /// set), or `None` when it is an image default.
    pub fn origin_of(&self, path: &str) -> Option<&Origin> {
        find_origin(&self.provenance, &KeyPath::parse(path)).map(|(_, o)| o)
    }
}

impl SiteTree {
    /// This tree alone as a complete config (defaults for what it does not set),
    /// validated: what `kindling overlay build` checks before signing.
    pub fn to_config(&self, label: &str) -> Result<Effective, ConfigErrors> {
        merge_layers(&[Layer {
            label: label.to_string(),
            tree: self.clone(),
        }])
    }
}

/// Merges the layers in order and validates the result.
pub fn merge_layers(layers: &[Layer]) -> Result<Effective, ConfigErrors> {
    let mut site = toml::Table::new();
    let mut profiles = toml::Table::new();
    let mut provenance = BTreeMap::new();
    // Which document of which layer set a profile, to locate lines later.
    let mut docs: BTreeMap<(String, String), &SourceDoc> = BTreeMap::new();
    for layer in layers {
        if let Some(doc) = &layer.tree.site {
            let origin = Origin {
                layer: layer.label.clone(),
                file: doc.file.clone(),
            };
            merge_table(
                &mut site,
                &doc.table,
                &KeyPath::root(),
                &origin,
                &mut provenance,
            );
            docs.insert((layer.label.clone(), doc.file.clone()), doc);
        }
        for (name, doc) in &layer.tree.profiles {
            let origin = Origin {
                layer: layer.label.clone(),
                file: doc.file.clone(),
            };
            let path = KeyPath::root().key("profiles").key(name);
            // A later profile replaces the earlier one whole: drop stale origins.
            let prefix = path.to_string();
            provenance
                .retain(|k: &String, _| k != &prefix && !k.starts_with(&format!("{prefix}.")));
            provenance.insert(prefix, origin);
            profiles.insert(name.to_string(), toml::Value::Table(doc.table.clone()));
            docs.insert((layer.label.clone(), doc.file.clone()), doc);
        }
    }
    if !profiles.is_empty() {
        site.insert("profiles".into(), toml::Value::Table(profiles));
    }
    let issue_at = |path: &KeyPath, reason: String| -> ConfigIssue {
        match find_origin(&provenance, path) {
            Some((set_at, origin)) => {
                let doc = docs.get(&(origin.layer.clone(), origin.file.clone()));
                // Inside a profile document, paths are relative to the profile.
                let in_doc = if origin.file.starts_with("profiles/") && set_at.0.len() >= 2 {
                    KeyPath(path.0.iter().skip(2).cloned().collect())
                } else {
                    path.clone()
                };
                ConfigIssue {
                    file: Some(format!("{}/{}", origin.layer, origin.file)),
                    line: doc.and_then(|d| locate(&d.text, &in_doc)),
                    key: path.to_string(),
                    reason,
                }
            }
            None => ConfigIssue {
                file: None,
                line: None,
                key: path.to_string(),
                reason,
            },
        }
    };
    let config: SiteConfig = match toml::Value::Table(site).try_into() {
        Ok(c) => c,
        // Each file passed the same typed check alone; a merge of valid files
        // failing here would be a model bug, still reported, never a panic.
        Err(e) => {
            return Err(ConfigErrors(vec![issue_at(
                &KeyPath::root(),
                e.message().replace('\n', " "),
            )]))
        }
    };
    let problems = config.validate();
    if problems.is_empty() {
        Ok(Effective { config, provenance })
    } else {
        Err(ConfigErrors(
            problems.into_iter().map(|(p, r)| issue_at(&p, r)).collect(),
        ))
    }
}

fn merge_table(
    into: &mut toml::Table,
    from: &toml::Table,
    at: &KeyPath,
    origin: &Origin,
    provenance: &mut BTreeMap<String, Origin>,
) {
    for (key, value) in from {
        let path = at.key(key);
        match (into.get_mut(key), value) {
            (Some(toml::Value::Table(dst)), toml::Value::Table(src)) => {
                merge_table(dst, src, &path, origin, provenance);
            }
            _ => {
                let prefix = path.to_string();
                provenance.retain(|k, _| {
                    !k.starts_with(&format!("{prefix}.")) && !k.starts_with(&format!("{prefix}["))
                });
                if let toml::Value::Table(src) = value {
                    let mut fresh = toml::Table::new();
                    merge_table(&mut fresh, src, &path, origin, provenance);
                    into.insert(key.clone(), toml::Value::Table(fresh));
                } else {
                    provenance.insert(prefix, origin.clone());
                    into.insert(key.clone(), value.clone());
                }
            }
        }
    }
}

/// The recorded origin for `path`: its own, an enclosing value's, or (for a
/// table whose leaves were set individually) the first leaf's below it.
fn find_origin<'a>(
    provenance: &'a BTreeMap<String, Origin>,
    path: &KeyPath,
) -> Option<(KeyPath, &'a Origin)> {
    for n in (1..=path.0.len()).rev() {
        let prefix = KeyPath(path.0[..n].to_vec());
        if let Some(o) = provenance.get(&prefix.to_string()) {
            return Some((prefix, o));
        }
    }
    let text = path.to_string();
    provenance
        .iter()
        .find(|(k, _)| k.starts_with(&format!("{text}.")) || k.starts_with(&format!("{text}[")))
        .map(|(k, o)| (KeyPath::parse(k), o))
}
