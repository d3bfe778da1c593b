//! init's run loop: one thread that polls signals, child pipes, the control
//! socket and helper-thread events, reaps every child, and walks the boot
//! phases after `state` (config → network → services → run, as the phase
//! table says; `boot` walks them), then shutdown.
//!
//! Owns the order of things after the synchronous early/state phases. It must
//! never block except in `poll`, and never exit while it is PID 1.

mod boot;

use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::boot_config::{BootConfig, ShutdownAction};
use crate::console;
use crate::control_server::{json_line, ControlServer};
use crate::events::{self, Event, EventQueue, EventSender};
use crate::phases::PhaseBook;
use crate::say;
use crate::shutdown;
use crate::supervisor::cgroup::Cgroups;
use crate::supervisor::service_logs::{Placement, ServiceLogs};
use crate::supervisor::Supervisor;
use kindling_init_protocol::control::{Ack, ListResponse, Request};
use kindling_init_protocol::phase::{BootPhase, Runner};
use kindling_init_protocol::table::{OutputLogLimits, ServiceTable};

/// Name of the internal service that runs the config command: its phase's
/// name, so its console lines read as the config phase's.
pub const CONFIG_SERVICE: &str = BootPhase::Config.name();

/// Signals init handles synchronously through a signalfd.
pub fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR2,
        Signal::SIGHUP,
        Signal::SIGPWR,
    ] {
        set.add(s);
    }
    set
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    /// A boot phase the loop runs, until it finishes or `deadline` passes.
    Boot { phase: BootPhase, deadline: Instant },
    /// Every boot phase ran: supervision until shutdown.
    Running,
    ShuttingDown {
        action: ShutdownAction,
        deadline: Instant,
    },
}

/// Everything the run loop owns.
pub struct RunLoop {
    config: BootConfig,
    /// CLOCK_BOOTTIME when /init started.
    started: Duration,
    phases: PhaseBook,
    supervisor: Supervisor,
    signals: SignalFd,
    events: EventQueue,
    sender: EventSender,
    control: Option<ControlServer>,
    stage: Stage,
    /// Last overall verdict printed (`ready` or the degraded list).
    verdict: Option<Vec<String>>,
    /// Boot decided (ready or degraded printed once).
    boot_decided: bool,
    /// Sum of the table's stop grace periods: bounds the whole shutdown.
    table_graces: Option<u64>,
}

/// Why the run loop could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("creating the signalfd: {0}")]
    SignalFd(nix::Error),
    #[error("creating the event pipe: {0}")]
    EventPipe(nix::Error),
}

impl RunLoop {
    /// Sets up the loop. `phases` carries what early/state recorded; `started` is
    /// when /init began. Signals in `handled_signals()` must already be blocked.
    pub fn new(
        config: BootConfig,
        phases: PhaseBook,
        started: Duration,
        logs: Placement,
    ) -> Result<RunLoop, RunError> {
        let signals = SignalFd::with_flags(
            &handled_signals(),
            SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
        )
        .map_err(RunError::SignalFd)?;
        let (sender, events) = events::channel().map_err(RunError::EventPipe)?;
        let cgroups = match Cgroups::prepare(&config.cgroup_root) {
            Ok(c) => c,
            Err(e) => {
                say!(
                    BootPhase::Services,
                    "no per-service cgroups ({e}); stopping by process group instead"
                );
                Cgroups::disabled()
            }
        };
        let limits = OutputLogLimits {
            file_bytes: config.log_max_bytes,
            files: config.log_files,
        };
        let logs = ServiceLogs::new(logs, &config.log_dir, limits);
        let supervisor = Supervisor::new(cgroups, logs, sender.clone());
        let control = match ControlServer::bind(&config.control_socket, sender.clone()) {
            Ok(c) => Some(c),
            Err(e) => {
                say!("control", "no control socket: {e}");
                None
            }
        };
        let now = Instant::now();
        Ok(RunLoop {
            stage: Stage::Boot {
                phase: BootPhase::Config,
                deadline: now,
            },
            config,
            started,
            phases,
            supervisor,
            signals,
            events,
            sender,
            control,
            verdict: None,
            boot_decided: false,
            table_graces: None,
        })
    }

    /// One round: wait for something, handle it, advance the stages.
    /// Returns false once shutdown is complete and init should leave the loop.
    pub fn iterate(&mut self) -> bool {
        let now = Instant::now();
        if !self.advance_all(now) {
            return false;
        }
        let timeout = self
            .next_deadline()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let ready = self.wait(timeout);
        let now = Instant::now();
        for fd in ready {
            if fd == self.signals.as_fd_raw() {
                self.on_signals(now);
            } else if fd == self.events.wake_fd() {
                for event in self.events.drain() {
                    self.on_event(event, now);
                }
            } else if self.control.as_ref().is_some_and(|c| c.fd() == fd) {
                if let Some(c) = &self.control {
                    c.accept_pending();
                }
            } else {
                self.supervisor.on_readable(fd, now);
            }
        }
        // Reap on every round, not only on SIGCHLD: coalesced signals are never lost this way.
        self.reap(now);
        self.supervisor.tick(now);
        self.advance_all(now)
    }

    /// Advances through every stage that can finish now (a stage with nothing
    /// to wait for must not cost a poll timeout).
    fn advance_all(&mut self, now: Instant) -> bool {
        loop {
            let before = self.stage;
            if !self.advance(now) {
                return false;
            }
            if self.stage == before {
                return true;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let stage = match self.stage {
            Stage::Boot { deadline, .. } | Stage::ShuttingDown { deadline, .. } => Some(deadline),
            Stage::Running => None,
        };
        [stage, self.supervisor.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Polls every fd; returns the readable ones.
    fn wait(&self, timeout: Duration) -> Vec<RawFd> {
        let mut raw: Vec<RawFd> = vec![self.signals.as_fd_raw(), self.events.wake_fd()];
        if let Some(c) = &self.control {
            raw.push(c.fd());
        }
        raw.extend(self.supervisor.poll_fds());
        // SAFETY: every fd in `raw` is owned by `self` (signalfd, event pipe,
        // listener, child pipes) and stays open for the duration of this call.
        let borrowed: Vec<BorrowedFd<'_>> = raw
            .iter()
            .map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) })
            .collect();
        let mut pollfds: Vec<PollFd<'_>> = borrowed
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let timeout = PollTimeout::try_from(ms.max(0)).unwrap_or(PollTimeout::ZERO);
        match nix::poll::poll(&mut pollfds, timeout) {
            Ok(0) | Err(_) => Vec::new(),
            Ok(_) => pollfds
                .iter()
                .zip(&raw)
                .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, fd)| *fd)
                .collect(),
        }
    }

    fn on_signals(&mut self, now: Instant) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            let signal = Signal::try_from(info.ssi_signo as i32);
            let action = match signal {
                Ok(Signal::SIGCHLD) => continue,
                Ok(Signal::SIGTERM) => self.config.shutdown,
                Ok(Signal::SIGINT) => ShutdownAction::Reboot,
                Ok(Signal::SIGUSR2) | Ok(Signal::SIGPWR) => ShutdownAction::Poweroff,
                Ok(Signal::SIGHUP) => {
                    say!(BootPhase::Run, "SIGHUP: reloading the service table");
                    let ack = self.reload(now);
                    if let Some(e) = ack.error {
                        say!(BootPhase::Run, "reload failed: {e}");
                    }
                    continue;
                }
                _ => continue,
            };
            let name = signal.map(|s| s.as_str()).unwrap_or("signal");
            self.begin_shutdown(action, name, now);
        }
    }

    fn begin_shutdown(&mut self, action: ShutdownAction, why: &str, now: Instant) {
        if matches!(self.stage, Stage::ShuttingDown { .. }) {
            say!("shutdown", "{why} received again; already shutting down");
            return;
        }
        let word = match action {
            ShutdownAction::Reboot => "reboot",
            ShutdownAction::Poweroff => "power off",
        };
        say!("shutdown", "{why} received: stopping services, then {word}");
        // Enough for every grace period in the worst (sequential) case, bounded.
        let grace: u64 = self
            .table_graces
            .unwrap_or(0)
            .saturating_add(5000)
            .min(300_000);
        self.stage = Stage::ShuttingDown {
            action,
            deadline: crate::after_ms(now, grace),
        };
        self.supervisor.stop_all(now);
    }

    fn reap(&mut self, now: Instant) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        // Orphans re-parented to init are simply collected.
                        self.supervisor.on_exit(pid.as_raw(), status, now);
                    }
                }
            }
        }
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::ProbeReady {
                service,
                generation,
            } => self.supervisor.on_probe_ready(&service, generation, now),
            Event::Control { request, reply } => {
                let answer = match request {
                    Request::List => json_line(&self.list(now)),
                    Request::Restart { name } => {
                        json_line(&match self.supervisor.request_restart(&name, now) {
                            Ok(()) => Ack::ok(),
                            Err(e) => Ack::error(e),
                        })
                    }
                    Request::Reload => json_line(&self.reload(now)),
                };
                let _ = reply.send(answer);
            }
        }
    }

    fn list(&self, now: Instant) -> ListResponse {
        let degraded = self.degraded_now();
        ListResponse {
            phases: self.phases.statuses(now),
            services: self.supervisor.statuses(now),
            ready: self.boot_decided && degraded.is_empty(),
            degraded,
            logs: Some(self.supervisor.logs_status()),
        }
    }

    fn degraded_now(&self) -> Vec<String> {
        let mut all = self.phases.degraded();
        all.extend(self.supervisor.degraded(self.boot_decided));
        all
    }

    fn reload(&mut self, now: Instant) -> Ack {
        if matches!(
            self.stage,
            Stage::Boot {
                phase: BootPhase::Config,
                ..
            }
        ) {
            return Ack::error("the config phase has not finished yet");
        }
        if matches!(self.stage, Stage::ShuttingDown { .. }) {
            return Ack::error("init is shutting down");
        }
        match self.read_table() {
            Ok((table, path, _)) => {
                if let Err(why) = self.supervisor.check_reload(&table) {
                    say!(BootPhase::Run, "refused to reload {path}: {why}");
                    return Ack::error(why);
                }
                self.supervisor.set_log_limits(&table);
                let change = self.supervisor.reload(&table, now);
                self.table_graces = Some(total_grace(&table));
                say!(BootPhase::Run, "reloaded {path}: {change}");
                Ack::ok()
            }
            Err(errors) => Ack::error(errors.join("; ")),
        }
    }

    /// The first service table that loads, its path, and why earlier ones were
    /// skipped; or why none loaded.
    fn read_table(&self) -> Result<(ServiceTable, String, Vec<String>), Vec<String>> {
        let mut errors = Vec::new();
        for path in &self.config.service_tables {
            if !path.exists() {
                errors.push(format!("{} does not exist", path.display()));
                continue;
            }
            match ServiceTable::load(path) {
                Ok(table) => return Ok((table, path.display().to_string(), errors)),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(errors)
    }

    fn advance(&mut self, now: Instant) -> bool {
        match self.stage {
            Stage::Boot { phase, deadline } => match phase.runner() {
                Runner::ConfigCommand => self.advance_config(deadline, now),
                Runner::Services(table_phase) => {
                    self.advance_services(phase, table_phase, deadline, now)
                }
                Runner::Init | Runner::Supervision => self.enter_after(phase, now),
            },
            Stage::Running => self.announce(),
            Stage::ShuttingDown { action, deadline } => {
                if self.supervisor.all_stopped() {
                    say!("shutdown", "all services stopped");
                    shutdown::finish(action, &self.config);
                    return false;
                }
                if now >= deadline {
                    say!(
                        "shutdown",
                        "services still running at the shutdown deadline; killing them"
                    );
                    self.supervisor.kill_all();
                    self.stage = Stage::ShuttingDown {
                        action,
                        deadline: crate::after_ms(now, 5000),
                    };
                }
            }
        }
        true
    }

    /// Prints `ready` or `degraded` when the overall verdict changes.
    fn announce(&mut self) {
        let problems = self.degraded_now();
        // Compare only what is degraded, not the changing details (restart counts),
        // so a crash loop does not repeat the line.
        let subjects: Vec<String> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or_default().to_string())
            .collect();
        if self.verdict.as_ref() == Some(&subjects) {
            return;
        }
        if problems.is_empty() {
            let ms = console::boottime().saturating_sub(self.started).as_millis();
            console::announce(format_args!(
                "ready ({} services, {ms} ms since /init)",
                self.supervisor.table_len()
            ));
        } else {
            console::announce(format_args!("degraded: {}", problems.join("; ")));
        }
        self.verdict = Some(subjects);
    }

    /// Keeps the sender alive for helpers created later.
    pub fn sender(&self) -> EventSender {
        self.sender.clone()
    }
}

fn total_grace(table: &ServiceTable) -> u64 {
    table
        .services
        .iter()
        .map(|s| s.stop_grace_ms)
        .fold(0u64, u64::saturating_add)
}

trait RawSignalFd {
    fn as_fd_raw(&self) -> RawFd;
}

impl RawSignalFd for SignalFd {
    fn as_fd_raw(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.as_fd().as_raw_fd()
    }
}
