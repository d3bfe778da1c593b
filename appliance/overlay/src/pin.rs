//! Build-time resolution of artifact names in profiles: a profile's boot
//! field (`kernel`, `initrd`, `iso`) that names an artifact the operator
//! pushed is rewritten to `sha256/HEX` in the packed overlay, so the
//! overlay pins the bytes nodes boot (`kindling_site::ArtifactRef`).
//!
//! The catalog is what the appliance keeps (`GET /v1/artifacts`, the JSON
//! `kindling artifact list --json` prints). A name the catalog does not
//! hold stays a file name (an artifact baked into the image); a name it
//! holds with several hashes is an error naming them.
//!
//! The rewrite replaces only the string literal of each resolved value,
//! found by its span in the operator's TOML text: comments, layout and
//! every other value stay as written.

use kindling_api::artifacts::ArtifactList;
use kindling_site::{ArtifactRef, PINNED_PREFIX};
use std::collections::{BTreeMap, BTreeSet};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("the artifact catalog is not `kindling artifact list --json` output: {0}")]
    Catalog(String),
    #[error("the artifact catalog lists {name:?} with a sha256 that is not 64 lower-case hex digits: {sha256:?}")]
    CatalogDigest { name: String, sha256: String },
    #[error("profile {profile}: boot.{field} names {name:?}, which the appliance keeps with {} different contents ({}): pin the one meant as sha256/HEX in the profile, or delete the others (`kindling artifact delete`)", .hashes.len(), .hashes.iter().map(|h| format!("sha256/{h}")).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        profile: String,
        field: String,
        name: String,
        hashes: Vec<String>,
    },
    #[error("profiles/{profile}.toml: {reason}")]
    Parse { profile: String, reason: String },
}

/// Pushed artifacts by name: every sha256 kept under each name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    by_name: BTreeMap<String, BTreeSet<String>>,
}

impl Catalog {
    /// From the appliance's list. Artifacts whose record was lost (no name)
    /// cannot be named and are left out.
    pub fn from_list(list: &ArtifactList) -> Result<Self, PinError> {
        let mut by_name: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for a in &list.artifacts {
            if a.name.is_empty() {
                continue;
            }
            let pinned = format!("{PINNED_PREFIX}{}", a.sha256);
            if !matches!(ArtifactRef::parse(&pinned), Ok(ArtifactRef::Pinned(_))) {
                return Err(PinError::CatalogDigest {
                    name: a.name.clone(),
                    sha256: a.sha256.clone(),
                });
            }
            by_name
                .entry(a.name.clone())
                .or_default()
                .insert(a.sha256.clone());
        }
        Ok(Self { by_name })
    }

    /// From the JSON `kindling artifact list --json` prints.
    pub fn from_json(text: &str) -> Result<Self, PinError> {
        let list: ArtifactList =
            serde_json::from_str(text).map_err(|e| PinError::Catalog(e.to_string()))?;
        Self::from_list(&list)
    }

    /// The hashes kept under `name` (empty: none).
    pub fn hashes(&self, name: &str) -> Vec<String> {
        self.by_name
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// What became of one boot field that names a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Rewritten to `sha256/HEX`.
    Pinned {
        profile: String,
        field: String,
        name: String,
        sha256: String,
    },
    /// Not in the catalog: stays a file name (a baked artifact).
    Baked {
        profile: String,
        field: String,
        name: String,
    },
}

impl std::fmt::Display for Resolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resolution::Pinned {
                profile,
                field,
                name,
                sha256,
            } => write!(f, "profile {profile}: {field} {name} -> sha256/{sha256}"),
            Resolution::Baked {
                profile,
                field,
                name,
            } => write!(
                f,
                "profile {profile}: {field} {name} is not a pushed artifact; it stays a file name (served from the image's artifacts, e.g. baked with --artifact)"
            ),
        }
    }
}

/// The boot fields that name artifacts, as the profile model has them.
const ARTIFACT_KEYS: [&str; 3] = ["kernel", "initrd", "iso"];

/// A string value with where its literal is in the text.
struct Found {
    field: String,
    value: String,
    span: std::ops::Range<usize>,
}

fn strings_in(key: &str, value: &Spanned<DeValue<'_>>, out: &mut Vec<Found>) {
    match value.get_ref() {
        DeValue::String(s) => out.push(Found {
            field: key.to_string(),
            value: s.to_string(),
            span: value.span(),
        }),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if let DeValue::String(s) = item.get_ref() {
                    out.push(Found {
                        field: format!("{key}[{i}]"),
                        value: s.to_string(),
                        span: item.span(),
                    });
                }
            }
        }
        _ => {}
    }
}

/// The artifact fields of `text`'s `[boot]` table (however it is written:
/// a section, an inline table or dotted keys).
fn boot_strings(profile: &str, text: &str) -> Result<Vec<Found>, PinError> {
    let root = DeTable::parse(text).map_err(|e| PinError::Parse {
        profile: profile.to_string(),
        reason: e.to_string().replace('\n', " "),
    })?;
    let mut out = Vec::new();
    let boot = root
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "boot")
        .and_then(|(_, v)| v.get_ref().as_table());
    for (key, value) in boot.into_iter().flatten() {
        if ARTIFACT_KEYS.contains(&key.get_ref().as_ref()) {
            strings_in(key.get_ref(), value, &mut out);
        }
    }
    // In the order they are written (the parsed table is sorted by key).
    out.sort_by_key(|f| f.span.start);
    Ok(out)
}

/// Rewrites the names of pushed artifacts in one profile's text (the
/// profile `profile`, `profiles/PROFILE.toml`) to `sha256/HEX`: the new
/// text and what became of each name. Pins and URLs are left alone.
pub fn pin_profile(
    profile: &str,
    text: &str,
    catalog: &Catalog,
) -> Result<(String, Vec<Resolution>), PinError> {
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut resolutions = Vec::new();
    for found in boot_strings(profile, text)? {
        // A malformed pin is the validator's to report, by profile and field.
        let Ok(ArtifactRef::Name(name)) = ArtifactRef::parse(&found.value) else {
            continue;
        };
        let hashes = catalog.hashes(name);
        match hashes.as_slice() {
            [] => resolutions.push(Resolution::Baked {
                profile: profile.to_string(),
                field: found.field,
                name: name.to_string(),
            }),
            [sha256] => {
                // A basic string: `sha256/` and hex need no escaping.
                edits.push((found.span, format!("\"{PINNED_PREFIX}{sha256}\"")));
                resolutions.push(Resolution::Pinned {
                    profile: profile.to_string(),
                    field: found.field,
                    name: name.to_string(),
                    sha256: sha256.clone(),
                });
            }
            _ => {
                return Err(PinError::Ambiguous {
                    profile: profile.to_string(),
                    field: found.field,
                    name: name.to_string(),
                    hashes,
                })
            }
        }
    }
    let mut out = text.to_string();
    edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    for (span, literal) in edits {
        out.replace_range(span, &literal);
    }
    Ok((out, resolutions))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use kindling_api::artifacts::ArtifactInfo;

    fn list(items: &[(&str, String)]) -> ArtifactList {
        ArtifactList {
            artifacts: items
                .iter()
                .map(|(name, sha256)| ArtifactInfo {
                    sha256: sha256.clone(),
                    name: name.to_string(),
                    bytes: 1,
                    uploaded: "2026-12-07T05:00:00Z".into(),
                    uploaded_by: "alice".into(),
                    path: format!("/by-hash/sha256/{sha256}"),
                })
                .collect(),
            max_bytes: 1,
            keep_free_bytes: 1,
        }
    }

    #[test]
    fn names_in_the_catalog_are_pinned_and_the_rest_of_the_file_is_kept() {
        let (k, i) = ("1a".repeat(32), "2b".repeat(32));
        let pinned_before = format!("sha256/{}", "3c".repeat(32));
        let catalog = Catalog::from_list(&list(&[
            ("vmlinuz", k.clone()),
            ("node.cpio", i.clone()),
            ("", "4d".repeat(32)),
        ]))
        .unwrap();
        let text = format!(
            "# the lab's dev nodes\nname = \"dev\"\n\n[boot]\nkind = \"linux\"\nkernel = 'vmlinuz'   # pushed\ninitrd = [\n  \"node.cpio\",\n  \"baked.cpio\",\n  \"{pinned_before}\",\n  \"https://m.example/x\",\n]\ncmdline = \"vmlinuz node.cpio\"\n\n[tags]\nkernel = \"vmlinuz\"\n"
        );
        let (out, res) = pin_profile("dev", &text, &catalog).unwrap();
        assert_eq!(
            out,
            format!(
                "# the lab's dev nodes\nname = \"dev\"\n\n[boot]\nkind = \"linux\"\nkernel = \"sha256/{k}\"   # pushed\ninitrd = [\n  \"sha256/{i}\",\n  \"baked.cpio\",\n  \"{pinned_before}\",\n  \"https://m.example/x\",\n]\ncmdline = \"vmlinuz node.cpio\"\n\n[tags]\nkernel = \"vmlinuz\"\n"
            )
        );
        let lines: Vec<String> = res.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                format!("profile dev: kernel vmlinuz -> sha256/{k}"),
                format!("profile dev: initrd[0] node.cpio -> sha256/{i}"),
                "profile dev: initrd[1] baked.cpio is not a pushed artifact; it stays a file name (served from the image's artifacts, e.g. baked with --artifact)".to_string(),
            ]
        );
        // Pinning is idempotent.
        let (again, res) = pin_profile("dev", &out, &catalog).unwrap();
        assert_eq!(again, out);
        assert_eq!(res.len(), 1, "only the baked name is reported");
    }

    #[test]
    fn inline_and_dotted_boot_tables_and_escapes_are_found() {
        let k = "1a".repeat(32);
        let catalog = Catalog::from_list(&list(&[("d-i/linux", k.clone())])).unwrap();
        let text = "name = \"dev\"\nboot = { kind = \"iso\", iso = \"d-i\\u002flinux\" }\n";
        let (out, _) = pin_profile("dev", text, &catalog).unwrap();
        assert_eq!(
            out,
            format!("name = \"dev\"\nboot = {{ kind = \"iso\", iso = \"sha256/{k}\" }}\n")
        );
        let text = "name = \"dev\"\nboot.kind = \"iso\"\nboot.iso = \"d-i/linux\"\n";
        let (out, _) = pin_profile("dev", text, &catalog).unwrap();
        assert_eq!(
            out,
            format!("name = \"dev\"\nboot.kind = \"iso\"\nboot.iso = \"sha256/{k}\"\n")
        );
    }

    #[test]
    fn a_name_kept_with_two_contents_is_an_error_naming_both() {
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        let catalog =
            Catalog::from_list(&list(&[("vmlinuz", b.clone()), ("vmlinuz", a.clone())])).unwrap();
        let text = "name = \"dev\"\n[boot]\nkind = \"linux\"\nkernel = \"vmlinuz\"\n";
        let err = pin_profile("dev", text, &catalog).unwrap_err().to_string();
        assert!(
            err.starts_with("profile dev: boot.kernel names \"vmlinuz\", which the appliance keeps with 2 different contents"),
            "{err}"
        );
        assert!(err.contains(&format!("(sha256/{a}, sha256/{b})")), "{err}");
        // Unused, the same ambiguity is no error.
        let text = "name = \"dev\"\n[boot]\nkind = \"iso\"\niso = \"other.iso\"\n";
        assert!(pin_profile("dev", text, &catalog).is_ok());
    }

    #[test]
    fn a_catalog_must_be_the_list_with_well_formed_hashes() {
        let good = serde_json::to_string(&list(&[("x", "ab".repeat(32))])).unwrap();
        assert_eq!(
            Catalog::from_json(&good).unwrap().hashes("x"),
            vec!["ab".repeat(32)]
        );
        let err = Catalog::from_json("[\"x\"]").unwrap_err().to_string();
        assert!(err.starts_with("the artifact catalog is not"), "{err}");
        for bad in [
            "AB".repeat(32),
            "ab".repeat(31),
            format!("../{}", "a".repeat(61)),
        ] {
            let json = serde_json::to_string(&list(&[("x", bad.clone())])).unwrap();
            let err = Catalog::from_json(&json).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        let err = pin_profile("dev", "name = ", &Catalog::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("profiles/dev.toml: "), "{err}");
    }
}
