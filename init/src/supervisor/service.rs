//! One supervised service: its spec and where it is in its lifecycle.
//!
//! Owns the lifecycle as one enum whose variants carry exactly the data that
//! state needs (a process only while one runs, a restart time only in backoff,
//! a reason only where one is reported), so contradictory combinations cannot
//! be represented. It only describes; the supervisor makes the transitions and
//! touches processes.

use std::time::{Duration, Instant};

use kindling_init_protocol::control::ServiceState;
use kindling_init_protocol::table::ServiceSpec;

use super::readiness::ProbeHandle;
use crate::backoff::Backoff;

/// After this many consecutive failures a service is in a crash loop: it
/// counts as settled for boot and its restarts are logged sparsely.
pub(super) const CRASH_LOOP: u32 = 5;

/// Whether the restart after `failures` quick exits in a row is logged: all of
/// the first few, then only the 8th, 16th, 32nd, ... so a crash loop cannot
/// flood the console (with the 30 s backoff cap, at most one line per ~minutes).
pub fn restart_is_logged(failures: u32) -> bool {
    failures <= CRASH_LOOP || failures.is_power_of_two()
}

/// The contract's word for a state.
pub fn state_word(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Waiting => "waiting",
        ServiceState::Starting => "starting",
        ServiceState::Running => "running",
        ServiceState::Exited => "exited",
        ServiceState::Backoff => "restarting",
        ServiceState::Failed => "failed",
        ServiceState::NotInstalled => "not_installed",
        ServiceState::Stopping => "stopping",
        ServiceState::Stopped => "stopped",
    }
}

/// A running main process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Proc {
    pub pid: i32,
    /// Which start of the service this is; readiness signals name it, so a
    /// late signal from an earlier process is ignored.
    pub generation: u64,
    pub since: Instant,
}

/// Why a running service is being stopped.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum StopIntent {
    /// Shutdown: stop after every dependent is down.
    Shutdown,
    /// Restart on request, right away.
    Restart,
    /// Removed from the table on reload: stop after its dependents, then forget it.
    Remove,
    /// Changed on reload: stop, then start with the new spec.
    Replace(Box<ServiceSpec>),
    /// Stop and leave stopped (e.g. the config command ran too long).
    Stop,
}

impl StopIntent {
    /// SIGTERM waits until no dependent runs any more.
    pub fn waits_for_dependents(&self) -> bool {
        matches!(self, StopIntent::Shutdown | StopIntent::Remove)
    }
}

/// Where a service is in its lifecycle.
pub(super) enum Lifecycle {
    /// Not started: its phase has not come or its dependencies are not ready.
    Waiting,
    /// Running, not ready yet; a tcp/http readiness check runs until its
    /// handle is dropped with this state.
    Starting {
        proc: Proc,
        _probe: Option<ProbeHandle>,
    },
    /// Running and ready.
    Ready { proc: Proc },
    /// To be stopped, SIGTERM not sent yet (it waits for the dependents).
    Draining {
        proc: Proc,
        ready: bool,
        intent: StopIntent,
    },
    /// SIGTERM sent; SIGKILL is due at `kill_at` (`None`: already sent).
    Stopping {
        proc: Proc,
        intent: StopIntent,
        kill_at: Option<Instant>,
    },
    /// Exited; starts again at `until` (when its dependencies are ready).
    Backoff { until: Instant, reason: String },
    /// A one-shot that finished successfully: counts as ready.
    Done,
    /// Exited successfully and not restarted (restart policy).
    Exited { reason: String },
    /// Exited or could not be started, and is not restarted.
    Failed { reason: String },
    /// Its program is not in this image.
    NotInstalled { reason: String },
    /// Stopped on request (shutdown, `stop`).
    Stopped,
    /// Stopped after removal from the table; dropped at the end of the tick.
    Removed,
}

/// One service.
pub(super) struct Service {
    pub spec: ServiceSpec,
    /// Not part of the service table (the config command).
    pub internal: bool,
    /// Its phase has come: may start when its dependencies are ready.
    pub enabled: bool,
    pub life: Lifecycle,
    /// Times it was started again after its first start.
    pub restarts: u32,
    pub backoff: Backoff,
    /// The last once-per-cause line logged (blocked by a dependency, not
    /// installed), so a service waiting for the same thing says it once.
    pub noted: Option<String>,
}

impl Service {
    pub fn new(spec: ServiceSpec, internal: bool) -> Service {
        Service {
            spec,
            internal,
            enabled: false,
            life: Lifecycle::Waiting,
            restarts: 0,
            backoff: Backoff::default(),
            noted: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The main process, while one runs.
    pub fn proc(&self) -> Option<Proc> {
        match &self.life {
            Lifecycle::Starting { proc, .. }
            | Lifecycle::Ready { proc }
            | Lifecycle::Draining { proc, .. }
            | Lifecycle::Stopping { proc, .. } => Some(*proc),
            Lifecycle::Waiting
            | Lifecycle::Backoff { .. }
            | Lifecycle::Done
            | Lifecycle::Exited { .. }
            | Lifecycle::Failed { .. }
            | Lifecycle::NotInstalled { .. }
            | Lifecycle::Stopped
            | Lifecycle::Removed => None,
        }
    }

    pub fn pid(&self) -> Option<i32> {
        self.proc().map(|p| p.pid)
    }

    /// Ready: running and ready, or a one-shot that finished.
    pub fn ready(&self) -> bool {
        match &self.life {
            Lifecycle::Ready { .. } | Lifecycle::Done => true,
            Lifecycle::Draining { ready, .. } => *ready,
            _ => false,
        }
    }

    /// The contract's state.
    pub fn state(&self) -> ServiceState {
        match &self.life {
            Lifecycle::Waiting => ServiceState::Waiting,
            Lifecycle::Starting { .. } => ServiceState::Starting,
            Lifecycle::Ready { .. } => ServiceState::Running,
            Lifecycle::Draining { ready: true, .. } => ServiceState::Running,
            Lifecycle::Draining { ready: false, .. } => ServiceState::Starting,
            Lifecycle::Stopping { .. } => ServiceState::Stopping,
            Lifecycle::Backoff { .. } => ServiceState::Backoff,
            Lifecycle::Done | Lifecycle::Exited { .. } => ServiceState::Exited,
            Lifecycle::Failed { .. } => ServiceState::Failed,
            Lifecycle::NotInstalled { .. } => ServiceState::NotInstalled,
            Lifecycle::Stopped | Lifecycle::Removed => ServiceState::Stopped,
        }
    }

    /// Why it is not running or not ready, where the state carries a reason.
    pub fn reason(&self) -> Option<&str> {
        match &self.life {
            Lifecycle::Backoff { reason, .. }
            | Lifecycle::Exited { reason }
            | Lifecycle::Failed { reason }
            | Lifecycle::NotInstalled { reason } => Some(reason),
            _ => None,
        }
    }

    /// Crash-looping services log only some of their restarts.
    pub fn quiet(&self) -> bool {
        !restart_is_logged(self.backoff.failures())
    }

    /// Will not become ready without outside help (or is ready).
    pub fn settled(&self) -> bool {
        self.ready()
            || match &self.life {
                Lifecycle::NotInstalled { .. }
                | Lifecycle::Failed { .. }
                | Lifecycle::Done
                | Lifecycle::Exited { .. }
                | Lifecycle::Stopped
                | Lifecycle::Removed => true,
                Lifecycle::Backoff { .. } => self.backoff.failures() >= CRASH_LOOP,
                _ => false,
            }
    }

    /// How long the current process has run.
    pub fn uptime(&self, now: Instant) -> Duration {
        self.proc()
            .map(|p| now.saturating_duration_since(p.since))
            .unwrap_or_default()
    }

    /// The lifecycle, leaving `Waiting` in its place until the caller sets the next one.
    pub fn take_life(&mut self) -> Lifecycle {
        std::mem::replace(&mut self.life, Lifecycle::Waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(life: Lifecycle) -> Service {
        let mut s = Service::new(ServiceSpec::new("svc", &["/bin/true"]), false);
        s.life = life;
        s
    }

    #[test]
    fn each_state_reads_as_the_contract_says() {
        let now = Instant::now();
        let proc = Proc {
            pid: 42,
            generation: 1,
            since: now,
        };
        let reason = || "exited with status 1".to_string();
        // (lifecycle, state, ready, settled, has a process, has a reason)
        let cases = [
            (
                Lifecycle::Waiting,
                ServiceState::Waiting,
                false,
                false,
                false,
                false,
            ),
            (
                Lifecycle::Starting { proc, _probe: None },
                ServiceState::Starting,
                false,
                false,
                true,
                false,
            ),
            (
                Lifecycle::Ready { proc },
                ServiceState::Running,
                true,
                true,
                true,
                false,
            ),
            (
                Lifecycle::Draining {
                    proc,
                    ready: true,
                    intent: StopIntent::Shutdown,
                },
                ServiceState::Running,
                true,
                true,
                true,
                false,
            ),
            (
                Lifecycle::Stopping {
                    proc,
                    intent: StopIntent::Stop,
                    kill_at: None,
                },
                ServiceState::Stopping,
                false,
                false,
                true,
                false,
            ),
            (
                Lifecycle::Backoff {
                    until: now,
                    reason: reason(),
                },
                ServiceState::Backoff,
                false,
                false,
                false,
                true,
            ),
            (
                Lifecycle::Done,
                ServiceState::Exited,
                true,
                true,
                false,
                false,
            ),
            (
                Lifecycle::Exited { reason: reason() },
                ServiceState::Exited,
                false,
                true,
                false,
                true,
            ),
            (
                Lifecycle::Failed { reason: reason() },
                ServiceState::Failed,
                false,
                true,
                false,
                true,
            ),
            (
                Lifecycle::NotInstalled { reason: reason() },
                ServiceState::NotInstalled,
                false,
                true,
                false,
                true,
            ),
            (
                Lifecycle::Stopped,
                ServiceState::Stopped,
                false,
                true,
                false,
                false,
            ),
        ];
        for (life, state, ready, settled, running, has_reason) in cases {
            let s = with(life);
            assert_eq!(s.state(), state);
            assert_eq!(s.ready(), ready, "{state:?}");
            assert_eq!(s.settled(), settled, "{state:?}");
            assert_eq!(s.pid().is_some(), running, "{state:?}");
            assert_eq!(s.reason().is_some(), has_reason, "{state:?}");
        }
    }

    #[test]
    fn a_crash_loop_in_backoff_counts_as_settled() {
        let mut s = with(Lifecycle::Backoff {
            until: Instant::now(),
            reason: "crash loop".into(),
        });
        for _ in 0..CRASH_LOOP {
            assert!(!s.settled());
            s.backoff.next_delay(Duration::ZERO);
        }
        assert!(s.settled());
    }
}
