//! kindling-init's wire contract, for init and for every program that talks to it.
//!
//! - `spec`, `table`, `graph`: the service table (`services.json`), its
//!   validation and start order;
//! - `phase`: the boot phases as one table;
//! - `control`: the control socket's request/response types and a blocking client;
//! - `notify`: a service's readiness line to init;
//! - `accounts`: the fixed uids and gids of the services.
//!
//! It depends on nothing of init's machinery and never starts a process, so
//! the appliance daemon, the stack bootstrap and the CLI can link it without
//! linking PID 1. Module dependencies run one way: `spec` ← `phase` ← `graph`
//! ← `table`; `control` and `notify` stand alone.

pub mod accounts;
pub mod control;
pub mod credentials;
pub mod graph;
pub mod notify;
pub mod phase;
pub mod spec;
pub mod table;

pub use control::{
    Ack, Client, ControlError, ListResponse, LogStorage, LogsStatus, PhaseState, PhaseStatus,
    Request, ServiceState, ServiceStatus, SyslogStatus, DEFAULT_SOCKET,
};
pub use notify::{notify_ready, take_notify_pipe, NotifyError, NotifyPipe, NOTIFY_ENV};
pub use phase::{BootPhase, PhaseInfo, Runner};
pub use spec::{
    HttpTarget, LogLimit, OutputLogLimits, Phase, Readiness, RestartPolicy, ServiceSpec,
    ServiceTable, DEFAULT_STOP_GRACE_MS,
};
pub use table::TableError;
