//! The dashboard's "last events": what changed between two snapshots
//! (a service's state or restarts, readiness, node counts by state, new
//! node alerts), kept in a short list. The dashboard sees them because it
//! looks every interval; it needs no log access for them.

use super::snapshot::Snapshot;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

/// Events kept; the screen shows as many as fit.
const KEPT: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unix seconds.
    pub at: u64,
    pub text: String,
}

#[derive(Debug, Default)]
pub struct EventLog {
    events: VecDeque<Event>,
}

/// A serde enum's wire name (`running`, `backoff`).
fn name_of(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => "?".into(),
    }
}

/// Node counts by state from the PXE status file.
pub fn node_counts(pxe: &Value) -> BTreeMap<String, u64> {
    pxe.get("inventory")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)))
                .collect()
        })
        .unwrap_or_default()
}

/// The PXE status file's node alerts, one line each.
pub fn alerts(pxe: &Value) -> Vec<String> {
    pxe.get("alerts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl EventLog {
    /// Newest first.
    pub fn latest(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().rev()
    }

    fn push(&mut self, at: u64, text: String) {
        self.events.push_back(Event { at, text });
        while self.events.len() > KEPT {
            self.events.pop_front();
        }
    }

    /// Records what changed from `before` (none: the first look) to `now`.
    pub fn observe(&mut self, before: Option<&Snapshot>, now: &Snapshot) {
        let at = now.now;
        let Some(before) = before else {
            self.push(at, "dashboard started".into());
            return;
        };
        match (&before.init, &now.init) {
            (Ok(b), Ok(n)) => {
                for s in &n.services {
                    match b.services.iter().find(|o| o.name == s.name) {
                        None => self.push(at, format!("{}: {}", s.name, name_of(&s.state))),
                        Some(o) if s.restarts > o.restarts => {
                            let why = s.reason.as_deref().unwrap_or("");
                            self.push(at, format!("{} restarted (#{}) {why}", s.name, s.restarts));
                        }
                        Some(o) if o.state != s.state => self.push(
                            at,
                            format!("{}: {} -> {}", s.name, name_of(&o.state), name_of(&s.state)),
                        ),
                        Some(_) => {}
                    }
                }
                if n.ready && !b.ready {
                    self.push(at, "appliance ready".into());
                }
                for d in n.degraded.iter().filter(|d| !b.degraded.contains(d)) {
                    self.push(at, format!("degraded: {d}"));
                }
            }
            (Ok(_), Err(e)) => self.push(at, format!("init not answering: {e}")),
            (Err(_), Ok(_)) => self.push(at, "init answering again".into()),
            (Err(_), Err(_)) => {}
        }
        let (b, n) = (node_counts(&before.pxe), node_counts(&now.pxe));
        for (state, count) in &n {
            let old = b.get(state).copied().unwrap_or(0);
            if *count != old {
                self.push(at, format!("nodes {state}: {old} -> {count}"));
            }
        }
        let old_alerts = alerts(&before.pxe);
        for a in alerts(&now.pxe)
            .into_iter()
            .filter(|a| !old_alerts.contains(a))
        {
            self.push(at, format!("alert: {a}"));
        }
    }
}
