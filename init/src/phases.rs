//! The boot phases as data: their names, order, and what each one recorded.
//!
//! Owns the phase book (state, duration, one-line detail per phase) that the
//! console and the control socket report. It never runs a phase itself.

use std::time::Instant;

use crate::control::{PhaseState, PhaseStatus};

/// The phases, in boot order (DESIGN.md).
pub const PHASES: [&str; 6] = ["early", "state", "config", "network", "services", "run"];

struct Record {
    state: PhaseState,
    started: Option<Instant>,
    ms: u64,
    detail: String,
}

/// What happened in each phase so far.
pub struct PhaseBook {
    records: Vec<Record>,
}

impl Default for PhaseBook {
    fn default() -> PhaseBook {
        PhaseBook {
            records: PHASES
                .iter()
                .map(|_| Record {
                    state: PhaseState::Pending,
                    started: None,
                    ms: 0,
                    detail: String::new(),
                })
                .collect(),
        }
    }
}

impl PhaseBook {
    fn record(&mut self, phase: &str) -> Option<&mut Record> {
        let i = PHASES.iter().position(|p| *p == phase)?;
        self.records.get_mut(i)
    }

    /// Marks `phase` running.
    pub fn begin(&mut self, phase: &str, now: Instant) {
        if let Some(r) = self.record(phase) {
            r.state = PhaseState::Running;
            r.started = Some(now);
        }
    }

    /// Marks `phase` finished with `state` and logs it.
    pub fn finish(&mut self, phase: &str, state: PhaseState, detail: String, now: Instant) {
        if let Some(r) = self.record(phase) {
            r.ms = r
                .started
                .map(|t| now.saturating_duration_since(t).as_millis() as u64)
                .unwrap_or(0);
            let word = match state {
                PhaseState::Done => "done",
                PhaseState::Degraded => "degraded",
                PhaseState::Skipped => "skipped",
                PhaseState::Running => "running",
                PhaseState::Pending => "pending",
            };
            crate::say!(phase, "{word} in {} ms: {detail}", r.ms);
            r.state = state;
            r.detail = detail;
        }
    }

    /// `<phase>: <detail>` for every degraded phase.
    pub fn degraded(&self) -> Vec<String> {
        PHASES
            .iter()
            .zip(&self.records)
            .filter(|(_, r)| r.state == PhaseState::Degraded)
            .map(|(name, r)| format!("{name}: {}", r.detail))
            .collect()
    }

    /// Status for the control socket.
    pub fn statuses(&self, now: Instant) -> Vec<PhaseStatus> {
        PHASES
            .iter()
            .zip(&self.records)
            .map(|(name, r)| PhaseStatus {
                name: name.to_string(),
                state: r.state,
                ms: if r.state == PhaseState::Running {
                    r.started
                        .map(|t| now.saturating_duration_since(t).as_millis() as u64)
                        .unwrap_or(0)
                } else {
                    r.ms
                },
                detail: r.detail.clone(),
            })
            .collect()
    }
}
