//! When the LAN may reach the stack: the stack's ports stay closed in the
//! ruleset until the stack bootstrap says `ready` in its status file
//! (`/run/kindling/status/stack.json`, fresh on every boot), so a LAN host
//! can never race Consul's or Nomad's ACL bootstrap or Vault's `sys/init`.
//! Once open they stay open for this boot: a later bootstrap rerun (Vault
//! restarted and unsealed again) finds every one-time step done.
//!
//! Owns the reading of that file. Believes it only when the stack's own
//! account wrote it (`owner`), since every service may write into the
//! status directory. Must never open a port itself: the service reinstalls
//! the ruleset.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Whether the stack's status file at `path` says the bootstrap is done.
/// `owner`: the uid that must own the file (`None`: anyone, for tests run
/// as one user).
pub fn stack_ready(path: &Path, owner: Option<u32>) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file() || owner.is_some_and(|uid| meta.uid() != uid) {
        return false;
    }
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get("state").and_then(|s| s.as_str()) == Some("ready"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_ready_from_the_right_owner_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stack.json");
        assert!(!stack_ready(&path, None), "no file");
        std::fs::write(&path, r#"{"state":"running","steps":[]}"#).unwrap();
        assert!(!stack_ready(&path, None));
        std::fs::write(&path, r#"{"state":"ready","steps":[]}"#).unwrap();
        assert!(stack_ready(&path, None));
        let me = std::fs::metadata(&path).unwrap().uid();
        assert!(stack_ready(&path, Some(me)));
        assert!(!stack_ready(&path, Some(me + 1)), "written by someone else");
        std::fs::write(&path, "not json").unwrap();
        assert!(!stack_ready(&path, None));
    }
}
