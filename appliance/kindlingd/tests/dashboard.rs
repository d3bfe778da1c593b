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

/// The running loop redraws in place on the terminal it is given (here a
/// plain file standing in for tty1): cursor home, the screen, clear to end.
#[test]
fn the_loop_redraws_the_screen_in_place() {
    let root = Root::new();
    apply(&root);
    let tty = root.path("tty1");
    std::fs::write(&tty, b"").unwrap();
    let mut child = root
        .command(&[
            "dashboard",
            "--tty",
            tty.to_str().unwrap(),
            "--interval",
            "1",
        ])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let frames = loop {
        let text = String::from_utf8_lossy(&std::fs::read(&tty).unwrap()).to_string();
        if text.matches("\x1b[H").count() >= 2 || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(frames.starts_with("\x1b[2J\x1b[?25l"), "{frames:?}");
    assert!(
        frames.matches("\x1b[H").count() >= 2,
        "fewer than two frames: {frames:?}"
    );
    assert!(frames.contains("API CA  sha256:"), "{frames:?}");
    assert!(frames.contains("\x1b[J"), "{frames:?}");
}
