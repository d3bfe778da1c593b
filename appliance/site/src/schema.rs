//! The JSON Schemas of `site.toml` and `profiles/*.toml`, generated from the
//! model so they cannot drift; the shipped copies live in the repository's
//! `schema/` directory (a test checks they match).

use crate::{Profile, SiteConfig};
use schemars::JsonSchema;

/// The schema of `T` with `title`: how every shipped kindling schema (site
/// model and API bodies) is generated.
pub fn titled<T: JsonSchema>(title: &str) -> serde_json::Value {
    let mut s = schemars::schema_for!(T);
    s.insert("title".into(), title.into());
    s.to_value()
}

/// A schema as its shipped file holds it: pretty JSON with a trailing newline.
pub fn file_text(schema: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

/// Schema of `site.toml`.
pub fn site_schema() -> serde_json::Value {
    titled::<SiteConfig>("kindling site.toml")
}

/// Schema of `profiles/NAME.toml`.
pub fn profile_schema() -> serde_json::Value {
    titled::<Profile>("kindling profile (profiles/NAME.toml)")
}

/// The shipped files: `(file name, pretty JSON with trailing newline)`.
pub fn schema_files() -> Vec<(&'static str, String)> {
    vec![
        ("site.schema.json", file_text(&site_schema())),
        ("profile.schema.json", file_text(&profile_schema())),
    ]
}
