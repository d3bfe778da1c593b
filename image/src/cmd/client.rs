//! The CLI's side of the appliance API: one HTTP agent and one way to turn an
//! answer into either its JSON body or one error line naming URL, status and
//! reason. Every command that talks to an appliance goes through here.

use anyhow::{bail, Context};
use serde_json::Value;
use std::time::Duration;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // An overlay push carries up to tens of MB over a slow management link.
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// `GET url` → JSON body of a 2xx answer.
pub fn get(url: &str) -> anyhow::Result<Value> {
    let resp = agent()
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    answer(url, resp)
}

/// `POST url` with a JSON body → JSON body of a 2xx answer.
pub fn post(url: &str, body: &Value) -> anyhow::Result<Value> {
    let resp = agent()
        .post(url)
        .header("content-type", "application/json")
        .send(serde_json::to_vec(body)?.as_slice())
        .with_context(|| format!("POST {url}"))?;
    answer(url, resp)
}

/// `PUT url` with a JSON body → JSON body of a 2xx answer.
pub fn put(url: &str, body: &Value) -> anyhow::Result<Value> {
    let resp = agent()
        .put(url)
        .header("content-type", "application/json")
        .send(serde_json::to_vec(body)?.as_slice())
        .with_context(|| format!("PUT {url}"))?;
    answer(url, resp)
}

fn answer(url: &str, mut resp: ureq::http::Response<ureq::Body>) -> anyhow::Result<Value> {
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if (200..300).contains(&status) {
        return Ok(json);
    }
    let why = json
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| json.to_string());
    bail!("{url}: {status}: {why}")
}
