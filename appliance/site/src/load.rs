//! Reading one config tree (`site.toml`, `profiles/*.toml`) and checking each
//! file on its own: TOML syntax, unknown keys, value types, newtypes. All
//! problems of a tree are collected, each with file, line and key.
//!
//! A file here may be partial (a per-appliance overlay sets only what differs),
//! so whole-config rules are not checked here but after merging (`layers`).
//! This module reads files only when asked to read a directory; it never writes.

use crate::error::{ConfigErrors, ConfigIssue, LoadTreeError};
use crate::keypath::line_of;
use crate::{Profile, ProfileName, SiteConfig};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;

/// Largest config file accepted; configs are small, this guards memory.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// One parsed config file.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceDoc {
    /// Path relative to the tree root, `/`-separated.
    pub file: String,
    pub text: String,
    pub table: toml::Table,
}

/// The config files of one tree (one overlay).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteTree {
    pub site: Option<SourceDoc>,
    /// By profile name (= file stem).
    pub profiles: BTreeMap<ProfileName, SourceDoc>,
}

impl SiteTree {
    /// Reads `dir/site.toml` (optional) and `dir/profiles/*.toml`. Other files
    /// (`files/…`, `trust/…`) are not config and are left alone.
    pub fn read_dir(dir: &Path) -> Result<Self, LoadTreeError> {
        let mut files = Vec::new();
        let site = dir.join("site.toml");
        if site.exists() {
            files.push(("site.toml".to_string(), read_limited(&site)?));
        }
        let profiles = dir.join("profiles");
        if profiles.is_dir() {
            let read_err = |source| LoadTreeError::Read {
                path: profiles.display().to_string(),
                source,
            };
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&profiles).map_err(read_err)? {
                let entry = entry.map_err(read_err)?;
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            for name in names {
                let path = profiles.join(&name);
                let text = if path.is_file() {
                    read_limited(&path)?
                } else {
                    String::new()
                };
                files.push((format!("profiles/{name}"), text));
            }
        }
        Ok(Self::from_files(files)?)
    }

    /// Builds a tree from `(relative path, text)` pairs; paths other than
    /// `site.toml` and `profiles/*` are ignored.
    pub fn from_files(files: Vec<(String, String)>) -> Result<Self, ConfigErrors> {
        let mut tree = SiteTree::default();
        let mut issues = Vec::new();
        for (file, text) in files {
            if file == "site.toml" {
                match parse_site_file(&file, text) {
                    Ok(doc) => tree.site = Some(doc),
                    Err(mut e) => issues.append(&mut e),
                }
            } else if let Some(name) = file.strip_prefix("profiles/") {
                match parse_profile_file(&file, name, text) {
                    Ok((name, doc)) => {
                        tree.profiles.insert(name, doc);
                    }
                    Err(mut e) => issues.append(&mut e),
                }
            }
        }
        if issues.is_empty() {
            Ok(tree)
        } else {
            Err(ConfigErrors(issues))
        }
    }
}

fn read_limited(path: &Path) -> Result<String, LoadTreeError> {
    use std::io::Read;
    let err = |source| LoadTreeError::Read {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(err)?;
    if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(err(std::io::Error::other(format!(
            "larger than {MAX_CONFIG_FILE_BYTES} bytes"
        ))));
    }
    Ok(text)
}

fn issue(file: &str, line: Option<usize>, key: &str, reason: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        file: Some(file.to_string()),
        line,
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// Deserializes `text` as `T`, turning the first error into an issue with the
/// key path (from serde_path_to_error) and the line (from toml's span).
fn typed_check<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, ConfigIssue> {
    let de = toml::Deserializer::parse(text).map_err(|e| toml_issue(file, text, "", &e))?;
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "?" || path == "." {
            String::new()
        } else {
            path
        };
        toml_issue(file, text, &key, e.inner())
    })
}

fn toml_issue(file: &str, text: &str, key: &str, err: &toml::de::Error) -> ConfigIssue {
    let line = err.span().map(|s| line_of(text, s.start));
    // toml's message is one line; its Display adds a multi-line excerpt we drop.
    let reason = err.message().trim().replace('\n', " ");
    issue(file, line, key, reason)
}

fn parse_site_file(file: &str, text: String) -> Result<SourceDoc, Vec<ConfigIssue>> {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => return Err(vec![toml_issue(file, &text, "", &e)]),
    };
    if table.contains_key("profiles") {
        let line = crate::keypath::locate(&text, &crate::keypath::KeyPath::parse("profiles"));
        return Err(vec![issue(
            file,
            line,
            "profiles",
            "profiles are written in profiles/NAME.toml, not in site.toml",
        )]);
    }
    typed_check::<SiteConfig>(file, &text).map_err(|e| vec![e])?;
    Ok(SourceDoc {
        file: file.to_string(),
        text,
        table,
    })
}

fn parse_profile_file(
    file: &str,
    name: &str,
    text: String,
) -> Result<(ProfileName, SourceDoc), Vec<ConfigIssue>> {
    let Some(stem) = name.strip_suffix(".toml") else {
        return Err(vec![issue(
            file,
            None,
            "",
            "only NAME.toml files belong in profiles/",
        )]);
    };
    let pname: ProfileName = stem
        .parse()
        .map_err(|e: crate::ParseValueError| vec![issue(file, None, "", e.to_string())])?;
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => return Err(vec![toml_issue(file, &text, "", &e)]),
    };
    let profile = typed_check::<Profile>(file, &text).map_err(|e| vec![e])?;
    if profile.name != pname {
        let line = crate::keypath::locate(&text, &crate::keypath::KeyPath::parse("name"));
        return Err(vec![issue(
            file,
            line,
            "name",
            format!(
                "{:?} does not match the file name {file}",
                profile.name.as_str()
            ),
        )]);
    }
    Ok((
        pname,
        SourceDoc {
            file: file.to_string(),
            text,
            table,
        },
    ))
}
