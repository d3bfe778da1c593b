//! The boot phases as data: their order, names and what runs each one.
//!
//! Owns the one table of boot phases that init's phase book, its console lines,
//! the control socket's `phases` list and the tests read. Adding a phase is one
//! variant plus its row in `BootPhase::info`; the compiler then points at every
//! `match` that must handle it. It never runs a phase itself.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::Phase;

/// One boot phase. The variant order is the boot order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootPhase {
    Early,
    State,
    Config,
    Network,
    Services,
    Run,
}

/// What runs a boot phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// init itself, synchronously, before its run loop exists.
    Init,
    /// The config command of `init.json` (`config_command`), a one-shot.
    ConfigCommand,
    /// The service-table entries whose `phase` is this one; the phase ends when
    /// the required ones are settled or its timeout passes.
    Services(Phase),
    /// init's run loop: supervision until shutdown.
    Supervision,
}

/// One row of the phase table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseInfo {
    /// Name on the console and in the control socket's `phases` list.
    pub name: &'static str,
    /// What runs it.
    pub runner: Runner,
    /// What it does, one line.
    pub summary: &'static str,
}

impl BootPhase {
    /// Every phase, in boot order.
    pub const ALL: [BootPhase; 6] = [
        BootPhase::Early,
        BootPhase::State,
        BootPhase::Config,
        BootPhase::Network,
        BootPhase::Services,
        BootPhase::Run,
    ];

    /// The phase table.
    pub const fn info(self) -> PhaseInfo {
        match self {
            BootPhase::Early => PhaseInfo {
                name: "early",
                runner: Runner::Init,
                summary: "kernel filesystems, console, kernel modules",
            },
            BootPhase::State => PhaseInfo {
                name: "state",
                runner: Runner::Init,
                summary: "the data partition (or RAM only)",
            },
            BootPhase::Config => PhaseInfo {
                name: "config",
                runner: Runner::ConfigCommand,
                summary: "verified config, the service table, the hostname",
            },
            BootPhase::Network => PhaseInfo {
                name: "network",
                runner: Runner::Services(Phase::Network),
                summary: "network services, waited for (bounded)",
            },
            BootPhase::Services => PhaseInfo {
                name: "services",
                runner: Runner::Services(Phase::Services),
                summary: "every other service, then the ready or degraded verdict",
            },
            BootPhase::Run => PhaseInfo {
                name: "run",
                runner: Runner::Supervision,
                summary: "supervision until shutdown",
            },
        }
    }

    /// Name on the console and the control socket.
    pub const fn name(self) -> &'static str {
        self.info().name
    }

    /// What runs it.
    pub const fn runner(self) -> Runner {
        self.info().runner
    }

    /// The phase called `name`.
    pub fn from_name(name: &str) -> Option<BootPhase> {
        BootPhase::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The phase after this one (none after the last).
    pub fn next(self) -> Option<BootPhase> {
        BootPhase::ALL.into_iter().find(|p| *p > self)
    }

    /// Position in boot order.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl AsRef<str> for BootPhase {
    fn as_ref(&self) -> &str {
        self.name()
    }
}

impl fmt::Display for BootPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Phase {
    /// The boot phase in which services of this table phase start.
    pub const fn boot_phase(self) -> BootPhase {
        match self {
            Phase::Network => BootPhase::Network,
            Phase::Services => BootPhase::Services,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn all_is_in_boot_order_and_complete() {
        for (i, phase) in BootPhase::ALL.into_iter().enumerate() {
            assert_eq!(phase.index(), i, "{phase}");
        }
        assert!(BootPhase::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(BootPhase::Run.next(), None);
        assert_eq!(BootPhase::Config.next(), Some(BootPhase::Network));
    }

    #[test]
    fn names_are_the_wire_names() {
        let names: Vec<&str> = BootPhase::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(
            names,
            ["early", "state", "config", "network", "services", "run"]
        );
        for phase in BootPhase::ALL {
            let json = serde_json::to_string(&phase).unwrap();
            assert_eq!(json, format!("\"{}\"", phase.name()));
            assert_eq!(BootPhase::from_name(phase.name()), Some(phase));
        }
        assert_eq!(BootPhase::from_name("boot"), None);
    }

    #[test]
    fn table_phases_are_run_by_their_boot_phase() {
        for phase in [Phase::Network, Phase::Services] {
            let boot = phase.boot_phase();
            assert_eq!(boot.runner(), Runner::Services(phase));
            // The service table and the boot phase use the same word.
            assert_eq!(
                serde_json::to_string(&phase).unwrap(),
                serde_json::to_string(&boot).unwrap()
            );
        }
    }
}
