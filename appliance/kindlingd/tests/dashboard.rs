//! `kindlingd dashboard --once` on a configured appliance root: the config
//! phase leaves the API CA's public certificate where the dashboard (its
//! own unprivileged account, no API token) reads it, and the screen shows
//! that fingerprint, the site, and says init is not answering (none runs
//! here) instead of failing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::appliance::{apply, Root};

#[test]
fn the_screen_shows_the_pinned_fingerprint_and_the_site() {
    let root = Root::new();
    apply(&root);
    let run = root.path("run/kindling");
    let public = std::fs::read_to_string(run.join("api-ca.pem")).unwrap();
    let private = std::fs::read_to_string(run.join("api-tls/ca.pem")).unwrap();
    assert_eq!(public, private, "the public copy is the API's CA");
    let fingerprint = kindling_pki::fingerprint_of_pem(&run.join("api-ca.pem"), &public).unwrap();

    let out = root.command(&["dashboard", "--once"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let screen = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = screen.lines().collect();
    assert_eq!(lines.len(), 25, "{screen}");
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "{screen}");
    assert!(
        lines[0].starts_with("kindling kindling-lab.lab.kindling.internal site lab"),
        "{screen}"
    );
    assert!(
        lines[1].starts_with("Health  UNKNOWN: init not answering"),
        "{screen}"
    );
    assert_eq!(lines[2], format!("API CA  {fingerprint}"), "{screen}");
    assert!(screen.contains("dashboard started"), "{screen}");
}
