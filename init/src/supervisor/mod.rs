//! The supervisor: one state machine per service (start when dependencies are
//! ready, readiness, restart with backoff, stop in reverse dependency order).
//!
//! Owns service state and the processes it started. It is driven by init's run
//! loop (`tick`, `on_exit`, `on_readable`, `on_probe_ready`) and never blocks,
//! sleeps or reaps by itself: the loop reaps and hands exits in.

pub mod cgroup;
pub mod output;
pub mod readiness;
pub mod spawn;

use std::os::fd::RawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

use crate::backoff::Backoff;
use crate::control::{ServiceState, ServiceStatus};
use crate::events::EventSender;
use crate::graph;
use crate::say;
use crate::table::{Phase, Readiness, RestartPolicy, ServiceSpec, ServiceTable};
use cgroup::Cgroups;
use output::{OutputHub, StreamEvent, StreamKind};
use readiness::ProbeHandle;
use spawn::SpawnError;

/// After this many consecutive failures a service is in a crash loop: it
/// counts as settled for boot and its restarts are logged sparsely.
const CRASH_LOOP: u32 = 5;

/// Why a running service is being stopped.
#[derive(Debug, Clone, PartialEq)]
enum StopIntent {
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

struct Service {
    spec: ServiceSpec,
    /// Not part of the service table (the config command).
    internal: bool,
    /// Its phase has come: may start when its dependencies are ready.
    enabled: bool,
    state: ServiceState,
    ready: bool,
    pid: Option<i32>,
    generation: u64,
    started_at: Option<Instant>,
    restarts: u32,
    backoff: Backoff,
    restart_at: Option<Instant>,
    stop: Option<StopIntent>,
    /// SIGKILL is due at this time (SIGTERM was sent).
    kill_at: Option<Instant>,
    reason: Option<String>,
    probe: Option<ProbeHandle>,
    /// The "blocked by dependency" reason already logged.
    blocked_logged: Option<String>,
}

impl Service {
    fn new(spec: ServiceSpec, internal: bool) -> Service {
        Service {
            spec,
            internal,
            enabled: false,
            state: ServiceState::Waiting,
            ready: false,
            pid: None,
            generation: 0,
            started_at: None,
            restarts: 0,
            backoff: Backoff::default(),
            restart_at: None,
            stop: None,
            kill_at: None,
            reason: None,
            probe: None,
            blocked_logged: None,
        }
    }

    fn name(&self) -> &str {
        &self.spec.name
    }

    /// Crash-looping services log only some of their restarts.
    fn quiet(&self) -> bool {
        !restart_is_logged(self.backoff.failures())
    }

    /// Will not become ready without outside help (or is ready).
    fn settled(&self) -> bool {
        self.ready
            || matches!(
                self.state,
                ServiceState::NotInstalled
                    | ServiceState::Failed
                    | ServiceState::Exited
                    | ServiceState::Stopped
            )
            || (self.state == ServiceState::Backoff && self.backoff.failures() >= CRASH_LOOP)
    }

    fn uptime(&self, now: Instant) -> Duration {
        self.started_at
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default()
    }
}

/// All services and their processes.
pub struct Supervisor {
    services: Vec<Service>,
    cgroups: Cgroups,
    output: OutputHub,
    events: EventSender,
    next_generation: u64,
    shutting_down: bool,
}

impl Supervisor {
    pub fn new(
        cgroups: Cgroups,
        log_dir: &Path,
        log_max_bytes: u64,
        events: EventSender,
    ) -> Supervisor {
        Supervisor {
            services: Vec::new(),
            cgroups,
            output: OutputHub::new(log_dir, log_max_bytes),
            events,
            next_generation: 0,
            shutting_down: false,
        }
    }

    /// Adds a service (not started until its phase is enabled).
    pub fn add(&mut self, spec: ServiceSpec, internal: bool) {
        self.services.push(Service::new(spec, internal));
    }

    /// Adds every service of a table.
    pub fn add_table(&mut self, table: &ServiceTable) {
        for spec in &table.services {
            self.add(spec.clone(), false);
        }
    }

    /// Lets the services of `phase` start.
    pub fn enable_phase(&mut self, phase: Phase) {
        for s in self
            .services
            .iter_mut()
            .filter(|s| !s.internal && s.spec.phase == phase)
        {
            s.enabled = true;
        }
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
        self.find(name).map(|s| s.state)
    }

    /// Whether every required table service of `phase` (all phases: `None`) is
    /// settled. Optional services never hold up the ready/degraded decision.
    pub fn settled(&self, phase: Option<Phase>) -> bool {
        self.services
            .iter()
            .filter(|s| !s.internal && s.spec.required && phase.is_none_or(|p| s.spec.phase == p))
            .all(|s| s.settled() || self.blocked_by(s).is_some())
    }

    /// A dependency that is settled without being ready, so `s` cannot start.
    fn blocked_by(&self, s: &Service) -> Option<String> {
        if s.pid.is_some() || s.ready {
            return None;
        }
        s.spec.depends_on.iter().find_map(|dep| {
            let d = self.find(dep)?;
            if d.ready {
                return None;
            }
            if d.settled() || self.blocked_by(d).is_some() {
                Some(format!("dependency {dep} is {}", state_word(d.state)))
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
            if s.ready {
                continue;
            }
            let why = match s.state {
                ServiceState::NotInstalled | ServiceState::Failed | ServiceState::Backoff => {
                    let state = state_word(s.state);
                    match &s.reason {
                        Some(r) => format!("{state}: {r}"),
                        None => state.to_string(),
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
                    state_word(s.state).to_string()
                }
                _ => continue,
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
                state: s.state,
                pid: s.pid.map(|p| p as u32),
                restarts: s.restarts,
                uptime_ms: s.pid.map(|_| s.uptime(now).as_millis() as u64),
                ready: s.ready,
                reason: s.reason.clone().or_else(|| self.blocked_by(s)),
            })
            .collect()
    }

    /// Fds the run loop polls for the supervisor.
    pub fn poll_fds(&self) -> Vec<RawFd> {
        self.output.fds()
    }

    /// Earliest time `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.services
            .iter()
            .flat_map(|s| [s.restart_at, s.kill_at])
            .flatten()
            .min()
    }

    /// Starts what may start, restarts what waited out its backoff, escalates stops.
    pub fn tick(&mut self, now: Instant) {
        for i in 0..self.services.len() {
            self.tick_one(i, now);
        }
        self.services
            .retain(|s| !(s.stop == Some(StopIntent::Remove) && s.pid.is_none()));
    }

    fn tick_one(&mut self, i: usize, now: Instant) {
        let s = &self.services[i];
        if let Some(intent) = s.stop.clone() {
            match (s.pid, s.kill_at) {
                (None, _) => self.finish_stop(i, now),
                (Some(_), None) => {
                    let waits_for_dependents =
                        matches!(intent, StopIntent::Shutdown | StopIntent::Remove);
                    if !waits_for_dependents || !self.has_running_dependent(i) {
                        self.send_term(i, now);
                    }
                }
                (Some(pid), Some(kill_at)) if now >= kill_at => {
                    let s = &mut self.services[i];
                    say!(
                        s.name(),
                        "did not stop within {} ms of SIGTERM; sending SIGKILL",
                        s.spec.stop_grace_ms
                    );
                    s.kill_at = None;
                    // Keep `stop` set; a second escalation is not needed, SIGKILL cannot be caught.
                    s.kill_at = Some(crate::after_ms(now, 3_600_000));
                    let name = s.name().to_string();
                    self.cgroups.signal(&name, Some(pid), Signal::SIGKILL);
                }
                _ => {}
            }
            return;
        }
        if self.shutting_down || !s.enabled || s.pid.is_some() {
            return;
        }
        match s.state {
            ServiceState::Waiting => {
                if self.deps_ready(i) {
                    self.start(i, now);
                } else if let Some(blocked) = self.blocked_by(&self.services[i]) {
                    let s = &mut self.services[i];
                    if s.blocked_logged.as_deref() != Some(blocked.as_str()) {
                        say!(s.name(), "not started: {blocked}");
                        s.blocked_logged = Some(blocked);
                    }
                }
            }
            ServiceState::Backoff
                if s.restart_at.is_some_and(|t| now >= t) && self.deps_ready(i) =>
            {
                let s = &mut self.services[i];
                s.restart_at = None;
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
            .all(|d| self.find(d).is_some_and(|d| d.ready))
    }

    fn has_running_dependent(&self, i: usize) -> bool {
        let name = self.services[i].name();
        self.services
            .iter()
            .any(|s| s.pid.is_some() && s.spec.depends_on.iter().any(|d| d == name))
    }

    fn start(&mut self, i: usize, now: Instant) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let cgroups = self.cgroups.clone();
        let s = &mut self.services[i];
        s.generation = generation;
        s.blocked_logged = None;
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
                s.pid = Some(child.pid);
                s.started_at = Some(now);
                s.state = ServiceState::Starting;
                s.ready = false;
                s.reason = None;
                if !s.quiet() {
                    say!(s.name(), "started (pid {})", child.pid);
                }
                let name = s.name().to_string();
                for fd in [child.stdout, child.stderr].into_iter().flatten() {
                    self.output.add(&name, generation, StreamKind::Output, fd);
                }
                if let Some(fd) = child.notify {
                    self.output.add(&name, generation, StreamKind::Notify, fd);
                }
                let s = &mut self.services[i];
                match &s.spec.readiness {
                    Readiness::Started => self.mark_ready(i, now),
                    Readiness::Tcp { .. } | Readiness::Http { .. } => {
                        s.probe =
                            readiness::start(&name, generation, &s.spec.readiness, &self.events);
                    }
                    Readiness::Notify | Readiness::Exited => {}
                }
            }
            Err(SpawnError::NotInstalled(program)) => {
                s.state = ServiceState::NotInstalled;
                s.ready = false;
                let reason = format!("{program} is not in this image");
                if s.reason.as_deref() != Some(reason.as_str()) {
                    say!(
                        s.name(),
                        "not installed: {reason}; the other services keep running"
                    );
                }
                s.reason = Some(reason);
                cgroups.remove(s.name());
            }
            Err(e) => {
                let reason = format!("cannot start: {e}");
                self.after_failure(i, now, reason, false);
                let name = self.services[i].name().to_string();
                cgroups.remove(&name);
            }
        }
    }

    fn mark_ready(&mut self, i: usize, now: Instant) {
        let s = &mut self.services[i];
        if s.ready || s.pid.is_none() {
            return;
        }
        s.ready = true;
        s.state = ServiceState::Running;
        s.probe = None;
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
            if self.services[i].generation == generation {
                self.mark_ready(i, now);
            }
        }
    }

    /// A reaped process; returns whether it was a service's main process.
    pub fn on_exit(&mut self, pid: i32, status: WaitStatus, now: Instant) -> bool {
        let Some(i) = self.services.iter().position(|s| s.pid == Some(pid)) else {
            return false;
        };
        let cgroups = self.cgroups.clone();
        let s = &mut self.services[i];
        s.pid = None;
        s.kill_at = None;
        s.probe = None;
        let name = s.name().to_string();
        // What the main process left behind goes with it.
        if cgroups.is_populated(&name) {
            cgroups.signal(&name, None, Signal::SIGKILL);
        }
        cgroups.remove(&name);
        self.output.close_notify(&name);
        let description = describe(status);
        let success = matches!(status, WaitStatus::Exited(_, 0));
        let s = &mut self.services[i];
        if s.stop.is_some() {
            say!(&name, "stopped ({description})");
            s.ready = false;
            s.reason = None;
            self.finish_stop(i, now);
            return true;
        }
        if s.spec.oneshot && success {
            s.state = ServiceState::Exited;
            s.ready = true;
            s.reason = None;
            s.backoff.reset();
            let ms = s.uptime(now).as_millis();
            if s.spec.readiness == Readiness::Exited {
                // Its exit is its readiness: the contract's console line
                // `kindling: <name>: ready` (e.g. `kindling: stack: ready`).
                say!(&name, "ready ({ms} ms after start, exited 0)");
            } else {
                say!(&name, "finished ({ms} ms)");
            }
            return true;
        }
        self.after_failure(i, now, description, success);
        true
    }

    /// Decides between restart (with backoff) and giving up after an exit.
    fn after_failure(&mut self, i: usize, now: Instant, what: String, success: bool) {
        let shutting_down = self.shutting_down;
        let s = &mut self.services[i];
        let uptime = s.uptime(now);
        s.ready = false;
        let restart = !shutting_down
            && match s.spec.restart {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => !success,
                RestartPolicy::Never => false,
            };
        if restart {
            let delay = s.backoff.next_delay(uptime);
            s.state = ServiceState::Backoff;
            s.restart_at = Some(crate::after_ms(now, delay.as_millis() as u64));
            let failures = s.backoff.failures();
            s.reason = Some(if failures >= CRASH_LOOP {
                format!("crash loop: {what} ({failures} times in a row)")
            } else {
                what.clone()
            });
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
            s.state = if success {
                ServiceState::Exited
            } else {
                ServiceState::Failed
            };
            s.reason = Some(what.clone());
            say!(
                s.name(),
                "{what}; not restarted (restart: {:?})",
                s.spec.restart
            );
        }
    }

    fn send_term(&mut self, i: usize, now: Instant) {
        let s = &mut self.services[i];
        let Some(pid) = s.pid else { return };
        s.state = ServiceState::Stopping;
        s.kill_at = Some(crate::after_ms(now, s.spec.stop_grace_ms));
        s.probe = None;
        let name = s.name().to_string();
        say!(&name, "stopping (SIGTERM to pid {pid})");
        self.cgroups.signal(&name, Some(pid), Signal::SIGTERM);
    }

    /// The process is gone; apply what the stop was for.
    fn finish_stop(&mut self, i: usize, now: Instant) {
        let s = &mut self.services[i];
        s.kill_at = None;
        s.restart_at = None;
        s.ready = false;
        match s.stop.take() {
            Some(StopIntent::Restart) => {
                s.backoff.reset();
                s.restarts = s.restarts.saturating_add(1);
                s.state = ServiceState::Waiting;
                s.enabled = true;
                self.tick_one(i, now);
            }
            Some(StopIntent::Replace(spec)) => {
                s.spec = *spec;
                s.backoff.reset();
                s.state = ServiceState::Waiting;
                self.tick_one(i, now);
            }
            Some(StopIntent::Remove) => {
                // Keep the marker so `tick` drops the entry.
                s.stop = Some(StopIntent::Remove);
                s.state = ServiceState::Stopped;
            }
            Some(StopIntent::Shutdown) | Some(StopIntent::Stop) | None => {
                s.state = ServiceState::Stopped;
            }
        }
    }

    /// Restart on request (control socket): stop if running, then start again.
    pub fn request_restart(&mut self, name: &str, now: Instant) -> Result<(), String> {
        if self.shutting_down {
            return Err("init is shutting down".to_string());
        }
        let i = self
            .services
            .iter()
            .position(|s| s.name() == name && !s.internal)
            .ok_or_else(|| format!("no service {name:?}"))?;
        let s = &mut self.services[i];
        s.enabled = true;
        if s.pid.is_some() {
            s.stop = Some(StopIntent::Restart);
            self.send_term(i, now);
        } else {
            s.stop = Some(StopIntent::Restart);
            self.finish_stop(i, now);
        }
        say!(name, "restart requested");
        Ok(())
    }

    /// Stops one service and leaves it stopped.
    pub fn stop(&mut self, name: &str, now: Instant) {
        if let Some(i) = self.services.iter().position(|s| s.name() == name) {
            self.services[i].stop = Some(StopIntent::Stop);
            if self.services[i].pid.is_some() {
                self.send_term(i, now);
            } else {
                self.finish_stop(i, now);
            }
        }
    }

    /// Begins stopping everything, dependents before their dependencies.
    pub fn stop_all(&mut self, now: Instant) {
        self.shutting_down = true;
        for s in &mut self.services {
            s.stop = Some(StopIntent::Shutdown);
        }
        self.tick(now);
    }

    /// Every service's process is gone.
    pub fn all_stopped(&self) -> bool {
        self.services.iter().all(|s| s.pid.is_none())
    }

    /// Kills every remaining service process now (shutdown deadline passed).
    pub fn kill_all(&mut self) {
        let cgroups = self.cgroups.clone();
        for s in &self.services {
            if let Some(pid) = s.pid {
                cgroups.signal(s.name(), Some(pid), Signal::SIGKILL);
            }
        }
    }

    /// Applies a new table: removed services stop (after their dependents),
    /// changed ones restart with the new spec, new ones start when their phase
    /// has come. Returns one line describing the change.
    pub fn reload(&mut self, table: &ServiceTable, now: Instant) -> String {
        let (mut added, mut changed, mut removed) = (0, 0, 0);
        let phases_enabled: Vec<Phase> = [Phase::Network, Phase::Services]
            .into_iter()
            .filter(|p| {
                self.services
                    .iter()
                    .any(|s| !s.internal && s.spec.phase == *p && s.enabled)
            })
            .collect();
        for i in 0..self.services.len() {
            let s = &self.services[i];
            if s.internal {
                continue;
            }
            match table.get(s.name()) {
                None => {
                    removed += 1;
                    self.services[i].stop = Some(StopIntent::Remove);
                }
                Some(new) if *new != s.spec => {
                    changed += 1;
                    let s = &mut self.services[i];
                    if s.pid.is_some() {
                        s.stop = Some(StopIntent::Replace(Box::new(new.clone())));
                    } else {
                        s.spec = new.clone();
                        s.state = ServiceState::Waiting;
                        s.reason = None;
                        s.backoff.reset();
                        s.restart_at = None;
                    }
                }
                Some(_) => {}
            }
        }
        for spec in &table.services {
            if self.find(&spec.name).is_none() {
                added += 1;
                let mut s = Service::new(spec.clone(), false);
                s.enabled = phases_enabled.contains(&spec.phase);
                self.services.push(s);
            }
        }
        // Keep table order for status output: table services, then internal ones.
        let order: Vec<&str> = match graph::start_order(&table.services) {
            Ok(_) => table.services.iter().map(|s| s.name.as_str()).collect(),
            Err(_) => Vec::new(),
        };
        let rank = |name: &str| order.iter().position(|n| *n == name).unwrap_or(usize::MAX);
        self.services.sort_by_key(|s| rank(s.name()));
        self.tick(now);
        format!("{added} added, {changed} changed, {removed} removed")
    }
}

/// Whether the restart after `failures` quick exits in a row is logged: all of
/// the first few, then only the 8th, 16th, 32nd, ... so a crash loop cannot
/// flood the console (with the 30 s backoff cap, at most one line per ~minutes).
pub fn restart_is_logged(failures: u32) -> bool {
    failures <= CRASH_LOOP || failures.is_power_of_two()
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
