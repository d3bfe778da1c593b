//! The architecture rules of docs/architecture.md, checked on the code:
//! - every workspace crate has a layer, and depends only on crates of lower
//!   layers (so crate dependencies point one way and cannot form a circle);
//! - nothing outside `init/` depends on the PID 1 crate `kindling-init`;
//! - inside each crate, no two modules import each other, directly or through
//!   others (a module and its own submodules excepted: a parent declares its
//!   children and re-exports from them).
//!
//! It reads `cargo metadata` and the sources as text; nothing is built or run.
#![allow(
    clippy::expect_used,
    reason = "test helpers: a broken workspace stops the test loudly"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The layers of docs/architecture.md, lowest first. A crate may depend only
/// on crates of a strictly lower layer. A new crate must be placed here.
const LAYERS: &[(&str, u8)] = &[
    // 0: leaves that know nothing of kindling's other parts
    ("kindling-clock", 0),
    ("kindling-atomic-write", 0),
    ("kindling-install", 0),
    ("kindling-init-protocol", 0),
    // 1: the typed site configuration; the appliance CA
    ("kindling-site", 1),
    ("kindling-pki", 1),
    // 1: the node agent (runs on nodes, not the appliance): atomic writes only
    ("kindling-node", 1),
    // 2: the API contract (types only)
    ("kindling-api", 2),
    // 3: libraries that each own one job
    ("kindling-overlay", 3),
    ("kindling-net", 3),
    ("kindling-inventory", 3),
    ("kindling-stack", 3),
    ("kindling-api-client", 3),
    ("kindling-artifacts", 3),
    // 4: PXE asks the inventory; update bundles use the overlays' signatures
    ("kindling-pxe", 4),
    ("kindling-update", 4),
    // 4: backups use the stack's clients and its encryption to the operators
    ("kindling-backup", 4),
    // 5: the binaries: PID 1, the appliance's multi-call binary, the CLI
    ("kindling-init", 5),
    ("kindlingd", 5),
    ("kindling-image", 5),
    // 6: the QEMU lab, test doubles and end-to-end tests
    ("kindling-lab", 6),
    ("kindling-nomad-double", 6),
    ("kindling-nocloud-double", 6),
    ("kindling-e2e", 7),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

struct Package {
    name: String,
    src: PathBuf,
    deps: Vec<String>,
}

fn workspace_packages() -> Vec<Package> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    packages
        .iter()
        .map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
            Package {
                name: p["name"].as_str().unwrap_or_default().to_string(),
                src: manifest.parent().unwrap_or(Path::new("")).join("src"),
                deps: p["dependencies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    // Normal and build dependencies; dev-dependencies are the
                    // tests' business.
                    .filter(|d| d["kind"].is_null() || d["kind"] == "build")
                    .filter_map(|d| d["name"].as_str())
                    .filter(|d| names.contains(d))
                    .map(str::to_string)
                    .collect(),
            }
        })
        .collect()
}

fn layer(name: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

#[test]
fn crates_depend_only_on_lower_layers() {
    let mut wrong = Vec::new();
    for p in workspace_packages() {
        let Some(own) = layer(&p.name) else {
            wrong.push(format!(
                "{} has no layer: add it to LAYERS here and to docs/architecture.md",
                p.name
            ));
            continue;
        };
        for d in &p.deps {
            match layer(d) {
                Some(l) if l < own => {}
                Some(l) => wrong.push(format!(
                    "{} (layer {own}) depends on {d} (layer {l}): only lower layers are allowed",
                    p.name
                )),
                None => wrong.push(format!("{d} (used by {}) has no layer", p.name)),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn nothing_outside_init_depends_on_the_pid1_crate() {
    let users: Vec<String> = workspace_packages()
        .into_iter()
        .filter(|p| p.deps.iter().any(|d| d == "kindling-init"))
        .map(|p| p.name)
        .collect();
    assert!(
        users.is_empty(),
        "these crates depend on kindling-init (PID 1); use kindling-init-protocol: {users:?}"
    );
}

/// A crate's modules: module path (`dhcp::socket`) → source file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap_or(&path).with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            if parts.first().is_none_or(|p| p != "bin") {
                found.insert(parts.join("::"), path);
            }
        }
    }
    found
}

/// The modules `text` (the source of module `own`) names through `crate::…`
/// or `super::…` paths, resolved to the longest known module.
fn imports(own: &str, text: &str, known: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    // Items inside `#[cfg(test)] mod tests` may use anything.
    let code = code.split("#[cfg(test)]").next().unwrap_or("");
    let own_parts: Vec<&str> = own.split("::").filter(|p| !p.is_empty()).collect();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            let mut b = own_parts.clone();
            b.pop();
            b
        }),
    ] {
        for (i, _) in code.match_indices(prefix) {
            if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[i + prefix.len()..];
            let path: Vec<&str> = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or("")
                .split("::")
                .filter(|p| !p.is_empty())
                .collect();
            let mut full: Vec<&str> = base.clone();
            full.extend(path);
            while !full.is_empty() {
                let name = full.join("::");
                if known.contains_key(&name) {
                    out.insert(name);
                    break;
                }
                full.pop();
            }
        }
    }
    out
}

fn related(a: &str, b: &str) -> bool {
    let within =
        |outer: &str, inner: &str| outer.is_empty() || inner.starts_with(&format!("{outer}::"));
    a == b || within(a, b) || within(b, a)
}

/// One module circle of the graph, if there is one.
fn a_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_circles_between_modules_of_a_crate() {
    let mut circles = Vec::new();
    for p in workspace_packages() {
        let known = modules(&p.src);
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (module, file) in &known {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            let targets = imports(module, &text, &known)
                .into_iter()
                .filter(|t| !related(module, t))
                .collect();
            edges.insert(module.clone(), targets);
        }
        if let Some(circle) = a_circle(&edges) {
            circles.push(format!("{}: {}", p.name, circle.join(" -> ")));
        }
    }
    assert!(
        circles.is_empty(),
        "modules that import each other:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_circle_finder_finds_circles() {
    let edge = |pairs: &[(&str, &str)]| {
        let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            e.entry(a.to_string()).or_default().insert(b.to_string());
            e.entry(b.to_string()).or_default();
        }
        e
    };
    assert_eq!(a_circle(&edge(&[("a", "b"), ("b", "c")])), None);
    let circle = a_circle(&edge(&[("a", "b"), ("b", "c"), ("c", "a")])).expect("a circle");
    assert_eq!(circle.first(), circle.last());
    assert_eq!(circle.len(), 4, "{circle:?}");
    let known: BTreeMap<String, PathBuf> = ["dhcp", "dhcp::socket", "status"]
        .iter()
        .map(|m| (m.to_string(), PathBuf::new()))
        .collect();
    let seen = imports(
        "dhcp::socket",
        "use crate::status::Stats;\nuse super::responder::X;\nfn f() { my_crate::status(); }",
        &known,
    );
    assert_eq!(
        seen,
        ["dhcp", "status"].iter().map(|s| s.to_string()).collect()
    );
}
