//! How a build talks to its caller: the `Reporter` progress trait, the
//! silent reporter, the build's result and human-readable sizes.
//!
//! Owns the progress interface. Must never decide anything about the build:
//! a reporter only shows what the build tells it.

use super::manifest::Manifest;
use std::path::PathBuf;

/// How the build tells its caller what it is doing (progress bars in the
/// CLI, nothing in tests).
pub trait Reporter {
    /// A slow step starts.
    fn step(&self, name: &str);
    /// The current step finished.
    fn done(&self, detail: &str);
    /// Something the operator should know that does not stop the build.
    fn warn(&self, message: &str);
}

/// A reporter that drops everything (tests, library callers).
pub struct Silent;

impl Reporter for Silent {
    fn step(&self, _name: &str) {}
    fn done(&self, _detail: &str) {}
    fn warn(&self, _message: &str) {}
}

#[derive(Debug, Clone)]
pub struct BuildReport {
    pub out_dir: PathBuf,
    pub manifest: Manifest,
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
