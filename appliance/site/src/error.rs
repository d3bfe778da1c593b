//! Errors of the site crate: one `ConfigIssue` per problem, naming file, line,
//! key and reason, so an operator can fix every problem of a tree in one pass.

use std::fmt;

/// One problem found in a config tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigIssue {
    /// File the value came from, relative to its tree (`site.toml`,
    /// `profiles/dev.toml`), prefixed with the layer when several are merged.
    pub file: Option<String>,
    /// 1-based line of the offending key, when it could be found.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `pxe.range` or `nodes[1].mac`.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            _ => {}
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.reason)
    }
}

/// Every problem found; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl ConfigErrors {
    /// The first problem as one line, plus how many more there are: for
    /// reports that allow one line per refused overlay.
    pub fn one_line(&self) -> String {
        match self.0.as_slice() {
            [] => "invalid configuration".into(),
            [only] => only.to_string(),
            [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
        }
    }
}

/// Reading a config tree from disk failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadTreeError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
}
