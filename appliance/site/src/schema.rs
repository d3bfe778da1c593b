//! The JSON Schemas of `site.toml` and `profiles/*.toml`, generated from the
//! model so they cannot drift; the shipped copies live in the repository's
//! `schema/` directory (a test checks they match).

use crate::{Profile, SiteConfig};

/// Schema of `site.toml`.
pub fn site_schema() -> serde_json::Value {
    let mut s = schemars::schema_for!(SiteConfig);
    s.insert("title".into(), "kindling site.toml".into());
    s.to_value()
}

/// Schema of `profiles/NAME.toml`.
pub fn profile_schema() -> serde_json::Value {
    let mut s = schemars::schema_for!(Profile);
    s.insert(
        "title".into(),
        "kindling profile (profiles/NAME.toml)".into(),
    );
    s.to_value()
}

/// The shipped files: `(file name, pretty JSON with trailing newline)`.
pub fn schema_files() -> Vec<(&'static str, String)> {
    let pretty = |v: serde_json::Value| {
        let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
        text.push('\n');
        text
    };
    vec![
        ("site.schema.json", pretty(site_schema())),
        ("profile.schema.json", pretty(profile_schema())),
    ]
}
