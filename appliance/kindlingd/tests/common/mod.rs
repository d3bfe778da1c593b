//! Helpers shared by kindlingd's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

/// One request to the API as an operator's client makes it: the status and
/// the JSON body (any status is an answer, not an error).
pub fn call(method: &str, url: &str, body: Option<&[u8]>) -> (u16, serde_json::Value) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let response = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("POST", Some(b)) => agent.post(url).send(b),
        ("POST", None) => agent.post(url).send_empty(),
        ("PUT", Some(b)) => agent.put(url).send(b),
        _ => unreachable!("unused method {method}"),
    };
    let mut response = response.unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    let json =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"));
    (status, json)
}
