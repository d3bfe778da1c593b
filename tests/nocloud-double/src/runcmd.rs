//! cloud-init's `runcmd`, as `scripts_user` runs it: the list becomes one
//! `#!/bin/sh` script (a list item's words shell-quoted and joined, a
//! string item as written), saved under the instance's scripts directory
//! and run once. Its output goes to the console.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use yaml_rust2::Yaml;

const SCRIPT: &str = "/var/lib/cloud/instance/scripts/runcmd";

/// Runs the script; its exit status (0 when there is no runcmd).
pub fn run(runcmd: &Yaml, root: &Path) -> Result<i32, String> {
    let Some(script) = script(runcmd)? else {
        return Ok(0);
    };
    let path = super::under(root, SCRIPT)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(&path, script)
        .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    super::say(&format!("runcmd: running {SCRIPT}"));
    let status = std::process::Command::new("/bin/sh")
        .arg(&path)
        .status()
        .map_err(|e| format!("running {}: {e}", path.display()))?;
    Ok(status.code().unwrap_or(128))
}

fn script(runcmd: &Yaml) -> Result<Option<String>, String> {
    let items = match runcmd {
        Yaml::BadValue => return Ok(None),
        Yaml::Array(items) => items,
        _ => return Err("runcmd is not a list".into()),
    };
    let mut out = String::from("#!/bin/sh\n");
    for (i, item) in items.iter().enumerate() {
        match item {
            Yaml::String(line) => out.push_str(line),
            Yaml::Array(words) => {
                let quoted: Result<Vec<String>, String> = words
                    .iter()
                    .map(|w| {
                        w.as_str()
                            .map(quote)
                            .ok_or_else(|| format!("runcmd[{i}]: a word is not a string"))
                    })
                    .collect();
                out.push_str(&quoted?.join(" "));
            }
            _ => return Err(format!("runcmd[{i}] is neither a string nor a list")),
        }
        out.push('\n');
    }
    Ok(Some(out))
}

/// POSIX single quotes, as Python's `shlex.quote` (which cloud-init uses).
fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r#"'"'"'"#))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use yaml_rust2::YamlLoader;

    #[test]
    fn lists_are_quoted_strings_kept_and_failures_do_not_stop_the_rest() {
        let d = YamlLoader::load_from_str(
            "runcmd:\n  - [\"sh\", \"-c\", \"echo it's $HOME\"]\n  - \"false\"\n  - echo after > \"$OUT\"\n",
        )
        .unwrap()
        .remove(0);
        let text = script(&d["runcmd"]).unwrap().unwrap();
        assert_eq!(
            text,
            "#!/bin/sh\nsh -c 'echo it'\"'\"'s $HOME'\nfalse\necho after > \"$OUT\"\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::env::set_var("OUT", &out);
        assert_eq!(run(&d["runcmd"], dir.path()).unwrap(), 0);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "after\n");
        assert!(dir.path().join(SCRIPT.trim_start_matches('/')).is_file());
    }
}
