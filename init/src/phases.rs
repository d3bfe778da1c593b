//! The phase book: what each boot phase recorded (state, duration, detail).
//!
//! Owns the per-boot record of the phases listed in `BootPhase::ALL` (the one
//! phase table, in `kindling-init-protocol`) that the console and the control
//! socket report. It never runs a phase itself.

use std::time::Instant;

use kindling_init_protocol::control::{PhaseState, PhaseStatus};
use kindling_init_protocol::phase::{BootPhase, Runner};

#[derive(Clone)]
struct Record {
    state: PhaseState,
    started: Option<Instant>,
    ms: u64,
    detail: String,
}

/// What happened in each phase so far, indexed by `BootPhase::index`.
pub struct PhaseBook {
    records: [Record; BootPhase::ALL.len()],
}

impl Default for PhaseBook {
    fn default() -> PhaseBook {
        PhaseBook {
            records: std::array::from_fn(|_| Record {
                state: PhaseState::Pending,
                started: None,
                ms: 0,
                detail: String::new(),
            }),
        }
    }
}

/// The console word for a phase state.
pub fn state_word(state: PhaseState) -> &'static str {
    match state {
        PhaseState::Done => "done",
        PhaseState::Degraded => "degraded",
        PhaseState::Skipped => "skipped",
        PhaseState::Running => "running",
        PhaseState::Pending => "pending",
    }
}

impl PhaseBook {
    fn record(&mut self, phase: BootPhase) -> Option<&mut Record> {
        self.records.get_mut(phase.index())
    }

    /// Marks `phase` running.
    pub fn begin(&mut self, phase: BootPhase, now: Instant) {
        if let Some(r) = self.record(phase) {
            r.state = PhaseState::Running;
            r.started = Some(now);
        }
    }

    /// Marks `phase` finished with `state` and logs it.
    pub fn finish(&mut self, phase: BootPhase, state: PhaseState, detail: String, now: Instant) {
        if let Some(r) = self.record(phase) {
            r.ms = r
                .started
                .map(|t| now.saturating_duration_since(t).as_millis() as u64)
                .unwrap_or(0);
            crate::say!(phase, "{} in {} ms: {detail}", state_word(state), r.ms);
            r.state = state;
            r.detail = detail;
        }
    }

    /// `<phase>: <detail>` for every degraded phase, leaving out the phases
    /// that run table services: their detail repeats the service problems,
    /// which the supervisor reports one by one.
    pub fn degraded(&self) -> Vec<String> {
        BootPhase::ALL
            .iter()
            .zip(&self.records)
            .filter(|(phase, r)| {
                r.state == PhaseState::Degraded && !matches!(phase.runner(), Runner::Services(_))
            })
            .map(|(phase, r)| format!("{phase}: {}", r.detail))
            .collect()
    }

    /// Status for the control socket.
    pub fn statuses(&self, now: Instant) -> Vec<PhaseStatus> {
        BootPhase::ALL
            .iter()
            .zip(&self.records)
            .map(|(phase, r)| PhaseStatus {
                name: phase.name().to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_phase_table() {
        let mut book = PhaseBook::default();
        let now = Instant::now();
        book.begin(BootPhase::Config, now);
        book.finish(
            BootPhase::Config,
            PhaseState::Degraded,
            "no table".into(),
            now,
        );
        book.begin(BootPhase::Network, now);
        book.finish(
            BootPhase::Network,
            PhaseState::Degraded,
            "net: failed".into(),
            now,
        );
        let names: Vec<String> = book.statuses(now).into_iter().map(|s| s.name).collect();
        let table: Vec<&str> = BootPhase::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names, table);
        // The network phase's problems are reported per service, not twice.
        assert_eq!(book.degraded(), ["config: no table"]);
    }
}
