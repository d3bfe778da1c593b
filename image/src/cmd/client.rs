//! The CLI's side of the appliance API: one HTTP agent, bodies encoded and
//! decoded as the `kindling-api` types the appliance serves, and one way to
//! turn a failure into one error line naming URL, status and the appliance's
//! [`ErrorBody::error`]. Every command that talks to an appliance goes
//! through here.

use anyhow::{bail, Context};
use kindling_api::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
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

/// `GET url` → the 2xx answer's body as `T`.
pub fn get_as<T: DeserializeOwned>(url: &str) -> anyhow::Result<T> {
    let resp = agent()
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    answer(url, resp)
}

/// `POST url` with `body` as JSON → the 2xx answer's body as `T`.
pub fn post_as<B: Serialize, T: DeserializeOwned>(url: &str, body: &B) -> anyhow::Result<T> {
    let resp = agent()
        .post(url)
        .header("content-type", "application/json")
        .send(serde_json::to_vec(body)?.as_slice())
        .with_context(|| format!("POST {url}"))?;
    answer(url, resp)
}

/// `PUT url` with `body` as JSON → the 2xx answer's body as `T`.
pub fn put_as<B: Serialize, T: DeserializeOwned>(url: &str, body: &B) -> anyhow::Result<T> {
    let resp = agent()
        .put(url)
        .header("content-type", "application/json")
        .send(serde_json::to_vec(body)?.as_slice())
        .with_context(|| format!("PUT {url}"))?;
    answer(url, resp)
}

/// `GET url` → JSON body of a 2xx answer, untyped.
pub fn get(url: &str) -> anyhow::Result<Value> {
    get_as(url)
}

/// `POST url` with a JSON body → JSON body of a 2xx answer, untyped.
pub fn post(url: &str, body: &Value) -> anyhow::Result<Value> {
    post_as(url, body)
}

/// `PUT url` with a JSON body → JSON body of a 2xx answer, untyped.
pub fn put(url: &str, body: &Value) -> anyhow::Result<Value> {
    put_as(url, body)
}

fn answer<T: DeserializeOwned>(
    url: &str,
    mut resp: ureq::http::Response<ureq::Body>,
) -> anyhow::Result<T> {
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    if (200..300).contains(&status) {
        return serde_json::from_str(&text)
            .with_context(|| format!("{url}: {status}: the answer is not what kindling expects"));
    }
    bail!("{url}: {status}: {}", failure_reason(&text))
}

/// The reason in an error answer: [`ErrorBody::error`], else any `error`
/// string (a proxy's or an older appliance's), else the whole text.
fn failure_reason(text: &str) -> String {
    if let Ok(body) = serde_json::from_str::<ErrorBody>(text) {
        return body.error;
    }
    match serde_json::from_str::<Value>(text) {
        Ok(json) => json
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| json.to_string()),
        Err(_) => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_the_error_body_s_message() {
        assert_eq!(
            failure_reason(r#"{"error": "no such node", "kind": "not_found"}"#),
            "no such node"
        );
        assert_eq!(failure_reason(r#"{"error": "old shape"}"#), "old shape");
        assert_eq!(failure_reason(r#"{"other": 1}"#), r#"{"other":1}"#);
        assert_eq!(failure_reason("Bad Gateway"), "Bad Gateway");
    }
}
