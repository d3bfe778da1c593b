//! cloud-init's `write_files` module: each entry's content (decoded per
//! `encoding`) at `path` with `permissions` (default 0644), parents made.
//! `owner` may only be root (the payload has no other user); `defer` only
//! delays the write past user creation, which the payload has none of.

use base64::Engine;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use yaml_rust2::Yaml;

const FIELDS: &[&str] = &[
    "path",
    "content",
    "permissions",
    "owner",
    "encoding",
    "append",
    "defer",
];

/// Writes every entry; returns one line per file written.
pub fn apply(entries: &Yaml, root: &Path) -> Result<Vec<String>, String> {
    let list = match entries {
        Yaml::BadValue => return Ok(Vec::new()),
        Yaml::Array(list) => list,
        _ => return Err("write_files is not a list".into()),
    };
    list.iter()
        .enumerate()
        .map(|(i, entry)| write_one(entry, root).map_err(|e| format!("write_files[{i}]: {e}")))
        .collect()
}

fn write_one(entry: &Yaml, root: &Path) -> Result<String, String> {
    let Yaml::Hash(map) = entry else {
        return Err("not a mapping".into());
    };
    for key in map.keys() {
        let key = key.as_str().unwrap_or("?");
        if !FIELDS.contains(&key) {
            return Err(format!("field {key:?} is not one this double implements"));
        }
    }
    let path = entry["path"].as_str().ok_or("no path")?;
    let content = match &entry["content"] {
        Yaml::BadValue => "",
        Yaml::String(s) => s.as_str(),
        _ => return Err(format!("{path}: content is not a string")),
    };
    let bytes = match entry["encoding"].as_str().unwrap_or("text/plain") {
        "text/plain" => content.as_bytes().to_vec(),
        "b64" | "base64" => base64::engine::general_purpose::STANDARD
            .decode(content.trim())
            .map_err(|e| format!("{path}: content is not base64: {e}"))?,
        other => return Err(format!("{path}: encoding {other:?} is not implemented")),
    };
    let mode = match &entry["permissions"] {
        Yaml::BadValue => 0o644,
        Yaml::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8)
            .map_err(|_| format!("{path}: permissions {s:?} are not octal"))?,
        _ => return Err(format!("{path}: permissions must be a quoted octal string")),
    };
    match entry["owner"].as_str() {
        None | Some("root") | Some("root:root") => {}
        Some(other) => {
            return Err(format!(
                "{path}: owner {other:?}: the lab node has root only"
            ))
        }
    }
    let append = entry["append"].as_bool().unwrap_or(false);
    let target = super::under(root, path)?;
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .append(append)
        .truncate(!append)
        .mode(mode)
        .open(&target)
        .map_err(|e| format!("opening {}: {e}", target.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
        .map_err(|e| format!("writing {}: {e}", target.display()))?;
    Ok(format!("{path} ({} bytes, {mode:04o})", bytes.len()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use yaml_rust2::YamlLoader;

    fn doc(text: &str) -> Yaml {
        YamlLoader::load_from_str(text).unwrap().remove(0)
    }

    #[test]
    fn writes_decoded_content_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let d = doc("write_files:\n  - path: \"/etc/kindling/node.json\"\n    permissions: \"0600\"\n    owner: \"root:root\"\n    content: \"{\\\"mac\\\": \\\"52:54\\\"}\"\n  - path: /etc/b\n    encoding: b64\n    content: aGk=\n");
        let said = apply(&d["write_files"], dir.path()).unwrap();
        assert_eq!(said.len(), 2);
        let node = dir.path().join("etc/kindling/node.json");
        assert_eq!(
            std::fs::read_to_string(&node).unwrap(),
            r#"{"mac": "52:54"}"#
        );
        let mode = std::fs::metadata(&node).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(dir.path().join("etc/b")).unwrap(), b"hi");
    }

    #[test]
    fn refuses_what_it_does_not_implement() {
        let dir = tempfile::tempdir().unwrap();
        for (entry, want) in [
            (
                "  - path: /x\n    source: {uri: http://a}\n",
                "field \"source\"",
            ),
            (
                "  - path: /x\n    encoding: gzip\n    content: a\n",
                "encoding \"gzip\"",
            ),
            ("  - path: /x\n    owner: nobody\n", "root only"),
            ("  - path: x\n", "not an absolute path"),
            ("  - path: /a/../../x\n", "leaves the root"),
        ] {
            let d = doc(&format!("write_files:\n{entry}"));
            let err = apply(&d["write_files"], dir.path()).unwrap_err();
            assert!(err.contains(want), "{entry}: {err}");
        }
    }
}
