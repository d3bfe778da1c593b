//! The services' output as an operator reads it from the LAN: kept on the
//! data partition (`GET /v1/logs` says so), a line the test caused found
//! through `GET /v1/logs/api` before a power cut and again after it, and
//! `kindling logs api -f` (the CLI, run inside the lab's LAN namespace)
//! printing a line the test causes while it follows.
//!
//! The line the test causes is the API's own record of an admin request
//! (`<operator>: <METHOD> <path> -> <status>`): a reprovision of a MAC no
//! node has, which changes nothing and answers 404.

use kindling_e2e::release_bin;
use kindling_lab::api::{console_ca_fingerprint, lab_token, LabOperator, API_ADDRESS};
use kindling_lab::Lab;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A MAC no lab node has: its reprovision is refused, and recorded.
const MARKER_MAC: &str = "52:54:00:6b:00:7f";
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(15);

fn get_json(lab: &Lab, url: &str) -> Result<Value, String> {
    let (code, body) = lab
        .api_from_lan("GET", url, None)
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("GET {url} from the LAN answered {code}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {url}: not JSON ({e}): {body}"))
}

/// Makes the API record one admin request; returns what the record says.
fn cause_a_line(lab: &Lab) -> Result<String, String> {
    let url = format!("/v1/nodes/{MARKER_MAC}/reprovision");
    let (code, reply) = lab
        .api_from_lan("POST", &url, None)
        .map_err(|e| e.to_string())?;
    if !(400..500).contains(&code) {
        return Err(format!(
            "POST {url} for an unknown MAC answered {code}: {reply}"
        ));
    }
    Ok(format!("POST {url} -> {code}"))
}

/// The API's lines that contain `needle`.
fn api_lines_with(lab: &Lab, query: &str, needle: &str) -> Result<Vec<String>, String> {
    let body = get_json(lab, &format!("/v1/logs/api?{query}"))?;
    Ok(body["lines"]
        .as_array()
        .ok_or_else(|| format!("GET /v1/logs/api: no lines: {body}"))?
        .iter()
        .filter_map(Value::as_str)
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect())
}

/// Before the power cut: the logs are on the data partition and the line
/// the test caused is there. Returns that line.
pub fn kept_on_the_data_partition(lab: &Lab, scenario: &str) -> Result<String, String> {
    let list = get_json(lab, "/v1/logs")?;
    if list["storage"] != "data" {
        return Err(format!(
            "GET /v1/logs: logs are not on the data partition: {list}"
        ));
    }
    let record = cause_a_line(lab)?;
    let deadline = Instant::now() + FOLLOW_TIMEOUT;
    loop {
        if let Some(line) = api_lines_with(lab, "since=10m", &record)?.pop() {
            eprintln!("[{scenario}] logs on the data partition; the API recorded: {line}");
            return Ok(line);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "GET /v1/logs/api?since=10m: no line with {record:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Every string of at least 16 characters in `secrets` (Vault's unseal
/// keys and root token, decrypted by the test).
fn secret_strings(secrets: &Value, out: &mut Vec<String>) {
    match secrets {
        Value::String(s) if s.len() >= 16 => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| secret_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| secret_strings(v, out)),
        _ => {}
    }
}

/// No service's kept output holds any of Vault's init secrets.
pub fn no_secret_in_any_log(lab: &Lab, secrets: &Value) -> Result<(), String> {
    let mut needles = Vec::new();
    secret_strings(secrets, &mut needles);
    if needles.is_empty() {
        return Err(format!(
            "the decrypted init secrets hold no secret strings: {secrets}"
        ));
    }
    let list = get_json(lab, "/v1/logs")?;
    let services = list["services"]
        .as_array()
        .ok_or_else(|| format!("GET /v1/logs: no services: {list}"))?;
    for service in services.iter().filter_map(|s| s["service"].as_str()) {
        let body = get_json(lab, &format!("/v1/logs/{service}?lines=100000"))?;
        let text = body["lines"].to_string();
        if let Some(i) = needles.iter().position(|n| text.contains(n.as_str())) {
            return Err(format!(
                "the log of {service} holds Vault init secret #{i} (not shown)"
            ));
        }
    }
    Ok(())
}

/// After the power cut: the line from before it is still there.
pub fn survived_the_power_cut(lab: &Lab, line: &str) -> Result<(), String> {
    let found = api_lines_with(lab, "lines=100000", line)?;
    if found.iter().any(|l| l == line) {
        return Ok(());
    }
    Err(format!(
        "after the power cut, GET /v1/logs/api no longer has the line written before it: {line}"
    ))
}

/// `kindling logs api -f` from the LAN prints a line the test causes while
/// it follows. Returns how long the line took to appear.
pub fn followed_by_the_cli(lab: &Lab, scenario: &str) -> Result<Duration, String> {
    let serial = lab.run_dir().join("appliance.serial.log");
    let fingerprint =
        console_ca_fingerprint(&serial).ok_or("no CA fingerprint on the appliance's console")?;
    let mut cli = kindling_lab::cmd::in_netns(&lab.names().lan, release_bin("kindling"))
        .args(["logs", "api", "-f", "-n", "1"])
        .env("KINDLING_APPLIANCE", API_ADDRESS)
        .env("KINDLING_CA_FINGERPRINT", fingerprint.to_string())
        .env("KINDLING_TOKEN", lab_token(LabOperator::Read).expose())
        .env("KINDLING_CONFIG", lab.run_dir().join("no-cli-config.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running kindling logs api -f: {e}"))?;
    let stdout = cli.stdout.take().ok_or("kindling logs: no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let outcome = (|| {
        // The backlog line shows the stream is up before the line is caused.
        rx.recv_timeout(FOLLOW_TIMEOUT)
            .map_err(|_| "kindling logs api -f printed no backlog line".to_string())?;
        let started = Instant::now();
        let record = cause_a_line(lab)?;
        let deadline = started + FOLLOW_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(&record) => {
                    eprintln!(
                        "[{scenario}] kindling logs api -f showed the line {} ms after the request: {line}",
                        started.elapsed().as_millis()
                    );
                    return Ok(started.elapsed());
                }
                Ok(_) => continue,
                Err(_) => return Err(format!("kindling logs api -f did not show {record:?}")),
            }
        }
    })();
    let _ = cli.kill();
    let output = cli.wait_with_output();
    outcome.map_err(|e| match output {
        Ok(out) => format!("{e}; its stderr: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => e,
    })
}
