//! The shipped API schemas (`schema/api/*.schema.json`) are the ones the
//! types generate.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

#[test]
fn shipped_api_schemas_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schema/api");
    for (name, text) in kindling_api::schema::schema_files() {
        let path = dir.join(name);
        if std::env::var_os("KINDLING_UPDATE_SCHEMA").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            shipped == text,
            "{} is out of date: regenerate with KINDLING_UPDATE_SCHEMA=1 cargo test -p kindling-api --test schema",
            path.display()
        );
    }
}

#[test]
fn bodies_keep_their_wire_shape() {
    use kindling_api::{health::Health, vault::UnsealRequest, ErrorBody, ErrorKind};
    assert_eq!(
        serde_json::to_value(Health::ok()).unwrap(),
        serde_json::json!({"status": "ok"})
    );
    assert_eq!(
        serde_json::to_value(ErrorBody::new(ErrorKind::NotFound, "no such node")).unwrap(),
        serde_json::json!({"error": "no such node", "kind": "not_found"})
    );
    let share: UnsealRequest = serde_json::from_str(r#"{"key": "c2VjcmV0"}"#).unwrap();
    assert!(!format!("{share:?}").contains("c2VjcmV0"));
}
