//! Status resources: init's phases and services (over its control socket), and
//! the status files every service keeps in `/run/kindling/status/`.
//! Read-only except for `restart`, which asks init to restart one service.

use super::{ApiPaths, Reply};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

const CONTROL_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /v1/status`: everything an operator looks at first.
pub fn status(paths: &ApiPaths) -> Reply {
    let init = control(paths, &json!({ "cmd": "list" })).unwrap_or_else(|e| json!({ "error": e }));
    let report = read_json(&paths.run_dir.join("config-report.json"));
    Reply::ok(json!({
        "version": std::fs::read_to_string("/etc/kindling/version").unwrap_or_default().trim(),
        "init": init,
        "config": report,
        "services": service_status_files(paths),
    }))
}

/// `GET /v1/services`: init's view of the supervised children.
pub fn services(paths: &ApiPaths) -> Reply {
    match control(paths, &json!({ "cmd": "list" })) {
        Ok(list) => Reply::ok(list),
        Err(e) => Reply::error(503, e),
    }
}

/// `POST /v1/services/NAME/restart`.
pub fn restart(paths: &ApiPaths, name: &str) -> Reply {
    match control(paths, &json!({ "cmd": "restart", "name": name })) {
        Ok(answer) if answer.get("ok") == Some(&Value::Bool(true)) => Reply::ok(answer),
        Ok(answer) => Reply::error(
            404,
            answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("refused by init"),
        ),
        Err(e) => Reply::error(503, e),
    }
}

/// `GET /v1/config/report`: which overlays were accepted or refused at boot.
pub fn config_report(paths: &ApiPaths) -> Reply {
    match read_json(&paths.run_dir.join("config-report.json")) {
        Value::Null => Reply::error(404, "no config report yet (config phase has not run)"),
        report => Reply::ok(report),
    }
}

/// Every `status/NAME.json`, keyed by NAME. A file that does not parse is shown
/// as such rather than hidden.
fn service_status_files(paths: &ApiPaths) -> Value {
    let mut all = Map::new();
    let Ok(entries) = std::fs::read_dir(paths.run_dir.join("status")) else {
        return Value::Object(all);
    };
    let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    names.sort();
    for path in names {
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            all.insert(stem.to_string(), read_json(&path));
        }
    }
    Value::Object(all)
}

fn read_json(path: &std::path::Path) -> Value {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(
            |e| json!({ "error": format!("{} is not valid JSON: {e}", path.display()) }),
        ),
        Err(_) => Value::Null,
    }
}

/// One request line to init's control socket, one JSON line back.
fn control(paths: &ApiPaths, request: &Value) -> Result<Value, String> {
    let socket = paths.control_socket();
    let talk = || -> std::io::Result<String> {
        let mut stream = UnixStream::connect(&socket)?;
        stream.set_read_timeout(Some(CONTROL_TIMEOUT))?;
        stream.set_write_timeout(Some(CONTROL_TIMEOUT))?;
        stream.write_all(format!("{request}\n").as_bytes())?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line)
    };
    let line = talk().map_err(|e| format!("init control socket {}: {e}", socket.display()))?;
    serde_json::from_str(&line).map_err(|e| format!("init answered with invalid JSON: {e}"))
}
