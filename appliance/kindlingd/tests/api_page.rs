//! The status page and its browser sessions over real TLS on loopback:
//! who gets the page, the login form or a refusal; cookies that are
//! forged, logged out or outlived by their operator; actions through a
//! session without the admin role or the CSRF token. Every refusal is
//! checked against the state on disk, and the same action done properly
//! does change it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::appliance::{apply, start_api, Root};
use common::lab_tokens;
use common::raw::{exchange, form_encode, login, tls_config, Raw};
use kindling_inventory::inventory::Inventory;
use kindling_inventory::policy::ProfilePolicy;
use kindling_site::MacAddr;

const NODE: &str = "52:54:00:6b:00:42";

/// A node the PXE service saw boot, in the appliance's real inventory file.
fn seed_inventory(root: &Root) -> Inventory {
    let site = kindling_site::effective::load(&root.path("run/kindling/site.json")).unwrap();
    let (inventory, problem) = Inventory::open(
        &root.path("var/lib/kindling"),
        ProfilePolicy::from_site(&site),
    );
    assert_eq!(problem, None);
    let mac: MacAddr = NODE.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    inventory.observe_dhcp(
        mac,
        Some("10.77.0.42".parse().unwrap()),
        None,
        kindling_api::nodes::Firmware::None,
        now,
    );
    inventory.observe_boot_script(mac, "dev", now);
    inventory.flush_if_dirty().unwrap();
    inventory
}

/// The runtime assignments on disk (the file's other keys are the API's
/// own Consul sync status, written at start-up whatever requests do).
fn assignments(root: &Root) -> serde_json::Value {
    std::fs::read(root.path("var/lib/kindling/inventory/assignments.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .map(|v| v["assignments"].clone())
        .filter(|a| a.as_object().is_some_and(|m| !m.is_empty()))
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn the_page_needs_a_session_or_token_and_shows_the_inventory() {
    let root = Root::new();
    apply(&root);
    seed_inventory(&root);
    let api = start_api(&root);
    let tls = tls_config(&api.run_dir);
    let get =
        |path: &str, headers: &[(&str, &str)]| exchange(&api.addr, &tls, "GET", path, headers, b"");

    // Anonymous: an API client gets 401, a browser is sent to the login
    // form; neither sees anything of the appliance.
    let page = get("/", &[]);
    assert_eq!(page.status, 401, "{}", page.body);
    assert_eq!(page.json()["kind"], "unauthenticated");
    let page = get("/", &[("Accept", "text/html,*/*")]);
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.header("location"), Some("/ui/login"));
    assert!(page.body.is_empty(), "{}", page.body);
    let form = get("/ui/login", &[]);
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(form.body.contains("action=/ui/login"), "{}", form.body);
    assert!(!form.body.contains(NODE), "the login form shows a node");
    let fragment = get("/ui/fragment", &[]);
    assert_eq!(fragment.status, 401);
    assert_eq!(fragment.json()["kind"], "unauthenticated");

    // Wrong or missing tokens at the login.
    let post_login = |body: &str| {
        exchange(
            &api.addr,
            &tls,
            "POST",
            "/ui/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
    };
    let wrong = post_login(&format!("token={}", "kdl_".to_string() + &"0".repeat(64)));
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.header("set-cookie").is_none());
    assert!(
        wrong.body.contains("not one of this site"),
        "{}",
        wrong.body
    );
    let digest = lab_tokens().read.sha256().to_string();
    assert_eq!(post_login(&format!("token={digest}")).status, 401);
    let bad = post_login("tokn=x");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("`token`"), "{}", bad.body);

    // The read-only operator logs in: a session cookie a page can't read.
    let reply = post_login(&format!(
        "token={}",
        form_encode(lab_tokens().read.expose())
    ));
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert_eq!(reply.header("location"), Some("/"));
    let set_cookie = reply.header("set-cookie").unwrap();
    for attribute in [
        "__Host-kindling_session=",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=28800",
    ] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap();
    let page = get("/", &[("Cookie", cookie)]);
    assert_eq!(page.status, 200, "{}", page.body);
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(page.body.contains(NODE) && page.body.contains(">booting<"));
    assert!(page.body.contains("lab-read (read)"));
    assert!(
        !page.body.contains("<button type=button data-method"),
        "the read role is offered actions"
    );
    assert!(!page.body.contains("src=\"http") && !page.body.contains("href=\"http"));
    eprintln!("status page: {} bytes of HTML", page.body.len());
    let fragment = get("/ui/fragment", &[("Cookie", cookie)]);
    assert_eq!(fragment.status, 200);
    assert!(fragment.body.contains(NODE));

    // An API client's bearer token opens the page too.
    let bearer = format!("Bearer {}", lab_tokens().read.expose());
    assert_eq!(get("/", &[("Authorization", &bearer)]).status, 200);

    // Forged cookies: a made-up id, the CSRF token, an empty one.
    for forged in [
        format!("__Host-kindling_session={}", "a".repeat(64)),
        "__Host-kindling_session=".to_string(),
        "kindling_session=".to_string() + &cookie["__Host-kindling_session=".len()..],
    ] {
        let page = get("/", &[("Cookie", &forged)]);
        assert_eq!(page.status, 401, "{forged}: {}", page.body);
        let page = get("/", &[("Cookie", &forged), ("Accept", "text/html")]);
        assert_eq!(page.header("location"), Some("/ui/login"), "{forged}");
        assert_eq!(get("/v1/nodes", &[("Cookie", &forged)]).status, 401);
    }
}

#[test]
fn actions_through_a_session_need_the_admin_role_and_the_csrf_token() {
    let root = Root::new();
    apply(&root);
    seed_inventory(&root);
    let api = start_api(&root);
    let tls = tls_config(&api.run_dir);
    let send = |method: &str, path: &str, headers: &[(&str, &str)], body: &str| -> Raw {
        exchange(&api.addr, &tls, method, path, headers, body.as_bytes())
    };
    let assign_path = format!("/v1/nodes/{NODE}/profile");
    let before = assignments(&root);

    // The read role, even with its own CSRF token: 403, nothing written.
    let (read_cookie, read_csrf) = login(&api.addr, &tls, lab_tokens().read.expose());
    for (method, path, body) in [
        ("PUT", assign_path.as_str(), r#"{"profile": "prod"}"#),
        ("POST", "/v1/services/pxe/restart", ""),
        ("POST", &format!("/v1/nodes/{NODE}/reprovision"), "{}"),
    ] {
        let reply = send(
            method,
            path,
            &[("Cookie", &read_cookie), ("X-Kindling-Csrf", &read_csrf)],
            body,
        );
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.body);
        assert!(reply.body.contains("read role"), "{}", reply.body);
    }

    // The admin without the CSRF token, or with another session's: 403.
    let (cookie, csrf) = login(&api.addr, &tls, lab_tokens().admin.expose());
    let body = r#"{"profile": "prod"}"#;
    for headers in [
        vec![("Cookie", cookie.as_str())],
        vec![("Cookie", cookie.as_str()), ("X-Kindling-Csrf", &read_csrf)],
        vec![("Cookie", cookie.as_str()), ("X-Kindling-Csrf", "")],
    ] {
        let reply = send("PUT", &assign_path, &headers, body);
        assert_eq!(reply.status, 403, "{headers:?}: {}", reply.body);
        assert!(reply.body.contains("CSRF"), "{}", reply.body);
    }
    assert!(!root
        .path("var/lib/kindling/inventory/reprovision.json")
        .exists());
    assert_eq!(assignments(&root), before, "a refused action wrote");

    // Bad input through a valid session: 400 naming the field, 404.
    let with_csrf = [
        ("Cookie", cookie.as_str()),
        ("X-Kindling-Csrf", csrf.as_str()),
    ];
    for bad in [r#"{"profile": 5}"#, r#"{"profil": "prod"}"#, "{not json"] {
        let reply = send("PUT", &assign_path, &with_csrf, bad);
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
        assert_eq!(reply.json()["kind"], "bad_request");
    }
    let reply = send("PUT", &assign_path, &with_csrf, r#"{"profile": 5}"#);
    assert!(reply.body.contains("profile"), "{}", reply.body);
    let unknown = send(
        "POST",
        "/v1/nodes/52:54:00:ff:ff:ff/reprovision",
        &with_csrf,
        "{}",
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(assignments(&root), before, "bad input wrote");

    // Done properly, the same action changes the assignment.
    let reply = send("PUT", &assign_path, &with_csrf, body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_ne!(assignments(&root), before);
    let nodes = send("GET", "/v1/nodes", &[("Cookie", &cookie)], "").json();
    let row = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["mac"] == NODE)
        .unwrap();
    assert_eq!(row["assignment"]["source"], "assigned", "{row}");

    // Logout ends the session: the cookie is refused afterwards.
    let out = send("POST", "/ui/logout", &with_csrf, "");
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(send("GET", "/", &[("Cookie", &cookie)], "").status, 401);
}

/// A session ends when the site config no longer lists its operator the
/// same way (an accepted overlay rewrites site.json; here the test does).
#[test]
fn a_session_ends_with_its_operator() {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    let tls = tls_config(&api.run_dir);
    let (cookie, _) = login(&api.addr, &tls, lab_tokens().read.expose());
    let get = |path: &str| exchange(&api.addr, &tls, "GET", path, &[("Cookie", &cookie)], b"");
    assert_eq!(get("/ui/fragment").status, 200);

    let site_json = root.path("run/kindling/site.json");
    let mut site: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&site_json).unwrap()).unwrap();
    let operators = site["api"]["operators"].as_array_mut().unwrap();
    operators.retain(|o| o["name"] != "lab-read");
    std::fs::write(&site_json, serde_json::to_vec_pretty(&site).unwrap()).unwrap();

    let reply = get("/ui/fragment");
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.body.contains("removed or changed"), "{}", reply.body);
    // The admin, still listed, is unaffected.
    let (admin_cookie, _) = login(&api.addr, &tls, lab_tokens().admin.expose());
    let reply = exchange(
        &api.addr,
        &tls,
        "GET",
        "/ui/fragment",
        &[("Cookie", &admin_cookie)],
        b"",
    );
    assert_eq!(reply.status, 200);
}
