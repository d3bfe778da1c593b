//! What the supervisor reports: settled or not, why a service is blocked, the
//! degraded list and the control socket's service statuses.
//!
//! Owns the reading of service states into the contract's words. It never
//! changes a service or touches a process.

use std::time::Instant;

use kindling_init_protocol::control::{ProcessCredentials, ServiceState, ServiceStatus};
use kindling_init_protocol::table::Phase;

use super::service::{state_word, Service};
use super::Supervisor;

impl Supervisor {
    /// Whether every required table service of `phase` (all phases: `None`) is
    /// settled. Optional services never hold up the ready/degraded decision.
    pub fn settled(&self, phase: Option<Phase>) -> bool {
        self.services
            .iter()
            .filter(|s| !s.internal && s.spec.required && phase.is_none_or(|p| s.spec.phase == p))
            .all(|s| s.settled() || self.blocked_by(s).is_some())
    }

    /// A dependency that is settled without being ready, so `s` cannot start.
    pub(super) fn blocked_by(&self, s: &Service) -> Option<String> {
        if s.proc().is_some() || s.ready() {
            return None;
        }
        s.spec.depends_on.iter().find_map(|dep| {
            let d = self.find(dep)?;
            if d.ready() {
                return None;
            }
            if d.settled() || self.blocked_by(d).is_some() {
                Some(format!("dependency {dep} is {}", state_word(d.state())))
            } else {
                None
            }
        })
    }

    /// Problems that make the appliance degraded: `<service>: <why>`.
    pub fn degraded(&self, waited_long_enough: bool) -> Vec<String> {
        let mut out = Vec::new();
        for s in self
            .services
            .iter()
            .filter(|s| !s.internal && s.spec.required && s.enabled)
        {
            if s.ready() {
                continue;
            }
            let state = s.state();
            let why = match state {
                ServiceState::NotInstalled | ServiceState::Failed | ServiceState::Backoff => {
                    let word = state_word(state);
                    match s.reason() {
                        Some(r) => format!("{word}: {r}"),
                        None => word.to_string(),
                    }
                }
                ServiceState::Exited if s.spec.oneshot => continue,
                ServiceState::Waiting => match self.blocked_by(s) {
                    Some(b) => format!("not started: {b}"),
                    None if waited_long_enough => "waiting for its dependencies".to_string(),
                    None => continue,
                },
                ServiceState::Starting if waited_long_enough => "started but not ready".to_string(),
                ServiceState::Stopped | ServiceState::Stopping | ServiceState::Exited => {
                    state_word(state).to_string()
                }
                ServiceState::Starting | ServiceState::Running => continue,
            };
            out.push(format!("{}: {why}", s.name()));
        }
        out
    }

    /// Every service's status, table order.
    pub fn statuses(&self, now: Instant) -> Vec<ServiceStatus> {
        self.services
            .iter()
            .map(|s| ServiceStatus {
                name: s.name().to_string(),
                state: s.state(),
                pid: s.pid().map(|p| p as u32),
                restarts: s.restarts,
                uptime_ms: s.proc().map(|_| s.uptime(now).as_millis() as u64),
                ready: s.ready(),
                reason: s
                    .reason()
                    .map(str::to_string)
                    .or_else(|| self.blocked_by(s)),
                user: s.spec.user,
                capabilities: s.spec.capabilities.clone(),
                process: s.pid().and_then(|p| ProcessCredentials::of_pid(p as u32)),
            })
            .collect()
    }
}
