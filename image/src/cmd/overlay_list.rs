//! `kindling overlay list`: the overlays a running appliance uses and
//! refused, from `GET /v1/overlays` (the last config report and the
//! recorded state), as a table or the API's JSON.

use super::client::{Session, Target};
use super::table::{cell, wire_name, Table};
use kindling_api::overlays::{OverlayList, StateView};

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn list(args: ListArgs) -> anyhow::Result<()> {
    let body = Session::open(&args.target)?.get("/v1/overlays")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let list: OverlayList = serde_json::from_value(body)
        .map_err(|e| anyhow::anyhow!("GET /v1/overlays: unexpected reply: {e}"))?;
    print!("{}", table(&list));
    Ok(())
}

/// Accepted overlays in merge order, then refused ones with their reason,
/// then the recorded version floors.
pub fn table(list: &OverlayList) -> String {
    let mut table = Table::new(&[
        "NAME", "VERSION", "LAYER", "SOURCE", "KEY", "EXPIRES", "STATUS",
    ]);
    let Some(report) = &list.report else {
        return "no config report yet (the config phase has not run)\n".into();
    };
    for a in &report.accepted {
        table.row(vec![
            a.name.clone(),
            a.version.to_string(),
            a.layer.as_str().into(),
            cell(wire_name(&a.source)),
            a.key_id.clone(),
            a.expires.clone(),
            "accepted".into(),
        ]);
    }
    for r in &report.refused {
        table.row(vec![
            cell(r.name.as_deref()),
            cell(r.version),
            "-".into(),
            cell(wire_name(&r.source)),
            "-".into(),
            "-".into(),
            format!("refused: {}", r.reason),
        ]);
    }
    let mut out = table.render();
    if !report.ok {
        out.push_str("no valid site configuration: running on image defaults only\n");
    }
    match &list.state {
        StateView::State(state) if !state.floors.is_empty() => {
            let floors: Vec<String> = state
                .floors
                .iter()
                .map(|(name, v)| format!("{name} ≥ v{v}"))
                .collect();
            out.push_str(&format!("version floors: {}\n", floors.join(", ")));
        }
        StateView::State(_) => {}
        StateView::Unreadable { error } => {
            out.push_str(&format!("recorded state unreadable: {error}\n"))
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn accepted_and_refused_overlays_each_get_a_row() {
        let list: OverlayList = serde_json::from_value(serde_json::json!({
            "report": {
                "generated_at": "2026-01-01T00:00:00Z", "site_id": "lab", "ok": true,
                "accepted": [{"name": "lab", "version": 3, "layer": "site", "site_id": "lab",
                    "source": "boot_media", "file": "lab.kovl", "key_id": "ABCD",
                    "expires": "2027-01-01T00:00:00Z"}],
                "refused": [{"file": "old.kovl", "name": "lab", "version": 1,
                    "source": "pushed", "reason": "rollback refused"}],
                "notes": []
            },
            "state": {"floors": {"lab": 3}}
        }))
        .unwrap();
        let text = table(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME  VERSION  LAYER"), "{text}");
        assert!(
            lines[1].contains("boot_media") && lines[1].ends_with("accepted"),
            "{text}"
        );
        assert!(lines[2].ends_with("refused: rollback refused"), "{text}");
        assert_eq!(lines[3], "version floors: lab ≥ v3");
    }
}
