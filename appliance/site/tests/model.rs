//! Reading real trees (the repository's example overlays) and broken snippets:
//! every error names file, line, key and reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kindling_site::{merge_layers, Layer, SiteTree};
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tree(files: &[(&str, &str)]) -> Result<SiteTree, kindling_site::ConfigErrors> {
    SiteTree::from_files(
        files
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect(),
    )
}

const PROFILE_DEV: &str = "name = \"dev\"\n[boot]\nkind = \"linux\"\nkernel = \"vmlinuz\"\n";

#[test]
fn example_overlays_are_valid() {
    for name in ["lab", "production-example"] {
        let dir = repo().join("overlays").join(name);
        let t = SiteTree::read_dir(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let eff = t.to_config(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!eff.config.site.id.is_empty());
        assert!(!eff.config.profiles.is_empty(), "{name} has profiles");
    }
}

#[test]
fn lab_overlay_values() {
    let t = SiteTree::read_dir(&repo().join("overlays/lab")).unwrap();
    let eff = t.to_config("lab").unwrap();
    let c = &eff.config;
    assert_eq!(c.site.id, "lab");
    assert_eq!(c.network.lan.address.to_string(), "192.168.100.1/24");
    assert_eq!(c.nodes[0].mac, "52:54:00:6b:00:10");
    assert_eq!(c.nodes[1].profile, "prod");
    assert_eq!(eff.origin_of("pxe.range").unwrap().file, "site.toml");
    assert_eq!(
        eff.origin_of("profiles.dev.boot").unwrap().file,
        "profiles/dev.toml"
    );
    // Not set by the lab: an image default.
    assert!(eff.origin_of("api.port").is_none());
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let err = tree(&[("site.toml", "[site]\nid = \"x\"\n\n[pxe]\nranges = 3\n")]).unwrap_err();
    let line = err.to_string();
    assert!(line.starts_with("site.toml:5: pxe"), "{line}");
    assert!(line.contains("unknown field `ranges`"), "{line}");
}

#[test]
fn invalid_toml_names_line() {
    let err = tree(&[("site.toml", "[site]\nid = \"x\"\nname = \n")]).unwrap_err();
    assert!(err.to_string().starts_with("site.toml:3:"), "{err}");
}

#[test]
fn bad_mac_and_cidr_values_are_located() {
    let err = tree(&[(
        "site.toml",
        "[site]\nid = \"x\"\n[network.lan]\naddress = \"192.168.100.1\"\n",
    )])
    .unwrap_err();
    let s = err.to_string();
    assert!(
        s.starts_with("site.toml:4: network.lan.address: invalid CIDR"),
        "{s}"
    );

    let err = tree(&[(
        "site.toml",
        "[site]\nid = \"x\"\n[[nodes]]\nmac = \"52:54:00:6b:00\"\nprofile = \"dev\"\n",
    )])
    .unwrap_err();
    let s = err.to_string();
    assert!(
        s.starts_with("site.toml:4: nodes[0].mac: invalid MAC address"),
        "{s}"
    );
}

#[test]
fn every_semantic_problem_is_listed_with_its_line() {
    let site = "[site]\nid = \"lab\"\n\n[pxe]\nrange = { start = \"10.0.0.10\", end = \"10.0.0.20\" }\ndefault_profile = \"dev\"\n\n[[nodes]]\nmac = \"52:54:00:6b:00:10\"\nprofile = \"dev\"\n\n[[nodes]]\nmac = \"52:54:00:6B:00:10\"\nprofile = \"gpu\"\n";
    let t = tree(&[("site.toml", site), ("profiles/dev.toml", PROFILE_DEV)]).unwrap();
    let err = t.to_config("lab").unwrap_err();
    let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    assert!(
        lines.contains(&"lab/site.toml:5: pxe.range: DHCP range 10.0.0.10-10.0.0.20 is outside the LAN 192.168.100.0/24".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("lab/site.toml:13: nodes[1].mac: duplicate MAC")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l
                .starts_with("lab/site.toml:14: nodes[1].profile: profile \"gpu\" does not exist")),
        "{lines:#?}"
    );
}

/// Operators: a bad digest is located at parse time; duplicate names and
/// shared tokens after the merge.
#[test]
fn api_operators_are_checked() {
    let digest = |c: char| c.to_string().repeat(64);
    let err = tree(&[(
        "site.toml",
        "[site]\nid = \"lab\"\n\n[[api.operators]]\nname = \"alice\"\nrole = \"admin\"\ntoken_sha256 = \"kt1_secret\"\n",
    )])
    .unwrap_err();
    let s = err.to_string();
    assert!(
        s.starts_with("site.toml:7: api.operators[0].token_sha256: invalid token_sha256"),
        "{s}"
    );
    let site = format!(
        "[site]\nid = \"lab\"\n\n[[api.operators]]\nname = \"alice\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"\n\n[[api.operators]]\nname = \"alice\"\nrole = \"read\"\ntoken_sha256 = \"{}\"\n\n[[api.operators]]\nname = \"Bob\"\nrole = \"read\"\ntoken_sha256 = \"{}\"\n",
        digest('a'),
        digest('b'),
        digest('a'),
    );
    let t = tree(&[("site.toml", &site), ("profiles/dev.toml", PROFILE_DEV)]).unwrap();
    let lines: Vec<String> = t
        .to_config("lab")
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    for want in [
        "api.operators[1].name: duplicate operator \"alice\" (also api.operators[0])",
        "api.operators[2].name: \"Bob\" is not an operator name",
        "api.operators[2].token_sha256: the same token as api.operators[0]",
    ] {
        assert!(lines.iter().any(|l| l.contains(want)), "{want}: {lines:#?}");
    }
}

#[test]
fn time_problems_name_their_key_and_line() {
    let site = "[site]\nid = \"lab\"\n\n[pxe]\nntp = [\"192.168.100.1\"]\n\n[time]\nsources = [\"ntp.example.org\", \"10.0.0.1:99999\", \"bad host!\"]\nminimum_agreeing_sources = 4\nmin_poll = 11\n";
    let t = tree(&[("site.toml", site)]).unwrap();
    let err = t.to_config("lab").unwrap_err();
    let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    for expected in [
        "lab/site.toml:8: time.sources[1]: \"10.0.0.1:99999\" is not an NTP server",
        "lab/site.toml:8: time.sources[2]: \"bad host!\" is not an NTP server",
        "lab/site.toml:9: time.minimum_agreeing_sources: 4 cannot be met by the 3 configured sources",
        "lab/site.toml:10: time.min_poll: 11 is above 10",
        "lab/site.toml:5: pxe.ntp: names the appliance (192.168.100.1) but time.ntp_server is off",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "{expected}\n{lines:#?}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.contains("time.sources[0]")),
        "a host name is a valid source: {lines:#?}"
    );
}

#[test]
fn dhcp_range_reversed_is_refused_at_parse() {
    let err = tree(&[(
        "site.toml",
        "[pxe]\nrange = { start = \"192.168.100.200\", end = \"192.168.100.100\" }\n",
    )])
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("start 192.168.100.200 is after its end"),
        "{err}"
    );
}

#[test]
fn profile_name_must_match_file() {
    let err = tree(&[("profiles/prod.toml", PROFILE_DEV)]).unwrap_err();
    assert!(
        err.to_string().starts_with("profiles/prod.toml:1: name:"),
        "{err}"
    );
}

#[test]
fn later_layers_override_and_record_provenance() {
    let base = tree(&[
        (
            "site.toml",
            "[site]\nid = \"lab\"\n[pxe]\ndefault_profile = \"dev\"\nlease_secs = 600\n",
        ),
        ("profiles/dev.toml", PROFILE_DEV),
    ])
    .unwrap();
    let appliance = tree(&[(
        "site.toml",
        "[pxe]\nlease_secs = 7200\n[site]\nhostname = \"kindling-7\"\n",
    )])
    .unwrap();
    let eff = merge_layers(&[
        Layer {
            label: "site".into(),
            tree: base,
        },
        Layer {
            label: "appliance-7".into(),
            tree: appliance,
        },
    ])
    .unwrap();
    assert_eq!(eff.config.pxe.lease_secs, 7200);
    assert_eq!(eff.config.site.hostname, "kindling-7");
    assert_eq!(eff.config.site.id, "lab");
    assert_eq!(
        eff.origin_of("pxe.lease_secs").unwrap().layer,
        "appliance-7"
    );
    assert_eq!(eff.origin_of("pxe.default_profile").unwrap().layer, "site");
    assert_eq!(eff.origin_of("site.id").unwrap().layer, "site");
}

#[test]
fn shipped_schema_matches_model() {
    let dir = repo().join("schema");
    for (name, text) in kindling_site::schema::schema_files() {
        let path = dir.join(name);
        if std::env::var_os("KINDLING_UPDATE_SCHEMA").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            shipped == text,
            "{} is out of date: regenerate with KINDLING_UPDATE_SCHEMA=1 cargo test -p kindling-site --test model",
            path.display()
        );
    }
}

/// The shipped schemas accept the example overlays and reject an unknown key
/// and a bad MAC, checked by an independent validator (python3-jsonschema,
/// which cloud-init pulls in). Skips with a message when it is absent.
#[test]
fn shipped_schema_validates_examples_with_an_independent_validator() {
    let script = r#"
import json, sys, glob, tomllib, jsonschema
root = sys.argv[1]
site = json.load(open(root + '/schema/site.schema.json'))
prof = json.load(open(root + '/schema/profile.schema.json'))
for d in ['overlays/lab', 'overlays/production-example']:
    jsonschema.validate(tomllib.load(open(f'{root}/{d}/site.toml', 'rb')), site)
    for p in glob.glob(f'{root}/{d}/profiles/*.toml'):
        jsonschema.validate(tomllib.load(open(p, 'rb')), prof)
def rejects(doc):
    try:
        jsonschema.validate(doc, site)
        return False
    except jsonschema.ValidationError:
        return True
bad = tomllib.load(open(f'{root}/overlays/lab/site.toml', 'rb')); bad['dns']['forwardr'] = True
assert rejects(bad), 'unknown key accepted'
bad = tomllib.load(open(f'{root}/overlays/lab/site.toml', 'rb')); bad['nodes'][0]['mac'] = 'zz'
assert rejects(bad), 'bad MAC accepted'
print('ok')
"#;
    let probe = std::process::Command::new("python3")
        .args(["-c", "import jsonschema, tomllib"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIP: python3 with jsonschema and tomllib not available (apt-get install python3-jsonschema)");
        return;
    }
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn max_discovered_has_a_safe_default_and_refuses_zero() {
    let t = tree(&[("site.toml", "[site]\nid = \"x\"\n")]).unwrap();
    assert_eq!(t.to_config("x").unwrap().config.pxe.max_discovered, 1024);
    let t = tree(&[(
        "site.toml",
        "[site]\nid = \"x\"\n[pxe]\nmax_discovered = 0\n",
    )])
    .unwrap();
    let err = t.to_config("x").unwrap_err().to_string();
    assert!(
        err.contains("x/site.toml:4: pxe.max_discovered: 0 would forget every node"),
        "{err}"
    );
}

#[test]
fn enrollment_settings_are_bounded_and_located() {
    let err = tree(&[(
        "site.toml",
        "[site]\nid = \"x\"\n\n[enrollment]\ngrant_ttl_secs = 86400\n",
    )])
    .unwrap_err();
    let s = err.to_string();
    assert!(
        s.starts_with("site.toml:5: enrollment.grant_ttl_secs: grant_ttl_secs = 86400: a grant lives 30 to 3600 seconds"),
        "{s}"
    );
    let profile = format!("{PROFILE_DEV}[enrollment]\nunknown_macs = 2\n");
    let t = tree(&[
        (
            "site.toml",
            "[site]\nid = \"x\"\n[pxe]\ndefault_profile = \"dev\"\n[enrollment]\ngrant_ttl_secs = 120\n",
        ),
        ("profiles/dev.toml", &profile),
    ])
    .unwrap();
    let c = t.to_config("x").unwrap().config;
    assert_eq!(c.enrollment.grant_ttl_secs.secs(), 120);
    assert_eq!(c.profiles["dev"].enrollment.unknown_macs, 2);
    let err = tree(&[(
        "profiles/dev.toml",
        &format!("{PROFILE_DEV}[enrollment]\nunknown = 2\n"),
    )])
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `unknown`"), "{err}");
}

#[test]
fn selectors_are_checked_for_profiles_criteria_and_ambiguity() {
    const PROFILE_PROD: &str = "name = \"prod\"\n[boot]\nkind = \"linux\"\nkernel = \"vmlinuz\"\n";
    let site = "[site]\nid = \"lab\"\n\n\
        [[selectors]]\nprofile = \"dev\"\nmac_prefix = \"52:54:00\"\n\n\
        [[selectors]]\nprofile = \"prod\"\nmac_prefix = \"52:54:00\"\nfirmware = \"uefi\"\n\n\
        [[selectors]]\nprofile = \"prod\"\nfirmware = \"uefi\"\n\n\
        [[selectors]]\nprofile = \"prod\"\narch = 11\n\n\
        [[selectors]]\nprofile = \"gpu\"\nmac_prefix = \"0c:42\"\n\n\
        [[selectors]]\nprofile = \"dev\"\n";
    let t = tree(&[
        ("site.toml", site),
        ("profiles/dev.toml", PROFILE_DEV),
        ("profiles/prod.toml", PROFILE_PROD),
    ])
    .unwrap();
    let err = t.to_config("lab").unwrap_err();
    let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    let has = |start: &str, part: &str| {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(start) && l.contains(part)),
            "{start} … {part}: {lines:#?}"
        )
    };
    // A vendor prefix refines nothing and is refined by prefix+uefi: fine.
    // firmware = uefi alone overlaps the bare vendor prefix: ambiguous.
    has("lab/site.toml:", "selectors[2]: ambiguous: selectors[0] (mac_prefix 52:54:00 → dev) and selectors[2] (firmware uefi → prod)");
    // arch 11 overlaps all three, refining none.
    has("lab/site.toml:", "selectors[3]: ambiguous: selectors[0]");
    has("lab/site.toml:", "selectors[3]: ambiguous: selectors[1]");
    has(
        "lab/site.toml:",
        "selectors[4].profile: profile \"gpu\" does not exist",
    );
    has(
        "lab/site.toml:",
        "selectors[5]: a selector needs at least one of",
    );
    assert!(
        !lines.iter().any(|l| l.contains("selectors[1]: ambiguous")),
        "prefix + firmware refines the prefix: {lines:#?}"
    );
    let bad_prefix = "[site]\nid = \"lab\"\n[[selectors]]\nprofile = \"dev\"\nmac_prefix = \"52:54:00:6b:00:10\"\n";
    let err = tree(&[
        ("site.toml", bad_prefix),
        ("profiles/dev.toml", PROFILE_DEV),
    ])
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("site.toml:5: selectors[0].mac_prefix"),
        "{err}"
    );
    assert!(err.to_string().contains("use [[nodes]]"), "{err}");
}

#[test]
fn tag_selectors_are_checked_at_overlay_build() {
    const PROFILE_PROD: &str = "name = \"prod\"\n[boot]\nkind = \"linux\"\nkernel = \"vmlinuz\"\n";
    let site = "[site]\nid = \"lab\"\n\n\
        [[selectors]]\nprofile = \"dev\"\ntags = { rack = \"r12\" }\n\n\
        [[selectors]]\nprofile = \"prod\"\ntags = { rack = \"r12\", gpu = \"a100\" }\n\n\
        [[selectors]]\nprofile = \"prod\"\ntags = { rack = \"r13\" }\n\n\
        [[selectors]]\nprofile = \"prod\"\ntags = { gpu = \"h100\" }\n\n\
        [[selectors]]\nprofile = \"prod\"\nfirmware = \"uefi\"\ntags = { rack = \"r13\" }\n\n\
        [[selectors]]\nprofile = \"dev\"\ntags = { Rack = \"r1\", os = \"a b\" }\n";
    let t = tree(&[
        ("site.toml", site),
        ("profiles/dev.toml", PROFILE_DEV),
        ("profiles/prod.toml", PROFILE_PROD),
    ])
    .unwrap();
    let err = t.to_config("lab").unwrap_err();
    let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    let has = |part: &str| assert!(lines.iter().any(|l| l.contains(part)), "{part}: {lines:#?}");
    // rack=r12 and gpu=h100 can both be on one node, neither narrower.
    has("selectors[3]: ambiguous: selectors[0] (tags rack=r12 → dev) and selectors[3] (tags gpu=h100 → prod)");
    // Bad keys and values are named, with the selector's line.
    has("selectors[5].tags.Rack: tag key \"Rack\"");
    has("selectors[5].tags.os: tag \"os\": value \"a b\"");
    // gpu=h100 can meet rack=r13 (alone or with uefi) as well.
    has("selectors[3]: ambiguous: selectors[2] (tags rack=r13 → prod)");
    has("selectors[4]: ambiguous: selectors[3] (tags gpu=h100 → prod)");
    // r12+gpu=a100 refines r12; r13 and r12 never meet; gpu=a100 and
    // gpu=h100 never meet; uefi+r13 refines r13.
    let ambiguous: Vec<&String> = lines.iter().filter(|l| l.contains("ambiguous")).collect();
    assert_eq!(ambiguous.len(), 3, "{lines:#?}");
}

#[test]
fn log_bounds_name_their_key_and_line() {
    let site = "[site]\nid = \"lab\"\n\n[logs]\nfile_kib = 2\nfiles_per_service = 0\nsyslog = \"logs.example.org:514\"\n";
    let t = tree(&[("site.toml", site)]).unwrap();
    let err = t.to_config("lab").unwrap_err();
    let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    for expected in [
        "lab/site.toml:5: logs.file_kib: 2 is outside 4 to 65536",
        "lab/site.toml:6: logs.files_per_service: 0 is outside 1 to 32",
        "lab/site.toml:7: logs.syslog: \"logs.example.org:514\" is not ADDR:PORT",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "{expected}\n{lines:#?}"
        );
    }
    let ok = "[site]\nid = \"lab\"\n\n[logs]\nfile_kib = 256\nfiles_per_service = 8\n";
    let config = tree(&[("site.toml", ok)])
        .unwrap()
        .to_config("lab")
        .unwrap();
    let logs = &config.config.logs;
    assert_eq!((logs.file_kib, logs.files_per_service), (256, 8));
}

#[test]
fn update_channel_settings_name_their_key_and_line() {
    let site = "[site]\nid = \"lab\"\n\n[update]\nchannel = \"prod\"\nurl = \"http://10.0.2.2:8000/\"\ncheck_every = \"6 hours\"\nwindow = \"Sunday 02:00-04:00\"\n";
    let err = tree(&[("site.toml", site)])
        .unwrap()
        .to_config("lab")
        .unwrap_err();
    let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    for expected in [
        "lab/site.toml:7: update.check_every: \"6 hours\" is not a number and a unit",
        "lab/site.toml:8: update.window: \"Sunday\" is not a day",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "{expected}\n{lines:#?}"
        );
    }
    let ok = "[site]\nid = \"lab\"\n\n[update]\nchannel = \"prod\"\nurl = \"http://10.0.2.2:8000/\"\nrequires_blessing_on = \"dev\"\nwindow = \"Sun 02:00-04:00\"\n";
    let config = tree(&[("site.toml", ok)])
        .unwrap()
        .to_config("lab")
        .unwrap();
    assert_eq!(config.config.update.check_every, "6h");
    assert_eq!(config.config.update.channel.as_deref(), Some("prod"));
}

#[test]
fn pinned_artifacts_are_checked_and_located() {
    let hex = "3f".repeat(32);
    let good = format!(
        "name = \"dev\"\n[boot]\nkind = \"linux\"\nkernel = \"sha256/{hex}\"\ninitrd = [\"node.cpio\", \"sha256/{hex}\"]\n"
    );
    let site = "[site]\nid = \"x\"\n[pxe]\ndefault_profile = \"dev\"\n";
    let c = tree(&[("site.toml", site), ("profiles/dev.toml", &good)])
        .unwrap()
        .to_config("x")
        .unwrap()
        .config;
    assert_eq!(
        c.profiles["dev"].boot.artifact_fields(),
        vec![
            ("kernel".to_string(), format!("sha256/{hex}").as_str()),
            ("initrd[0]".to_string(), "node.cpio"),
            ("initrd[1]".to_string(), format!("sha256/{hex}").as_str()),
        ]
    );

    // Upper case, short, and a bare prefix: each named by profile and field.
    let bad = format!(
        "name = \"dev\"\n[boot]\nkind = \"ubuntu-autoinstall\"\nkernel = \"sha256/{}\"\ninitrd = \"sha256/{}\"\niso = \"sha256:\"\n",
        hex.to_uppercase(),
        &hex[..63]
    );
    let err = tree(&[("site.toml", site), ("profiles/dev.toml", &bad)])
        .unwrap()
        .to_config("lab")
        .unwrap_err();
    let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for (line, field) in [(4, "kernel"), (5, "initrd"), (6, "iso")] {
        let want = format!(
            "lab/profiles/dev.toml:{line}: profiles.dev.boot.{field}: profile dev, boot.{field}: "
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&want) && l.contains("64 lower-case hex digits")),
            "{want}: {lines:#?}"
        );
    }
}
