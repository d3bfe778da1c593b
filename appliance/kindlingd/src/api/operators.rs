//! The site's operators as the API checks them: `[[api.operators]]` of the
//! effective config (`run_dir/site.json`), read again whenever that file
//! changes, so an accepted overlay push that adds, rotates or revokes a
//! token takes effect with the next request, without a restart.
//!
//! A site.json that cannot be read keeps the last good list (reported once);
//! before any was read, the list is empty and nobody is admitted.

use kindling_site::ApiOperator;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub struct Operators {
    site_json: PathBuf,
    cached: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    /// site.json's modification time and length when last read.
    stamp: Option<(SystemTime, u64)>,
    operators: Arc<Vec<ApiOperator>>,
}

impl Operators {
    pub fn new(site_json: PathBuf) -> Self {
        Self {
            site_json,
            cached: Mutex::new(Cached::default()),
        }
    }

    /// The operators now (a cheap `stat` per call; a read when it changed).
    pub fn current(&self) -> Arc<Vec<ApiOperator>> {
        let Ok(mut cached) = self.cached.lock() else {
            return Arc::new(Vec::new());
        };
        let stamp = std::fs::metadata(&self.site_json)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp.is_some() && stamp != cached.stamp {
            match kindling_site::effective::load(&self.site_json) {
                Ok(site) => {
                    if cached.stamp.is_some() && *cached.operators != site.api.operators {
                        tracing::info!(
                            "operators changed: {} now ({})",
                            site.api.operators.len(),
                            names(&site.api.operators)
                        );
                    }
                    cached.operators = Arc::new(site.api.operators);
                }
                Err(e) => tracing::warn!("keeping the previous operators: {e}"),
            }
            cached.stamp = stamp;
        }
        cached.operators.clone()
    }
}

/// `alice (admin), ci (read)`, for the log.
pub fn names(operators: &[ApiOperator]) -> String {
    if operators.is_empty() {
        return "none: only GET /healthz answers".into();
    }
    operators
        .iter()
        .map(|o| format!("{} ({})", o.name, o.role))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kindling_site::{OperatorRole, SiteConfig};

    fn write(path: &std::path::Path, operators: &[(&str, OperatorRole, char)]) {
        let mut site = SiteConfig::default();
        site.site.id = "lab".into();
        site.api.operators = operators
            .iter()
            .map(|(name, role, c)| ApiOperator {
                name: name.to_string(),
                role: *role,
                token_sha256: c.to_string().repeat(64).parse().unwrap(),
            })
            .collect();
        std::fs::write(path, serde_json::to_vec(&site).unwrap()).unwrap();
    }

    #[test]
    fn follows_site_json_and_keeps_the_last_good_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.json");
        let ops = Operators::new(path.clone());
        assert!(ops.current().is_empty(), "no site.json: nobody");
        write(&path, &[("alice", OperatorRole::Admin, 'a')]);
        assert_eq!(ops.current()[0].name, "alice");
        // A rotation: a different file (length differs, so no mtime race).
        write(
            &path,
            &[
                ("alice", OperatorRole::Admin, 'b'),
                ("ci", OperatorRole::Read, 'c'),
            ],
        );
        let now = ops.current();
        assert_eq!(names(&now), "alice (admin), ci (read)");
        assert_eq!(now[0].token_sha256.to_string(), "b".repeat(64));
        std::fs::write(&path, "{ not json").unwrap();
        assert_eq!(ops.current().len(), 2, "the last good list stays");
    }
}
