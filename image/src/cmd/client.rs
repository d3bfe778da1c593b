//! The CLI's side of the appliance API: one pinned TLS client
//! (`kindling-api-client`) per command, bodies encoded and decoded as the
//! `kindling-api` types the appliance serves, and one way to turn a failure
//! into one error line naming the endpoint, status and the appliance's
//! [`ErrorBody::error`]. Every command that talks to an appliance goes
//! through here; where the address, pin and token come from is `config`.

use super::exit::{self, Failure};
use anyhow::Context;
use kindling_api::ErrorBody;
use kindling_api_client::ApiClient;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Which appliance a command talks to. Only the address can be given on
/// the command line; the pinned CA and the token come from the CLI config
/// (`kindling login`) or the environment.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Target {
    /// The appliance's API address, HOST or HOST:PORT (default port 9000).
    /// Default: $KINDLING_APPLIANCE, else the current context of the CLI
    /// config (written by `kindling login`).
    #[arg(long, value_name = "ADDR")]
    pub appliance: Option<String>,
    /// The CLI config's context to use (default: $KINDLING_CONTEXT, else
    /// the current one; `kindling context list`).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// A connection to one appliance for one command.
pub struct Session {
    client: ApiClient,
}

impl Session {
    pub fn open(target: &Target) -> anyhow::Result<Self> {
        let r = super::config::resolve(target.appliance.as_deref(), target.context.as_deref())?;
        Ok(Self {
            client: ApiClient::new(r.endpoint, r.anchor, r.token)?,
        })
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<T> {
        let reply = self.client.request(method, path, body.as_deref())?;
        self.typed(path, &reply)
    }

    /// A 2xx answer's JSON body as `T`; any other status as a refusal.
    fn typed<T: DeserializeOwned>(
        &self,
        path: &str,
        reply: &kindling_api_client::Response,
    ) -> anyhow::Result<T> {
        let label = format!("{}{path}", self.client.endpoint());
        let text = String::from_utf8_lossy(&reply.body);
        if (200..300).contains(&reply.status) {
            return serde_json::from_str(&text).with_context(|| {
                format!(
                    "{label}: {}: the answer is not what kindling expects",
                    reply.status
                )
            });
        }
        Err(refusal(&label, reply.status, &text))
    }

    /// `GET path` whose 200 body streams: each chunk goes to `each` as it
    /// arrives until the appliance ends it or `each` returns false.
    pub fn stream(&self, path: &str, each: impl FnMut(&[u8]) -> bool) -> anyhow::Result<()> {
        let label = format!("{}{path}", self.client.endpoint());
        match self
            .client
            .stream(path, each)
            .with_context(|| label.clone())?
        {
            None => Ok(()),
            Some(reply) => Err(refusal(
                &label,
                reply.status,
                &String::from_utf8_lossy(&reply.body),
            )),
        }
    }

    /// `GET path` → the 2xx answer's body as `T`.
    pub fn get_as<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call("GET", path, None)
    }

    /// `POST path` with `body` as JSON → the 2xx answer's body as `T`.
    pub fn post_as<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.call("POST", path, Some(serde_json::to_vec(body)?))
    }

    /// `PUT path` with `body` as JSON → the 2xx answer's body as `T`.
    pub fn put_as<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.call("PUT", path, Some(serde_json::to_vec(body)?))
    }

    /// `DELETE path` → the 2xx answer's body as `T`.
    pub fn delete_as<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call("DELETE", path, None)
    }

    /// `POST path` with `body` already encoded as JSON → the 2xx answer's
    /// body as `T` (for bodies large enough to be encoded only once).
    pub fn post_raw_as<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> anyhow::Result<T> {
        self.call("POST", path, Some(body))
    }

    /// `POST path` with `length` bytes streamed from `body` (not held
    /// whole); `progress` hears the bytes sent → the 2xx answer as `T`.
    pub fn upload_as<T: DeserializeOwned>(
        &self,
        path: &str,
        body: impl std::io::Read,
        length: u64,
        progress: impl FnMut(u64),
    ) -> anyhow::Result<T> {
        let reply = self.client.upload(path, body, length, progress)?;
        self.typed(path, &reply)
    }

    /// `GET path` → JSON body of a 2xx answer, untyped.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.get_as(path)
    }
}

/// An answer other than 2xx as an error carrying its exit code.
fn refusal(label: &str, status: u16, text: &str) -> anyhow::Error {
    let hint = match status {
        401 => " (log in with `kindling login`, or set KINDLING_TOKEN)",
        403 => " (this needs an operator with the admin role)",
        _ => "",
    };
    Failure::new(
        exit::for_status(status),
        format!("{label}: {status}: {}{hint}", failure_reason(text)),
    )
    .into()
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

/// Percent-encodes a query value: unreserved characters stay, every other
/// byte is `%XX`.
pub(super) fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
