//! Stopping, restarting and reloading services: SIGTERM in reverse dependency
//! order, SIGKILL after the grace period, and what a stop was for.
//!
//! Owns the transitions into and out of `Draining`/`Stopping`. It signals
//! processes but never waits for them: the run loop reaps and reports exits.

use std::time::Instant;

use kindling_init_protocol::graph;
use kindling_init_protocol::table::{Phase, ServiceTable};
use nix::sys::signal::Signal;

use super::service::{Lifecycle, Service, StopIntent};
use super::Supervisor;
use crate::say;

impl Supervisor {
    pub(super) fn has_running_dependent(&self, i: usize) -> bool {
        let name = self.services[i].name();
        self.services
            .iter()
            .any(|s| s.proc().is_some() && s.spec.depends_on.iter().any(|d| d == name))
    }

    /// Stops service `i` for `intent`: a running one drains (and gets SIGTERM
    /// now if `at_once`, else when `tick` finds its dependents down); one
    /// without a process gets what the stop was for right away.
    fn begin_stop(&mut self, i: usize, intent: StopIntent, at_once: bool, now: Instant) {
        let s = &mut self.services[i];
        s.life = match s.take_life() {
            Lifecycle::Starting { proc, .. } => Lifecycle::Draining {
                proc,
                ready: false,
                intent,
            },
            Lifecycle::Ready { proc } => Lifecycle::Draining {
                proc,
                ready: true,
                intent,
            },
            Lifecycle::Draining { proc, ready, .. } => Lifecycle::Draining {
                proc,
                ready,
                intent,
            },
            Lifecycle::Stopping { proc, kill_at, .. } => Lifecycle::Stopping {
                proc,
                intent,
                kill_at,
            },
            other => {
                s.life = other;
                self.finish_stop(i, intent, now);
                return;
            }
        };
        if at_once {
            self.send_term(i, now);
        }
    }

    /// SIGTERM to a running service; SIGKILL follows after its grace period.
    pub(super) fn send_term(&mut self, i: usize, now: Instant) {
        let s = &mut self.services[i];
        let grace = s.spec.stop_grace_ms;
        let (proc, intent) = match s.take_life() {
            Lifecycle::Draining { proc, intent, .. } | Lifecycle::Stopping { proc, intent, .. } => {
                (proc, intent)
            }
            Lifecycle::Starting { proc, .. } | Lifecycle::Ready { proc } => {
                (proc, StopIntent::Stop)
            }
            other => {
                s.life = other;
                return;
            }
        };
        s.life = Lifecycle::Stopping {
            proc,
            intent,
            kill_at: Some(crate::after_ms(now, grace)),
        };
        let name = s.name().to_string();
        say!(&name, "stopping (SIGTERM to pid {})", proc.pid);
        self.cgroups.signal(&name, Some(proc.pid), Signal::SIGTERM);
    }

    /// The process is gone (or there was none); apply what the stop was for.
    pub(super) fn finish_stop(&mut self, i: usize, intent: StopIntent, now: Instant) {
        let s = &mut self.services[i];
        match intent {
            StopIntent::Restart => {
                s.backoff.reset();
                s.restarts = s.restarts.saturating_add(1);
                s.life = Lifecycle::Waiting;
                s.enabled = true;
                self.tick_one(i, now);
            }
            StopIntent::Replace(spec) => {
                s.spec = *spec;
                s.backoff.reset();
                s.life = Lifecycle::Waiting;
                self.tick_one(i, now);
            }
            // `tick` drops the entry.
            StopIntent::Remove => s.life = Lifecycle::Removed,
            StopIntent::Shutdown | StopIntent::Stop => s.life = Lifecycle::Stopped,
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
        self.services[i].enabled = true;
        self.begin_stop(i, StopIntent::Restart, true, now);
        say!(name, "restart requested");
        Ok(())
    }

    /// Stops one service and leaves it stopped.
    pub fn stop(&mut self, name: &str, now: Instant) {
        if let Some(i) = self.services.iter().position(|s| s.name() == name) {
            self.begin_stop(i, StopIntent::Stop, true, now);
        }
    }

    /// Begins stopping everything, dependents before their dependencies.
    pub fn stop_all(&mut self, now: Instant) {
        self.shutting_down = true;
        for i in 0..self.services.len() {
            self.begin_stop(i, StopIntent::Shutdown, false, now);
        }
        self.tick(now);
    }

    /// Every service's process is gone.
    pub fn all_stopped(&self) -> bool {
        self.services.iter().all(|s| s.proc().is_none())
    }

    /// Kills every remaining service process now (shutdown deadline passed).
    pub fn kill_all(&mut self) {
        let cgroups = self.cgroups.clone();
        for s in &self.services {
            if let Some(pid) = s.pid() {
                cgroups.signal(s.name(), Some(pid), Signal::SIGKILL);
            }
        }
    }

    /// Refuses a reloaded table that would give any service more than the
    /// running table does: a changed program, account, group list,
    /// capabilities or rotated logs (init renames those files as root), or a
    /// new service running as root or with capabilities. Whoever may write
    /// `services.json` and ask for a reload (the API) must not gain root
    /// that way; such changes wait for the next boot's config phase.
    pub fn check_reload(&self, table: &ServiceTable) -> Result<(), String> {
        for new in &table.services {
            match self.find(&new.name).filter(|s| !s.internal) {
                Some(old) => {
                    let o = &old.spec;
                    if (
                        &o.argv,
                        o.user,
                        o.group,
                        &o.groups,
                        &o.capabilities,
                        &o.logs,
                    ) != (
                        &new.argv,
                        new.user,
                        new.group,
                        &new.groups,
                        &new.capabilities,
                        &new.logs,
                    ) {
                        return Err(format!(
                            "{}: a reload may not change its program, account, groups, capabilities or logs (next boot)",
                            new.name
                        ));
                    }
                }
                None if new.user == 0 || !new.capabilities.is_empty() => {
                    return Err(format!(
                        "{}: a new service with uid 0 or capabilities starts only at the next boot",
                        new.name
                    ));
                }
                None => {}
            }
        }
        Ok(())
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
                    self.begin_stop(i, StopIntent::Remove, false, now);
                }
                Some(new) if *new != s.spec => {
                    changed += 1;
                    if s.proc().is_some() {
                        self.begin_stop(i, StopIntent::Replace(Box::new(new.clone())), false, now);
                    } else {
                        let s = &mut self.services[i];
                        s.spec = new.clone();
                        s.life = Lifecycle::Waiting;
                        s.backoff.reset();
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
