//! The boot phases the run loop runs (config, then the table services'
//! phases, then supervision), walked in the order and by the runners of the
//! phase table.
//!
//! Owns when a phase begins and ends and what it records; the supervisor does
//! the starting. It never blocks and never decides shutdown.

use std::time::Instant;

use kindling_init_protocol::control::{PhaseState, ServiceState};
use kindling_init_protocol::phase::{BootPhase, Runner};
use kindling_init_protocol::table::{Phase, Readiness, RestartPolicy, ServiceSpec};

use super::{total_grace, RunLoop, Stage, CONFIG_SERVICE};
use crate::say;

impl RunLoop {
    /// Starts the config phase; call once before `iterate`.
    pub fn begin(&mut self) {
        let now = Instant::now();
        self.phases.begin(BootPhase::Config, now);
        let command = self.config.config_command.clone().unwrap_or_default();
        if command.is_empty() {
            self.load_table((PhaseState::Skipped, "no config command".into()), now);
            return;
        }
        let mut spec = ServiceSpec::new(CONFIG_SERVICE, &[]);
        spec.argv = command;
        spec.oneshot = true;
        spec.readiness = Readiness::Exited;
        spec.restart = RestartPolicy::Never;
        // The config command reads boot media, writes /run/kindling and the
        // stack's files as root, and then hands each service its own files
        // (chown/chmod of paths other accounts own, writing into their
        // directories, setgid directories of a service's group: without
        // CAP_FSETID chmod drops that bit): that and nothing more. It runs to
        // completion before any child that talks to the network starts.
        spec.capabilities = ["CAP_CHOWN", "CAP_FOWNER", "CAP_FSETID", "CAP_DAC_OVERRIDE"]
            .map(str::to_string)
            .to_vec();
        self.supervisor.add(spec, true);
        self.supervisor.enable(CONFIG_SERVICE);
        self.stage = Stage::Boot {
            phase: BootPhase::Config,
            deadline: crate::after_ms(now, self.config.config_timeout_ms),
        };
        self.supervisor.tick(now);
    }

    /// End of the config phase: pick the table, set the hostname, go to network.
    /// `outcome` is how the config command went; a fallback table degrades it.
    pub(super) fn load_table(&mut self, outcome: (PhaseState, String), now: Instant) {
        let (mut state, mut detail) = outcome;
        match self.read_table() {
            Ok((table, path, skipped)) => {
                for e in &skipped {
                    say!(BootPhase::Config, "skipped service table: {e}");
                }
                if let Some(name) = table
                    .hostname
                    .as_deref()
                    .filter(|_| self.config.set_hostname)
                {
                    match nix::unistd::sethostname(name) {
                        Ok(()) => say!(BootPhase::Config, "hostname {name}"),
                        Err(e) => say!(BootPhase::Config, "cannot set hostname {name:?}: {e}"),
                    }
                }
                say!(
                    BootPhase::Config,
                    "service table {path}: {} services",
                    table.services.len()
                );
                if !skipped.is_empty() {
                    state = PhaseState::Degraded;
                    detail = format!("{detail}; using {path} because {}", skipped.join("; "));
                }
                self.table_graces = Some(total_grace(&table));
                self.supervisor.set_log_limits(&table);
                self.supervisor.add_table(&table);
            }
            Err(errors) => {
                state = PhaseState::Degraded;
                detail = format!("{detail}; no usable service table ({})", errors.join("; "));
            }
        }
        self.phases.finish(BootPhase::Config, state, detail, now);
        self.enter_after(BootPhase::Config, now);
    }

    /// Begins the boot phase after `done`, as the phase table says it runs.
    pub(super) fn enter_after(&mut self, done: BootPhase, now: Instant) {
        let Some(phase) = done.next() else {
            self.stage = Stage::Running;
            return;
        };
        self.phases.begin(phase, now);
        match phase.runner() {
            Runner::Services(table_phase) => {
                self.supervisor.enable_phase(table_phase);
                let timeout_ms = match table_phase {
                    Phase::Network => self.config.network_timeout_ms,
                    Phase::Services => self.config.services_timeout_ms,
                };
                self.stage = Stage::Boot {
                    phase,
                    deadline: crate::after_ms(now, timeout_ms),
                };
                self.supervisor.tick(now);
            }
            Runner::Supervision => {
                self.stage = Stage::Running;
                self.announce();
            }
            // Run by PID 1's frame or by `begin`, before the loop gets here.
            Runner::Init | Runner::ConfigCommand => {
                self.phases.finish(
                    phase,
                    PhaseState::Skipped,
                    "not run by the run loop".to_string(),
                    now,
                );
                self.enter_after(phase, now);
            }
        }
    }

    /// Ends a phase that runs table services once its required services are
    /// settled or its deadline passed.
    pub(super) fn advance_services(
        &mut self,
        phase: BootPhase,
        table_phase: Phase,
        deadline: Instant,
        now: Instant,
    ) {
        // The last one waits for every service and decides the boot.
        let (waited_for, last) = match table_phase {
            Phase::Network => (Some(Phase::Network), false),
            Phase::Services => (None, true),
        };
        if !self.supervisor.settled(waited_for) && now < deadline {
            return;
        }
        let problems = self.supervisor.degraded(last || now >= deadline);
        if last {
            self.boot_decided = true;
            self.supervisor.enable_deferred();
        }
        let (state, detail) = if !problems.is_empty() {
            (PhaseState::Degraded, problems.join("; "))
        } else if last {
            (
                PhaseState::Done,
                format!("{} services in the table", self.supervisor.table_len()),
            )
        } else {
            (PhaseState::Done, format!("{phase} services ready"))
        };
        self.phases.finish(phase, state, detail, now);
        self.enter_after(phase, now);
    }

    /// Ends the config phase once the config command finished or ran too long.
    pub(super) fn advance_config(&mut self, deadline: Instant, now: Instant) {
        use ServiceState as S;
        let state = self.supervisor.state_of(CONFIG_SERVICE);
        let finished = matches!(
            state,
            Some(S::Exited | S::Failed | S::NotInstalled | S::Stopped) | None
        );
        if !finished && now < deadline {
            return;
        }
        let (phase_state, detail) = match state {
            Some(S::Exited) => (PhaseState::Done, "config command succeeded".to_string()),
            Some(S::NotInstalled) => (
                PhaseState::Degraded,
                "config command not installed; using the fallback table".to_string(),
            ),
            Some(S::Failed) => (
                PhaseState::Degraded,
                "config command failed; using the fallback table".to_string(),
            ),
            _ => {
                self.supervisor.stop(CONFIG_SERVICE, now);
                (
                    PhaseState::Degraded,
                    format!(
                        "config command still running after {} ms; stopped",
                        self.config.config_timeout_ms
                    ),
                )
            }
        };
        self.load_table((phase_state, detail), now);
    }
}
