//! The supervisor: one state machine per service (start when dependencies are
//! ready, readiness, restart with backoff, stop in reverse dependency order).
//!
//! Owns service state and the processes it started. It is driven by init's run
//! loop (`tick`, `on_exit`, `on_readable`, `on_probe_ready`) and never blocks,
//! sleeps or reaps by itself: the loop reaps and hands exits in. Starting and
//! exits are here; `service` holds the lifecycle enum, `stopping` stops,
//! restarts and reloads, `status` answers what the loop and the control socket ask.

pub mod cgroup;
mod logrotate;
pub mod output;
pub mod readiness;
mod service;
pub mod service_logs;
pub mod spawn;
mod status;
mod stopping;
mod syslog;

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use kindling_init_protocol::control::ServiceState;
use kindling_init_protocol::table::{Phase, Readiness, RestartPolicy, ServiceSpec, ServiceTable};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

use crate::events::EventSender;
use crate::say;
use cgroup::Cgroups;
use output::{OutputHub, StreamEvent, StreamKind};
pub use service::{restart_is_logged, state_word};
use service::{Lifecycle, Proc, Service, CRASH_LOOP};
use spawn::SpawnError;

/// All services and their processes.
pub struct Supervisor {
    services: Vec<Service>,
    cgroups: Cgroups,
    output: OutputHub,
    events: EventSender,
    next_generation: u64,
    shutting_down: bool,
    log_check: logrotate::LogCheck,
}

impl Supervisor {
    pub fn new(
        cgroups: Cgroups,
        logs: service_logs::ServiceLogs,
        events: EventSender,
    ) -> Supervisor {
        Supervisor {
            services: Vec::new(),
            cgroups,
            output: OutputHub::new(logs),
            events,
            next_generation: 0,
            shutting_down: false,
            log_check: logrotate::LogCheck::default(),
        }
    }

    /// Adds a service (not started until its phase is enabled).
    pub fn add(&mut self, spec: ServiceSpec, internal: bool) {
        self.services.push(Service::new(spec, internal));
    }

    /// Where the services' output is kept, for init's status.
    pub fn logs_status(&self) -> kindling_init_protocol::control::LogsStatus {
        self.output.logs_status()
    }

    /// Applies a table's bound on the output logs (none: keeps the current one).
    pub fn set_log_limits(&mut self, table: &ServiceTable) {
        if let Some(limits) = table.output_logs {
            self.output.logs().set_limits(limits);
        }
        self.output.logs().set_syslog(
            table.syslog,
            table.hostname.as_deref().unwrap_or("kindling"),
        );
    }

    /// Adds every service of a table.
    pub fn add_table(&mut self, table: &ServiceTable) {
        for spec in &table.services {
            self.add(spec.clone(), false);
        }
    }

    /// Lets the services of `phase` start.
    ///
    /// A service that is not required and that no required service needs
    /// (directly or through others) is held back until the boot is decided
    /// ([`enable_deferred`](Self::enable_deferred)): on a one-CPU box its
    /// start would only slow the services the boot waits for.
    pub fn enable_phase(&mut self, phase: Phase) {
        let needed = self.needed_by_required();
        for s in self
            .services
            .iter_mut()
            .filter(|s| !s.internal && s.spec.phase == phase)
        {
            if s.spec.required || needed.contains(s.name()) {
                s.enabled = true;
            }
        }
    }

    /// Lets every table service start: the boot is decided.
    pub fn enable_deferred(&mut self) {
        for s in self.services.iter_mut().filter(|s| !s.internal) {
            s.enabled = true;
        }
    }

    /// Names of the services some required service depends on, transitively.
    fn needed_by_required(&self) -> std::collections::HashSet<String> {
        let mut needed = std::collections::HashSet::new();
        let mut todo: Vec<&str> = self
            .services
            .iter()
            .filter(|s| !s.internal && s.spec.required)
            .flat_map(|s| s.spec.depends_on.iter().map(String::as_str))
            .collect();
        while let Some(name) = todo.pop() {
            if needed.insert(name.to_string()) {
                if let Some(s) = self.find(name) {
                    todo.extend(s.spec.depends_on.iter().map(String::as_str));
                }
            }
        }
        needed
    }

    /// Lets one service start (the internal config command).
    pub fn enable(&mut self, name: &str) {
        if let Some(s) = self.find_mut(name) {
            s.enabled = true;
        }
    }

    fn find(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name() == name)
    }

    fn find_mut(&mut self, name: &str) -> Option<&mut Service> {
        self.services.iter_mut().find(|s| s.name() == name)
    }

    /// Number of table services (internal ones not counted).
    pub fn table_len(&self) -> usize {
        self.services.iter().filter(|s| !s.internal).count()
    }

    /// State of one service.
    pub fn state_of(&self, name: &str) -> Option<ServiceState> {
        self.find(name).map(Service::state)
    }

    /// Rotates every running service's bounded files that outgrew their
    /// bound, and tells the service to reopen them.
    fn rotate_logs(&self) {
        for s in &self.services {
            let Some(pid) = s.pid() else { continue };
            for limit in &s.spec.logs {
                match logrotate::rotate_if_large(limit) {
                    Ok(false) => {}
                    Ok(true) => {
                        let signal = limit
                            .signal()
                            .ok()
                            .and_then(|n| Signal::try_from(n).ok())
                            .unwrap_or(Signal::SIGHUP);
                        if let Err(e) =
                            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
                        {
                            say!(
                                s.name(),
                                "rotated {}, but could not send {signal}: {e}",
                                limit.path
                            );
                        }
                    }
                    Err(e) => say!(s.name(), "cannot rotate {}: {e}", limit.path),
                }
            }
        }
    }

    /// Fds the run loop polls for the supervisor.
    pub fn poll_fds(&self) -> Vec<RawFd> {
        self.output.fds()
    }

    /// Earliest time `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.services
            .iter()
            .filter_map(|s| match &s.life {
                Lifecycle::Backoff { until, .. } => Some(*until),
                Lifecycle::Stopping { kill_at, .. } => *kill_at,
                _ => None,
            })
            .min()
    }

    /// Starts what may start, restarts what waited out its backoff, escalates stops.
    pub fn tick(&mut self, now: Instant) {
        for i in 0..self.services.len() {
            self.tick_one(i, now);
        }
        if self.log_check.due(now) {
            self.rotate_logs();
        }
        self.services
            .retain(|s| !matches!(s.life, Lifecycle::Removed));
    }

    fn tick_one(&mut self, i: usize, now: Instant) {
        let s = &self.services[i];
        match &s.life {
            Lifecycle::Draining { intent, .. } => {
                if !intent.waits_for_dependents() || !self.has_running_dependent(i) {
                    self.send_term(i, now);
                }
                return;
            }
            Lifecycle::Stopping {
                proc,
                kill_at: Some(kill_at),
                ..
            } if now >= *kill_at => {
                let pid = proc.pid;
                say!(
                    s.name(),
                    "did not stop within {} ms of SIGTERM; sending SIGKILL",
                    s.spec.stop_grace_ms
                );
                let name = s.name().to_string();
                if let Lifecycle::Stopping { kill_at, .. } = &mut self.services[i].life {
                    // SIGKILL cannot be caught: no further escalation.
                    *kill_at = None;
                }
                self.cgroups.signal(&name, Some(pid), Signal::SIGKILL);
                return;
            }
            _ => {}
        }
        if self.shutting_down || !s.enabled {
            return;
        }
        match &s.life {
            Lifecycle::Waiting => {
                if self.deps_ready(i) {
                    self.start(i, now);
                } else if let Some(blocked) = self.blocked_by(&self.services[i]) {
                    let s = &mut self.services[i];
                    if s.noted.as_deref() != Some(blocked.as_str()) {
                        say!(s.name(), "not started: {blocked}");
                        s.noted = Some(blocked);
                    }
                }
            }
            Lifecycle::Backoff { until, .. } if now >= *until && self.deps_ready(i) => {
                let s = &mut self.services[i];
                s.restarts = s.restarts.saturating_add(1);
                self.start(i, now);
            }
            _ => {}
        }
    }

    fn deps_ready(&self, i: usize) -> bool {
        self.services[i]
            .spec
            .depends_on
            .iter()
            .all(|d| self.find(d).is_some_and(Service::ready))
    }

    fn start(&mut self, i: usize, now: Instant) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let cgroups = self.cgroups.clone();
        let s = &mut self.services[i];
        let cgroup_procs = match cgroups.create(s.name()) {
            Ok(f) => f,
            Err(e) => {
                say!(s.name(), "running without its own cgroup: {e}");
                None
            }
        };
        let notify = s.spec.readiness == Readiness::Notify;
        match spawn::spawn(&s.spec, cgroup_procs.as_ref(), notify) {
            Ok(child) => {
                let name = s.name().to_string();
                let probe = match &s.spec.readiness {
                    Readiness::Tcp { .. } | Readiness::Http { .. } => {
                        readiness::start(&name, generation, &s.spec.readiness, &self.events)
                    }
                    Readiness::Started | Readiness::Notify | Readiness::Exited => None,
                };
                s.life = Lifecycle::Starting {
                    proc: Proc {
                        pid: child.pid,
                        generation,
                        since: now,
                    },
                    _probe: probe,
                };
                s.noted = None;
                if !s.quiet() {
                    say!(&name, "started (pid {})", child.pid);
                }
                let ready_at_once = s.spec.readiness == Readiness::Started;
                for fd in [child.stdout, child.stderr].into_iter().flatten() {
                    self.output.add(&name, generation, StreamKind::Output, fd);
                }
                if let Some(fd) = child.notify {
                    self.output.add(&name, generation, StreamKind::Notify, fd);
                }
                if ready_at_once {
                    self.mark_ready(i, now);
                }
            }
            Err(SpawnError::NotInstalled(program)) => {
                let reason = format!("{program} is not in this image");
                if s.noted.as_deref() != Some(reason.as_str()) {
                    say!(
                        s.name(),
                        "not installed: {reason}; the other services keep running"
                    );
                    s.noted = Some(reason.clone());
                }
                s.life = Lifecycle::NotInstalled { reason };
                cgroups.remove(s.name());
            }
            Err(e) => {
                let reason = format!("cannot start: {e}");
                // Nothing ran, so nothing ran stably: the backoff grows.
                self.after_failure(i, now, reason, false, Duration::ZERO);
                let name = self.services[i].name().to_string();
                cgroups.remove(&name);
            }
        }
    }

    fn mark_ready(&mut self, i: usize, now: Instant) {
        let s = &mut self.services[i];
        let Lifecycle::Starting { proc, .. } = &s.life else {
            return;
        };
        let proc = *proc;
        // Dropping the probe handle stops a tcp/http probe.
        s.life = Lifecycle::Ready { proc };
        let ms = s.uptime(now).as_millis();
        if !s.quiet() {
            say!(s.name(), "ready ({ms} ms after start)");
        }
        let name = s.name().to_string();
        self.output.close_notify(&name);
    }

    /// A child wrote to its readiness pipe or the pipe closed.
    pub fn on_readable(&mut self, fd: RawFd, now: Instant) {
        if let Some(StreamEvent::Notified {
            service,
            generation,
        }) = self.output.on_readable(fd)
        {
            self.on_ready_signal(&service, generation, now);
        }
    }

    /// A readiness probe succeeded.
    pub fn on_probe_ready(&mut self, service: &str, generation: u64, now: Instant) {
        self.on_ready_signal(service, generation, now);
    }

    fn on_ready_signal(&mut self, service: &str, generation: u64, now: Instant) {
        if let Some(i) = self.services.iter().position(|s| s.name() == service) {
            if self.services[i]
                .proc()
                .is_some_and(|p| p.generation == generation)
            {
                self.mark_ready(i, now);
            }
        }
    }

    /// A reaped process; returns whether it was a service's main process.
    pub fn on_exit(&mut self, pid: i32, status: WaitStatus, now: Instant) -> bool {
        let Some(i) = self.services.iter().position(|s| s.pid() == Some(pid)) else {
            return false;
        };
        let cgroups = self.cgroups.clone();
        let s = &mut self.services[i];
        let uptime = s.uptime(now);
        let name = s.name().to_string();
        let stopping = match s.take_life() {
            Lifecycle::Draining { intent, .. } | Lifecycle::Stopping { intent, .. } => Some(intent),
            // Running or starting: it exited by itself (a probe goes with it).
            _ => None,
        };
        // What the main process left behind goes with it.
        if cgroups.is_populated(&name) {
            cgroups.signal(&name, None, Signal::SIGKILL);
        }
        cgroups.remove(&name);
        self.output.close_notify(&name);
        let description = describe(status);
        let success = matches!(status, WaitStatus::Exited(_, 0));
        if let Some(intent) = stopping {
            say!(&name, "stopped ({description})");
            self.finish_stop(i, intent, now);
            return true;
        }
        let s = &mut self.services[i];
        if s.spec.oneshot && success {
            s.life = Lifecycle::Done;
            s.backoff.reset();
            let ms = uptime.as_millis();
            if s.spec.readiness == Readiness::Exited {
                // Its exit is its readiness: the contract's console line
                // `kindling: <name>: ready` (e.g. `kindling: stack: ready`).
                say!(&name, "ready ({ms} ms after start, exited 0)");
            } else {
                say!(&name, "finished ({ms} ms)");
            }
            return true;
        }
        self.after_failure(i, now, description, success, uptime);
        true
    }

    /// Decides between restart (with backoff) and giving up after an exit of
    /// a process that ran for `uptime`.
    fn after_failure(
        &mut self,
        i: usize,
        now: Instant,
        what: String,
        success: bool,
        uptime: Duration,
    ) {
        let shutting_down = self.shutting_down;
        let s = &mut self.services[i];
        let restart = !shutting_down
            && match s.spec.restart {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => !success,
                RestartPolicy::Never => false,
            };
        if restart {
            let delay = s.backoff.next_delay(uptime);
            let failures = s.backoff.failures();
            let reason = if failures >= CRASH_LOOP {
                format!("crash loop: {what} ({failures} times in a row)")
            } else {
                what.clone()
            };
            s.life = Lifecycle::Backoff {
                until: crate::after_ms(now, delay.as_millis() as u64),
                reason,
            };
            if !s.quiet() {
                say!(s.name(), "{what}; restarting in {} ms", delay.as_millis());
            }
            if failures == CRASH_LOOP + 1 {
                say!(
                    s.name(),
                    "crash loop ({failures} quick exits in a row); further restarts are logged sparsely"
                );
            }
        } else {
            say!(
                s.name(),
                "{what}; not restarted (restart: {:?})",
                s.spec.restart
            );
            s.life = if success {
                Lifecycle::Exited { reason: what }
            } else {
                Lifecycle::Failed { reason: what }
            };
        }
    }
}

/// `exited with status 1`, `killed by SIGSEGV`.
pub fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, signal, core) => {
            format!(
                "killed by {signal}{}",
                if core { " (core dumped)" } else { "" }
            )
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loop_logging_thins_out() {
        let logged: Vec<u32> = (1..=200).filter(|f| restart_is_logged(*f)).collect();
        assert_eq!(logged, [1, 2, 3, 4, 5, 8, 16, 32, 64, 128]);
    }

    #[test]
    fn exit_descriptions() {
        let pid = nix::unistd::Pid::from_raw(7);
        assert_eq!(describe(WaitStatus::Exited(pid, 3)), "exited with status 3");
        assert_eq!(
            describe(WaitStatus::Signaled(pid, Signal::SIGSEGV, true)),
            "killed by SIGSEGV (core dumped)"
        );
    }
}
