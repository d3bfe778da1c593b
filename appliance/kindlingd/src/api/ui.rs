//! The status page's endpoints: `GET /` (the page; a browser without a
//! session is sent to `GET /ui/login`, the form), `GET /ui/fragment` (its
//! live part), `POST /ui/login` (a token, once, for a session cookie) and
//! `POST /ui/logout`. The gate a request with the session cookie instead
//! of a bearer token passes is `session_gate`. The page's actions are the
//! /v1 endpoints themselves, called by the page's script with the
//! session's CSRF token.
//!
//! What the page shows comes from the /v1 handlers (`status`, `nodes`,
//! `stack`); the HTML is `page`, the sessions `session`.

use super::access::Caller;
use super::app::App;
use super::logs::percent_decode;
use super::session::{self, SessionError};
use super::{nodes, page, stack, status, Context, Reply};
use kindling_api::auth::{identify, Token};
use kindling_api::ErrorKind;
use kindling_site::OperatorRole;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const HTML: &str = "text/html; charset=utf-8";

/// `GET /ui/login`: the login form. Public: it shows nothing of the appliance.
pub fn login_form() -> Reply {
    html(page::login("log in with an operator token"))
}

/// `GET /`: the page for a browser session. An API client with a bearer
/// token gets it too, without actions' CSRF token (it needs none).
pub fn page(cx: &Context<'_>, caller: &Caller) -> Reply {
    let csrf = match caller {
        Caller::Operator { csrf, .. } => csrf.clone().unwrap_or_default(),
        Caller::Anonymous => String::new(),
    };
    html(page::page(&snapshot(cx, caller), &csrf))
}

/// `GET /ui/fragment`: the live part of the page.
pub fn fragment(cx: &Context<'_>, caller: &Caller) -> Reply {
    html(page::fragment(&snapshot(cx, caller)))
}

/// `POST /ui/login` with a form body `token=…`: a session for the token's
/// operator, handed over as a cookie, then back to the page (303). A wrong
/// token gets the form again with 401.
pub fn login(app: &App, body: &[u8]) -> Reply {
    let token = match form_field(body, "token").map(|t| Token::parse(&t)) {
        Some(Ok(token)) => token,
        _ => return html(page::login("send the form's field `token`")).with_status(400),
    };
    let operators = app.operators.current();
    let Some(operator) = identify(&operators, &token) else {
        let message = "the token is not one of this site's operators";
        return html(page::login(message)).with_status(401);
    };
    match app.sessions.open(operator, Instant::now()) {
        Ok(opened) => {
            tracing::info!("{}: browser session opened", opened.session.operator);
            html(String::new())
                .with_status(303)
                .with_header("location", "/".into())
                .with_header("set-cookie", session::set_cookie(&opened.id))
        }
        Err(e @ SessionError::NoRandomness(_)) => Reply::failed(ErrorKind::Internal, e),
        Err(e) => Reply::failed(ErrorKind::Unavailable, e),
    }
}

/// `POST /ui/logout`: ends the caller's browser session.
pub fn logout(app: &App, caller: &Caller) -> Reply {
    if let Caller::Operator {
        csrf: Some(csrf), ..
    } = caller
    {
        app.sessions.close_by_csrf(csrf);
    }
    html(page::login("logged out")).with_header("set-cookie", session::clear_cookie())
}

fn html(text: String) -> Reply {
    Reply::text(HTML, text)
        .with_header(
            "content-security-policy",
            page::content_security_policy().into(),
        )
        .with_header("x-content-type-options", "nosniff".into())
        .with_header("referrer-policy", "no-referrer".into())
        .with_header("x-frame-options", "DENY".into())
}

/// What the /v1 handlers answer now, for the page.
fn snapshot(cx: &Context<'_>, caller: &Caller) -> page::Snapshot {
    let (run, state) = (cx.paths.run_dir.as_path(), cx.paths.state_dir.as_path());
    let status =
        serde_json::to_value(status::status(cx.paths, cx.app.endpoint())).unwrap_or_default();
    let nodes = nodes::list(run, state);
    let nodes = if nodes.status == 200 {
        Ok(nodes.body)
    } else {
        Err(nodes.body["error"]
            .as_str()
            .unwrap_or("unavailable")
            .to_string())
    };
    let stack = stack::get_stack(run, state)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::to_value(s).map_err(|e| e.to_string()));
    let (operator, admin) = match caller {
        Caller::Operator { name, role, .. } => (name.clone(), *role >= OperatorRole::Admin),
        Caller::Anonymous => (String::new(), false),
    };
    page::Snapshot {
        status,
        nodes,
        stack,
        operator,
        admin,
        now: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    }
}

/// The first field `name` of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| percent_decode(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field(b"a=1&token=kdl_ab%2Bc%3D&x=", "token").as_deref(),
            Some("kdl_ab+c=")
        );
        assert_eq!(form_field(b"token=a%2", "token"), None);
        assert_eq!(form_field(b"nottoken=a", "token"), None);
        assert_eq!(form_field(b"\xff", "token"), None);
    }
}
