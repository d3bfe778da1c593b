//! Every shipped profile's Debian installer preseed is read cleanly by
//! debconf's own parser (`debconf-set-selections --checkonly`, which the
//! installer's preseeding uses too): no parse error, and no warning (an
//! unknown type is only a warning there, and the line is dropped). The late
//! command, the one piece of shell in it, must parse as shell.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kindling_pxe::render::{preseed, NodeContext};
use kindling_pxe::MacAddr;
use std::path::Path;
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../overlays");
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("site.toml").is_file() {
            continue;
        }
        let site = kindling_site::SiteTree::read_dir(&dir)
            .unwrap()
            .to_config("test")
            .unwrap()
            .config;
        for (name, profile) in &site.profiles {
            let label = format!("{}: profile {name}", dir.display());
            let ctx = NodeContext {
                mac: MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]),
                hostname: "node-1".into(),
                domain: site.site.domain.clone(),
                profile_name: name.as_str(),
                profile,
                base_url: "http://192.168.100.1/",
                enrollment: None,
            };
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
            checked += 1;
        }
    }
    assert!(
        checked >= 4,
        "expected at least 4 shipped profiles, checked {checked}"
    );
}
