//! The status page's HTML: the login form, the page shell (inline style and
//! script, nothing loaded from elsewhere) and the live fragment the script
//! fetches every two seconds. Renders JSON that the API's handlers already
//! assembled ([`Snapshot`]); reads nothing itself. Every value is escaped
//! ([`esc`]): node names, events and refusal reasons come from the LAN and
//! from overlays.

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::sync::OnceLock;

/// What the page shows, as the /v1 handlers answer it (`Err`: their error).
pub struct Snapshot {
    /// `GET /v1/status`.
    pub status: Value,
    /// `GET /v1/nodes`.
    pub nodes: Result<Value, String>,
    /// `GET /v1/stack`.
    pub stack: Result<Value, String>,
    /// The operator looking, and whether they may act.
    pub operator: String,
    pub admin: bool,
    /// Unix seconds now, for "… ago".
    pub now: u64,
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\
header{background:#1d2330;color:#fff;padding:.6em 1em;display:flex;gap:1.5em;align-items:center;flex-wrap:wrap}\
header h1{font-size:1.1em;margin:0}main{padding:.5em 1em}\
section{background:#fff;border:1px solid #d8dce3;border-radius:6px;margin:.6em 0;padding:.4em .8em;overflow-x:auto}\
h2{font-size:1em;margin:.3em 0}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.15em .6em .15em 0;border-bottom:1px solid #eef0f3;vertical-align:top;overflow-wrap:break-word}\
th{font-weight:600;color:#4a5365;white-space:nowrap}.ok{color:#11772f}.bad{color:#b3261e;font-weight:600}.dim{color:#7a8294}\
code{font-size:.9em}dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.1em 1em;margin:.2em 0}\
dt{color:#4a5365}dd{margin:0;overflow-wrap:anywhere;min-width:0}button{font:inherit;cursor:pointer}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(26em,1fr));gap:0 .8em}";

const SCRIPT: &str = r#"(()=>{const $=i=>document.getElementById(i),live=$('live'),csrf=document.querySelector('meta[name=csrf]').content;let busy=0,pending=null;
async function tick(){if(busy)return;busy=1;try{const r=await fetch('/ui/fragment',{cache:'no-store'});if(r.status==401||r.status==403){location.reload();return}if(r.ok){live.innerHTML=await r.text();$('conn').textContent='live, '+new Date().toLocaleTimeString()}else $('conn').textContent='refresh failed: '+r.status}catch(e){$('conn').textContent='connection lost'}finally{busy=0}}
setInterval(tick,2000);
live.addEventListener('click',e=>{const b=e.target.closest('button[data-path]');if(!b)return;pending=b.dataset;$('confirm-msg').textContent=b.dataset.confirm;$('confirm-profile').hidden=!('profile' in b.dataset);$('confirm-profile').value=b.dataset.profile||'';$('confirm-out').textContent='';$('confirm').showModal()});
$('confirm-yes').addEventListener('click',async e=>{e.preventDefault();if(!pending)return;const body='profile' in pending?JSON.stringify({profile:$('confirm-profile').value||null}):'{}';const r=await fetch(pending.path,{method:pending.method,headers:{'x-kindling-csrf':csrf,'content-type':'application/json'},body});$('confirm-out').textContent=r.status+': '+await r.text();if(r.ok){pending=null;setTimeout(()=>$('confirm').close(),700);tick()}});
$('confirm-no').addEventListener('click',e=>{e.preventDefault();pending=null;$('confirm').close()});
$('logout').addEventListener('click',async()=>{await fetch('/ui/logout',{method:'POST',headers:{'x-kindling-csrf':csrf}});location.reload()});})();"#;

/// The page's `Content-Security-Policy`: only its own inline style and
/// script (by hash), requests only to this origin, no frames, no forms
/// elsewhere. A browser would block (and report) any external request.
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = |text: &str| {
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
        };
        format!(
            "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            hash(STYLE),
            hash(SCRIPT)
        )
    })
}

/// `text` with HTML's special characters escaped (for text and quoted attributes).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn head(title: &str, csrf: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <meta name=csrf content=\"{}\"><title>{}</title><style>{STYLE}</style></head>",
        esc(csrf),
        esc(title)
    )
}

/// The login form, with `message` (why it is shown) above it.
pub fn login(message: &str) -> String {
    format!(
        "{}<body><header><h1>kindling</h1></header><main><section><h2>Log in</h2>\
         <p>{}</p><form method=post action=/ui/login>\
         <label>Operator token <input type=password name=token autocomplete=off required size=50></label> \
         <button type=submit>Log in</button></form>\
         <p class=dim>The token is checked once; the browser then holds a session cookie \
         (HttpOnly, Secure, SameSite=Strict) that ends after 15 minutes unused or 8 hours.</p>\
         </section></main></body></html>",
        head("kindling: log in", ""),
        esc(message)
    )
}

/// The whole page: the shell around the first fragment.
pub fn page(snapshot: &Snapshot, csrf: &str) -> String {
    format!(
        "{}<body><header><h1>kindling</h1><span>{}</span><span id=conn class=dim>loaded</span>\
         <button id=logout type=button>Log out</button></header><main id=live>{}</main>\
         <dialog id=confirm><form method=dialog><p id=confirm-msg></p>\
         <input id=confirm-profile placeholder=\"profile (empty: unassign)\" hidden>\
         <p><button id=confirm-yes>Confirm</button> <button id=confirm-no>Cancel</button></p>\
         <pre id=confirm-out></pre></form></dialog><script>{SCRIPT}</script></body></html>",
        head("kindling status", csrf),
        esc(&format!(
            "{} ({})",
            snapshot.operator,
            if snapshot.admin { "admin" } else { "read" }
        )),
        fragment(snapshot)
    )
}

/// The live part of the page.
pub fn fragment(s: &Snapshot) -> String {
    let mut out = String::new();
    summary(&mut out, s);
    out.push_str("<div class=grid>");
    phases(&mut out, &s.status["init"]);
    services(&mut out, &s.status["init"], s.admin);
    for (name, title) in [("net", "Network"), ("pxe", "PXE: DHCP, TFTP, HTTP")] {
        status_file(&mut out, title, &s.status["services"][name]);
    }
    out.push_str("</div>");
    nodes(&mut out, s);
    out.push_str("<div class=grid>");
    stack(&mut out, &s.stack);
    overlays(&mut out, &s.status["config"]);
    if let Some(files) = s.status["services"].as_object() {
        for (name, file) in files {
            if !matches!(name.as_str(), "net" | "pxe" | "stack") {
                status_file(&mut out, &format!("Status: {name}"), file);
            }
        }
    }
    section(&mut out, "API", &dl(&s.status["api"]));
    out.push_str("</div>");
    out
}

fn section(out: &mut String, title: &str, body: &str) {
    let _ = write!(out, "<section><h2>{}</h2>{body}</section>", esc(title));
}

fn summary(out: &mut String, s: &Snapshot) {
    let init = &s.status["init"];
    let health = match init["ready"].as_bool() {
        Some(true) => "<span class=ok>ready</span>".to_string(),
        Some(false) => format!(
            "<span class=bad>not ready</span> {}",
            esc(&join(&init["degraded"]))
        ),
        None => format!(
            "<span class=bad>init not answering</span> {}",
            esc(&text(&init["error"]))
        ),
    };
    let version = s.status["version"].as_str().unwrap_or_default();
    let update = &s.status["services"]["update"];
    let rows = [
        ("Health", health),
        (
            "Version",
            esc(if version.is_empty() {
                "not available"
            } else {
                version
            }),
        ),
        ("Slot", slot(update)),
        ("Update", update_state(update)),
        ("Site", esc(&text(&s.status["config"]["site_id"]))),
        (
            "API CA",
            format!(
                "<code>{}</code>",
                esc(&text(&s.status["api"]["ca_fingerprint"]))
            ),
        ),
    ];
    let mut body = String::from("<dl>");
    for (k, v) in rows {
        let _ = write!(body, "<dt>{k}</dt><dd>{v}</dd>");
    }
    body.push_str("</dl>");
    section(out, "Appliance", &body);
}

/// The slot the appliance booted from (the update agent's entry), or why
/// there is none.
fn slot(update: &Value) -> String {
    match (update["entry"].as_str(), update["mode"].as_str()) {
        (Some(entry), _) => format!("<code>{}</code>", esc(entry)),
        (None, Some(_)) => esc(&text(&update["detail"])),
        (None, None) => "not available (not booted from a disk's slots)".into(),
    }
}

/// The update agent's state, version floor and last result.
fn update_state(update: &Value) -> String {
    let Some(mode) = update["mode"].as_str() else {
        return "not available (no update agent on this boot)".into();
    };
    let mut out = match mode {
        "blessed" => format!("<span class=ok>{}</span>", esc(mode)),
        "gate_failed" | "unavailable" => format!("<span class=bad>{}</span>", esc(mode)),
        _ => esc(mode),
    };
    if let Some(floor) = update["floor"].as_str() {
        let _ = write!(out, ", floor {}", esc(floor));
    }
    if let Some(last) = update["last_result"].as_str() {
        let _ = write!(out, "; last: {}", esc(last));
    }
    out
}

fn phases(out: &mut String, init: &Value) {
    let rows = array(&init["phases"])
        .iter()
        .map(|p| {
            vec![
                esc(&text(&p["name"])),
                state(&p["state"]),
                esc(&p["ms"].as_u64().map(ms).unwrap_or_default()),
                esc(&text(&p["detail"])),
            ]
        })
        .collect::<Vec<_>>();
    section(
        out,
        "Boot phases",
        &table(&["phase", "state", "took", "detail"], &rows),
    );
}

fn services(out: &mut String, init: &Value, admin: bool) {
    let rows = array(&init["services"])
        .iter()
        .map(|v| {
            let name = text(&v["name"]);
            let mut row = vec![
                esc(&name),
                state(&v["state"]),
                esc(&text(&v["restarts"])),
                esc(&v["uptime_ms"].as_u64().map(ms).unwrap_or_default()),
                esc(&text(&v["user"])),
                esc(&text(&v["reason"])),
            ];
            if admin {
                row.push(action(
                    "POST",
                    &format!("/v1/services/{name}/restart"),
                    &format!("Restart service {name}?"),
                    None,
                    "restart",
                ));
            }
            row
        })
        .collect::<Vec<_>>();
    let mut cols = vec!["service", "state", "restarts", "uptime", "uid", "reason"];
    if admin {
        cols.push("");
    }
    section(out, "Services", &table(&cols, &rows));
}

fn nodes(out: &mut String, s: &Snapshot) {
    let list = match &s.nodes {
        Ok(list) => list,
        Err(e) => return section(out, "Nodes", &format!("<p class=bad>{}</p>", esc(e))),
    };
    let rows = array(&list["nodes"])
        .iter()
        .map(|n| {
            let mac = text(&n["mac"]);
            // The row flattens what the PXE service saw (`SeenNode`) into itself.
            let seen = n;
            let profile = n["assignment"]["profile"].as_str().unwrap_or_default();
            let choice = format!("{profile} ({})", text(&n["assignment"]["source"]));
            let last = array(&seen["events"]).last().map(|e| {
                format!(
                    "{} {}",
                    text(&e["event"]),
                    ago(s.now, e["at"].as_u64().unwrap_or(0))
                )
            });
            let alerts = array(&seen["alerts"])
                .iter()
                .map(|a| {
                    format!(
                        "{} ×{}: {}",
                        text(&a["kind"]),
                        text(&a["count"]),
                        text(&a["detail"])
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let mut row = vec![
                format!("<code>{}</code>", esc(&mac)),
                format!(
                    "<span class=node-state data-mac=\"{}\">{}</span>",
                    esc(&mac),
                    esc(&text(&n["state"]))
                ),
                esc(&choice),
                esc(&text(&seen["ip"])),
                esc(&last.unwrap_or_default()),
                esc(&text(&seen["grant"]["state"])),
                if alerts.is_empty() {
                    String::new()
                } else {
                    format!("<span class=bad>{}</span>", esc(&alerts))
                },
            ];
            if s.admin {
                row.push(format!(
                    "{} {}",
                    action(
                        "PUT",
                        &format!("/v1/nodes/{mac}/profile"),
                        &format!("Assign a profile to {mac}:"),
                        Some(profile),
                        "assign"
                    ),
                    action(
                        "POST",
                        &format!("/v1/nodes/{mac}/reprovision"),
                        &format!("Re-arm {mac}'s enrollment grant (reprovision)?"),
                        None,
                        "reprovision"
                    )
                ));
            }
            row
        })
        .collect::<Vec<_>>();
    let mut cols = vec![
        "MAC",
        "state",
        "profile",
        "address",
        "last event",
        "grant",
        "alerts",
    ];
    if s.admin {
        cols.push("");
    }
    let kv = match &list["kv"] {
        Value::Null => String::new(),
        kv => format!(
            "<p class=dim>assignments in Consul KV: {}</p>",
            esc(&text(kv))
        ),
    };
    let body = if rows.is_empty() {
        "<p class=dim>no nodes seen or configured</p>".to_string()
    } else {
        table(&cols, &rows)
    };
    section(out, "Nodes", &format!("{body}{kv}"));
}

fn stack(out: &mut String, stack: &Result<Value, String>) {
    let body = match stack {
        Err(e) => format!("<p class=dim>{}</p>", esc(e)),
        Ok(v) => {
            let rows = array(&v["steps"])
                .iter()
                .map(|step| {
                    vec![
                        esc(&text(&step["name"])),
                        state(&step["state"]),
                        esc(&step["duration_ms"].as_u64().map(ms).unwrap_or_default()),
                        esc(&format!(
                            "{} {}",
                            text(&step["detail"]),
                            text(&step["error"])
                        )),
                    ]
                })
                .collect::<Vec<_>>();
            format!(
                "<p>{} after {}</p>{}",
                state(&v["state"]),
                esc(&v["elapsed_ms"].as_u64().map(ms).unwrap_or_default()),
                table(&["step", "state", "took", "detail"], &rows)
            )
        }
    };
    section(out, "Stack bootstrap", &body);
}

fn overlays(out: &mut String, report: &Value) {
    if report.is_null() {
        return section(out, "Overlays", "<p class=dim>no config report yet</p>");
    }
    let accepted = array(&report["accepted"])
        .iter()
        .map(|a| {
            ["name", "version", "layer", "source", "key_id", "expires"]
                .iter()
                .map(|k| esc(&text(&a[*k])))
                .collect()
        })
        .collect::<Vec<_>>();
    let refused = array(&report["refused"])
        .iter()
        .map(|r| {
            vec![
                esc(&text(&r["file"])),
                esc(&text(&r["name"])),
                esc(&text(&r["source"])),
                format!("<span class=bad>{}</span>", esc(&text(&r["reason"]))),
            ]
        })
        .collect::<Vec<_>>();
    let mut body = table(
        &["accepted", "version", "layer", "source", "key", "expires"],
        &accepted,
    );
    if !refused.is_empty() {
        body.push_str(&table(&["refused", "name", "source", "reason"], &refused));
    }
    for note in array(&report["notes"]) {
        let _ = write!(body, "<p class=dim>{}</p>", esc(&text(note)));
    }
    section(out, "Overlays", &body);
}

/// A service's status file, as a definition list (absent: says so).
fn status_file(out: &mut String, title: &str, file: &Value) {
    let body = if file.is_null() {
        "<p class=dim>not reported</p>".to_string()
    } else {
        dl(file)
    };
    section(out, title, &body);
}

/// Any JSON object as a definition list; an object of plain values reads
/// as one wrapped line (`acks 1 · offers 1`), an object of those as one
/// such line per key, deeper ones nest; arrays of
/// plain values are joined, other arrays become one line per element.
fn dl(value: &Value) -> String {
    let Some(map) = value.as_object() else {
        return esc(&text(value));
    };
    let mut out = String::from("<dl>");
    for (k, v) in map {
        let dd = match v {
            Value::Object(inner) if plain(inner) => inline(inner),
            // Counters by name (`nat_counters`: bytes and packets each):
            // one line per name, so they do not nest into a narrow column.
            Value::Object(inner) if inner.values().all(|i| i.as_object().is_some_and(plain)) => {
                inner
                    .iter()
                    .map(|(name, i)| {
                        let fields = i.as_object().map(inline).unwrap_or_default();
                        format!("{}: {fields}", esc(name))
                    })
                    .collect::<Vec<_>>()
                    .join("<br>")
            }
            Value::Object(_) => dl(v),
            Value::Array(items) if items.iter().all(|i| !i.is_object()) => esc(&join(v)),
            Value::Array(items) => items
                .iter()
                .map(|i| esc(&text(i)))
                .collect::<Vec<_>>()
                .join("<br>"),
            v => esc(&text(v)),
        };
        let _ = write!(out, "<dt>{}</dt><dd>{dd}</dd>", esc(k));
    }
    out.push_str("</dl>");
    out
}

/// An object of plain values only (no object or array inside).
fn plain(map: &serde_json::Map<String, Value>) -> bool {
    map.values().all(|v| !v.is_object() && !v.is_array())
}

/// `key value · key value`, keys dimmed.
fn inline(map: &serde_json::Map<String, Value>) -> String {
    map.iter()
        .map(|(k, v)| format!("<span class=dim>{}</span> {}", esc(k), esc(&text(v))))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A table; `rows` are already HTML. No rows: says so.
fn table(cols: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "<p class=dim>none reported</p>".to_string();
    }
    let mut out = String::from("<table><tr>");
    for c in cols {
        let _ = write!(out, "<th>{}</th>", esc(c));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

/// A button the script turns into a confirmed request to a /v1 endpoint.
fn action(method: &str, path: &str, confirm: &str, profile: Option<&str>, label: &str) -> String {
    let profile = profile
        .map(|p| format!(" data-profile=\"{}\"", esc(p)))
        .unwrap_or_default();
    format!(
        "<button type=button data-method={method} data-path=\"{}\" data-confirm=\"{}\"{profile}>{}</button>",
        esc(path),
        esc(confirm),
        esc(label)
    )
}

fn state(v: &Value) -> String {
    let s = text(v);
    let class = match s.as_str() {
        "ready" | "running" | "done" | "already_done" | "joined" | "installed" => "ok",
        "failed" | "stopped" | "backoff" | "fatal" | "left" => "bad",
        _ => "",
    };
    format!("<span class=\"{class}\">{}</span>", esc(&s))
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A scalar as text; anything else as compact JSON; null as nothing.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn join(v: &Value) -> String {
    array(v).iter().map(text).collect::<Vec<_>>().join(", ")
}

fn ms(ms: u64) -> String {
    if ms < 10_000 {
        format!("{ms} ms")
    } else if ms < 600_000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{} min", ms / 60_000)
    }
}

fn ago(now: u64, at: u64) -> String {
    if at == 0 {
        return String::new();
    }
    match now.saturating_sub(at) {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s => format!("{} h ago", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snapshot(admin: bool) -> Snapshot {
        Snapshot {
            status: json!({
                "version": "",
                "init": {"ready": false, "degraded": ["stack"], "phases": [{"name": "net", "state": "done", "ms": 12}],
                         "services": [{"name": "pxe", "state": "running", "restarts": 1, "uptime_ms": 5000, "user": 990}]},
                "config": {"site_id": "lab", "accepted": [], "refused": [{"file": "x.kovl", "reason": "<script>alert(1)</script>"}]},
                "services": {"net": {"uplink": {"lease": "10.0.2.15/24"}},
                             "pxe": {"counters": {"dhcp_acks": 3, "<x>": 1}}},
                "api": {"ca_fingerprint": "sha256:ab"}
            }),
            nodes: Ok(
                json!({"nodes": [{"mac": "52:54:00:00:00:01", "state": "booting",
                "assignment": {"source": "site", "profile": "worker\"><img src=x>"},
                "ip": "10.77.0.9", "events": [{"at": 90, "event": "booted"}],
                "alerts": [{"kind": "grant_reused", "count": 2, "detail": "d"}]}]}),
            ),
            stack: Err("not reported".into()),
            operator: "ro<b>".into(),
            admin,
            now: 100,
        }
    }

    #[test]
    fn everything_from_the_lan_or_overlays_is_escaped() {
        let html = page(&snapshot(true), "c\"srf");
        for raw in ["<script>alert(1)", "<img src=x>", "ro<b>", "c\"srf"] {
            assert!(!html.contains(raw), "{raw} not escaped");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("worker&quot;&gt;&lt;img src=x&gt;"));
        assert!(html.contains("grant_reused ×2: d"));
        assert!(html.contains("booted 10 s ago"));
        assert!(html.contains("10.0.2.15/24"));
        assert!(html.contains("<td>10.77.0.9</td>"));
        assert!(
            html.contains("<span class=dim>dhcp_acks</span> 3"),
            "{html}"
        );
        assert!(html.contains("<span class=dim>&lt;x&gt;</span> 1"));
        assert!(html.contains("not available"));
    }

    #[test]
    fn actions_only_for_the_admin_role() {
        let read = fragment(&snapshot(false));
        assert!(!read.contains("<button"), "{read}");
        let admin = fragment(&snapshot(true));
        assert!(admin.contains("data-path=\"/v1/nodes/52:54:00:00:00:01/reprovision\""));
        assert!(admin.contains("data-path=\"/v1/services/pxe/restart\""));
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_style_and_script() {
        let csp = content_security_policy();
        assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"));
        assert!(csp.contains("connect-src 'self'"));
        assert!(!csp.contains("unsafe"));
    }

    #[test]
    fn the_update_agent_s_slot_and_state_are_shown() {
        let update = json!({"mode": "blessed", "entry": "kindling-1.2.efi",
            "floor": "1.2", "last_result": "blessed 1.2 <b>", "detail": "d"});
        assert_eq!(slot(&update), "<code>kindling-1.2.efi</code>");
        assert_eq!(
            update_state(&update),
            "<span class=ok>blessed</span>, floor 1.2; last: blessed 1.2 &lt;b&gt;"
        );
        let iso = json!({"mode": "not_from_disk", "detail": "booted from the ISO"});
        assert_eq!(slot(&iso), "booted from the ISO");
        assert_eq!(update_state(&iso), "not_from_disk");
        assert!(slot(&Value::Null).starts_with("not available"));
        assert!(update_state(&Value::Null).starts_with("not available"));
    }

    #[test]
    fn counters_by_name_read_one_line_each() {
        let html = dl(
            &json!({"nat": {"masq": {"bytes": 1, "packets": 2}, "drop": {"bytes": 0, "packets": 0}}}),
        );
        assert!(
            html.contains("<dd>drop: <span class=dim>bytes</span> 0 · <span class=dim>packets</span> 0<br>masq: "),
            "{html}"
        );
        assert_eq!(html.matches("<dl>").count(), 1, "{html}");
    }
}
