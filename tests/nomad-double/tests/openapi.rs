//! The double's responses checked against the published Nomad OpenAPI excerpt.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kindling_nomad_double::NomadDouble;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;

fn excerpt() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/openapi/nomad-openapi-excerpt.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A minimal HTTP/1.0 client: (status, body).
fn call(double: &NomadDouble, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(double.addr()).unwrap();
    let tok = token
        .map(|t| format!("X-Nomad-Token: {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: x\r\n{tok}Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status: u16 = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut node = doc;
            for part in r.trim_start_matches("#/").split('/') {
                node = node
                    .get(part)
                    .unwrap_or_else(|| panic!("{r} is not in the excerpt"));
            }
            resolve(doc, node)
        }
        None => v,
    }
}

/// Checks `value` against an OpenAPI schema; returns the problems found.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(obj) = value.as_object() else {
                return problems.push(format!("{at}: not an object"));
            };
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, v) in obj {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => check(doc, s, v, &format!("{at}.{k}"), problems),
                    None => problems.push(format!("{at}.{k}: not a property of the schema")),
                }
            }
        }
        Some("array") => match value.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check(doc, &schema["items"], item, &format!("{at}[{i}]"), problems);
                }
            }
            None => problems.push(format!("{at}: not an array")),
        },
        Some("string") => {
            if !value.is_string() {
                problems.push(format!("{at}: not a string"));
            }
            if schema.get("format").and_then(Value::as_str) == Some("date-time")
                && !value
                    .as_str()
                    .is_some_and(|s| s.len() >= 20 && s.as_bytes().get(10) == Some(&b'T'))
            {
                problems.push(format!("{at}: not an RFC 3339 date-time"));
            }
        }
        Some("integer") => {
            if !(value.is_u64() || value.is_i64()) {
                problems.push(format!("{at}: not an integer"));
            }
        }
        Some("boolean") => {
            if !value.is_boolean() {
                problems.push(format!("{at}: not a boolean"));
            }
        }
        other => problems.push(format!(
            "{at}: schema type {other:?} not handled by this checker"
        )),
    }
}

/// The status must be documented for the operation; a documented JSON body
/// must match its schema.
fn conforms(doc: &Value, path: &str, method: &str, status: u16, body: &str) {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not in the excerpt");
    let response = op["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{method} {path}: status {status} is not documented"));
    let response = resolve(doc, response);
    if let Some(schema) = response.pointer("/content/application~1json/schema") {
        let value: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {body}"));
        let mut problems = Vec::new();
        check(doc, schema, &value, "$", &mut problems);
        assert!(
            problems.is_empty(),
            "{method} {path} {status}: {problems:?}"
        );
    }
}

#[test]
fn bootstrap_then_already_done_then_reset_match_the_document() {
    let doc = excerpt();
    let dir = tempfile_dir();
    let double = NomadDouble::start("127.0.0.1:0", Some(dir.clone())).unwrap();

    let (status, body) = call(&double, "POST", "/v1/acl/bootstrap", None);
    assert_eq!(status, 200);
    conforms(&doc, "/acl/bootstrap", "post", status, &body);
    let token: Value = serde_json::from_str(&body).unwrap();
    let secret = token["SecretID"].as_str().unwrap().to_string();
    assert_eq!(token["Type"], "management");

    let (status, body) = call(&double, "POST", "/v1/acl/bootstrap", None);
    assert_eq!(status, 400);
    conforms(&doc, "/acl/bootstrap", "post", status, &body);
    assert!(
        body.starts_with("ACL bootstrap already done (reset index: "),
        "{body}"
    );

    let (status, body) = call(&double, "GET", "/v1/acl/token/self", Some(&secret));
    assert_eq!(status, 200);
    conforms(&doc, "/acl/token/{tokenAccessor}", "get", status, &body);
    let (status, body) = call(&double, "GET", "/v1/acl/token/self", Some("not-a-token"));
    assert_eq!(status, 403);
    conforms(&doc, "/acl/token/{tokenAccessor}", "get", status, &body);

    // Nomad's documented reset: the index from the error, in server/acl-bootstrap-reset.
    let (_, body) = call(&double, "POST", "/v1/acl/bootstrap", None);
    let index = body
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    std::fs::create_dir_all(dir.join("server")).unwrap();
    std::fs::write(dir.join("server/acl-bootstrap-reset"), &index).unwrap();
    let (status, body) = call(&double, "POST", "/v1/acl/bootstrap", None);
    assert_eq!(status, 200, "{body}");
    conforms(&doc, "/acl/bootstrap", "post", status, &body);
    let (status, _) = call(&double, "GET", "/v1/acl/token/self", Some(&secret));
    assert_eq!(
        status, 403,
        "the old management token is gone after a reset"
    );
    assert_eq!(double.successful_bootstraps(), 2);

    // A restarted double remembers the bootstrap (like Nomad's raft state).
    drop(double);
    let again = NomadDouble::start("127.0.0.1:0", Some(dir.clone())).unwrap();
    assert_eq!(call(&again, "POST", "/v1/acl/bootstrap", None).0, 400);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn status_leader_and_wrong_methods_match_the_document() {
    let doc = excerpt();
    let double = NomadDouble::start("127.0.0.1:0", None).unwrap();
    let (status, body) = call(&double, "GET", "/v1/status/leader", None);
    assert_eq!(status, 200);
    conforms(&doc, "/status/leader", "get", status, &body);
    let (status, body) = call(&double, "GET", "/v1/acl/bootstrap", None);
    assert_eq!(status, 405);
    // GET is not an operation of /acl/bootstrap; the 405 is documented on POST.
    conforms(&doc, "/acl/bootstrap", "post", status, &body);
    let (status, body) = call(&double, "GET", "/v1/agent/health", None);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["server"]["ok"], true);
}

#[test]
fn the_node_list_matches_the_document_and_needs_the_management_token() {
    let doc = excerpt();
    let double = NomadDouble::start("127.0.0.1:0", None).unwrap();
    let (_, body) = call(&double, "POST", "/v1/acl/bootstrap", None);
    let token: Value = serde_json::from_str(&body).unwrap();
    let secret = token["SecretID"].as_str().unwrap().to_string();
    let (status, body) = call(&double, "GET", "/v1/nodes", Some(&secret));
    assert_eq!((status, body.as_str()), (200, "[]"));
    conforms(&doc, "/nodes", "get", status, &body);

    let id = double.register_node("node-dev-1", "kstest");
    double.register_node("node-prod-1", "kstest");
    double.set_node_status(&id, "down");
    let (status, body) = call(&double, "GET", "/v1/nodes", Some(&secret));
    assert_eq!(status, 200);
    conforms(&doc, "/nodes", "get", status, &body);
    let nodes: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(nodes[0]["Name"], "node-dev-1");
    assert_eq!(nodes[0]["Status"], "down");
    assert_eq!(nodes[1]["Status"], "ready");

    for token in [None, Some("not-a-token")] {
        let (status, body) = call(&double, "GET", "/v1/nodes", token);
        assert_eq!(status, 403, "{token:?}");
        conforms(&doc, "/nodes", "get", status, &body);
    }
    let (status, body) = call(&double, "POST", "/v1/nodes", Some(&secret));
    assert_eq!(status, 405);
    conforms(&doc, "/nodes", "get", status, &body);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ks-nomad-double-{}-{}",
        std::process::id(),
        line!()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
