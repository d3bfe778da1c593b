//! `docs/site-reference.md` is what the shipped schemas render to
//! (`kindling_site::reference`): CI fails when a key, default or doc
//! comment changes and the reference was not regenerated.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

#[test]
fn the_checked_in_reference_matches_the_schemas() {
    use kindling_site::schema::{profile_schema, site_schema};
    let text = kindling_site::reference::render(&site_schema(), &profile_schema());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/site-reference.md");
    if std::env::var_os("KINDLING_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let shipped = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        shipped == text,
        "{} is out of date: regenerate with KINDLING_UPDATE_SCHEMA=1 cargo test -p kindling-site --test reference",
        path.display()
    );
    // Every top-level section of the model is in it.
    for section in ["`network`", "`pxe`", "`api`", "`stack`", "`nodes`"] {
        assert!(text.contains(&format!("### {section}")), "{section}");
    }
}
