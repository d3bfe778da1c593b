//! Every shipped profile's Debian installer preseed is read cleanly by
//! debconf's own parser (`debconf-set-selections --checkonly`, which the
//! installer's preseeding uses too): no parse error, and no warning (an
//! unknown type is only a warning there, and the line is dropped). The late
//! command, the one piece of shell in it, must parse as shell.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::each_shipped_profile;
use kindling_pxe::render::preseed;
use std::process::Command;

const LATE_COMMAND: &str = "d-i preseed/late_command string ";

#[test]
fn every_shipped_profile_renders_a_preseed_debconf_accepts() {
    if Command::new("debconf-set-selections")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("skipping: debconf-set-selections is not installed (Debian's debconf)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let checked = each_shipped_profile(|label, ctx| {
        let text = preseed::render(&ctx);
        let file = tmp.path().join("preseed.cfg");
        std::fs::write(&file, &text).unwrap();
        let out = Command::new("debconf-set-selections")
            .arg("--checkonly")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{label}: debconf-set-selections: {}\n---\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let late = text
            .lines()
            .find_map(|l| l.strip_prefix(LATE_COMMAND))
            .unwrap_or_else(|| panic!("{label}: no late_command"));
        let out = Command::new("sh")
            .args(["-n", "-c", late])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{label}: late_command is not valid shell: {}\n{late}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    assert!(
        checked >= 4,
        "expected at least 4 shipped profiles, checked {checked}"
    );
}
