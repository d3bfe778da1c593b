//! Which phone-home event a node may send in which state, and where it
//! leads: [`EVENT_RULES`], one row per event, as data.
//!
//! Pure. A new event is one row here (and its handling, if any, where the
//! event is received). Moving a node back to `booting` is not an event: only
//! the appliance's own observation of a new PXE boot (the lease holder
//! fetching its iPXE script) starts a new cycle. Nor is `joined`: a node's
//! own `joined` is recorded as a claim, and only the appliance's Consul
//! catalog moves it there (`membership`).

use kindling_api::nodes::NodeState::{self, Booting, Discovered, Installed, Joined, Left};

/// One event's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRule {
    pub event: &'static str,
    /// The states the event is accepted in.
    pub from: &'static [NodeState],
    /// The state after it; `None` leaves the state as it is.
    pub to: Option<NodeState>,
}

/// Every event a node may send. Repeating the event that led to the current
/// state is accepted (clients retry); anything that would skip a step or go
/// back is refused.
pub const EVENT_RULES: &[EventRule] = &[
    // The node's payload or installer runs (it may report before or after
    // fetching its NoCloud documents).
    EventRule {
        event: "booted",
        from: &[Discovered, Booting],
        to: Some(Booting),
    },
    EventRule {
        event: "nocloud",
        from: &[Discovered, Booting],
        to: Some(Booting),
    },
    // An installer finished, or the installed system's first boot.
    EventRule {
        event: "installed",
        from: &[Booting, Installed],
        to: Some(Installed),
    },
    // A claim only: the appliance checks its own Consul catalog
    // (`membership::judge`) and records why the node is not joined yet.
    EventRule {
        event: JOINED,
        from: &[Installed, Joined, Left],
        to: None,
    },
    // The node agent failed at a step (`step`, `error`): recorded as the
    // node's failure, no state change.
    EventRule {
        event: FAILED,
        from: &[Booting, Installed, Joined, Left],
        to: None,
    },
    // The node could not unwrap its grant (already unwrapped, or expired):
    // no state change; the appliance looks the grant up at once.
    EventRule {
        event: GRANT_UNWRAP_FAILED,
        from: &[Booting, Installed],
        to: None,
    },
    // One step of the node agent (`kindling-node`: grant, login, tls, …)
    // with its outcome; a rerun on a joined node reports too. No state
    // change: `joined` is the appliance's own observation.
    EventRule {
        event: ENROLL_STEP,
        from: &[Booting, Installed, Joined, Left],
        to: None,
    },
];

/// The event the node agent reports each of its steps with.
pub const ENROLL_STEP: &str = "enroll-step";

/// The event a node sends when unwrapping its grant failed.
pub const GRANT_UNWRAP_FAILED: &str = "grant-unwrap-failed";

/// The node's claim that it joined (checked against the catalog).
pub const JOINED: &str = "joined";

/// The node agent's report of a failed step.
pub const FAILED: &str = "failed";

/// Why an event was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("unknown event {0:?}: expected one of {known}", known = known_events())]
    UnknownEvent(String),
    #[error(
        "event {event:?} is not valid while the node is {state}: it is accepted only in {allowed}"
    )]
    NotNow {
        event: String,
        state: &'static str,
        allowed: String,
    },
}

fn known_events() -> String {
    EVENT_RULES
        .iter()
        .map(|r| r.event)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The wire name of a state (`booting`).
pub fn state_name(state: NodeState) -> &'static str {
    match state {
        Discovered => "discovered",
        Booting => "booting",
        Installed => "installed",
        Joined => "joined",
        Left => "left",
    }
}

/// The state after `event` in `state`, or why the event is refused.
pub fn next_state(state: NodeState, event: &str) -> Result<NodeState, TransitionError> {
    let rule = EVENT_RULES
        .iter()
        .find(|r| r.event == event)
        .ok_or_else(|| TransitionError::UnknownEvent(event.chars().take(40).collect()))?;
    if !rule.from.contains(&state) {
        return Err(TransitionError::NotNow {
            event: event.to_string(),
            state: state_name(state),
            allowed: rule
                .from
                .iter()
                .map(|s| state_name(*s))
                .collect::<Vec<_>>()
                .join(" or "),
        });
    }
    Ok(rule.to.unwrap_or(state))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashSet;

    /// Every (state, event) pair: the state it leads to, or `None` for a
    /// refusal. The whole table, so a changed rule shows here.
    #[test]
    fn the_whole_table() {
        let cases: &[(NodeState, &str, Option<NodeState>)] = &[
            (Discovered, "booted", Some(Booting)),
            (Discovered, "nocloud", Some(Booting)),
            (Discovered, "installed", None),
            (Discovered, JOINED, None),
            (Discovered, FAILED, None),
            (Discovered, GRANT_UNWRAP_FAILED, None),
            (Booting, "booted", Some(Booting)),
            (Booting, "nocloud", Some(Booting)),
            (Booting, "installed", Some(Installed)),
            (Booting, JOINED, None),
            (Booting, FAILED, Some(Booting)),
            (Booting, GRANT_UNWRAP_FAILED, Some(Booting)),
            (Installed, "booted", None),
            (Installed, "nocloud", None),
            (Installed, "installed", Some(Installed)),
            // A claim: the state stays until the catalog shows the node.
            (Installed, JOINED, Some(Installed)),
            (Installed, FAILED, Some(Installed)),
            (Installed, GRANT_UNWRAP_FAILED, Some(Installed)),
            (Joined, "booted", None),
            (Joined, "nocloud", None),
            (Joined, "installed", None),
            (Joined, JOINED, Some(Joined)),
            (Joined, FAILED, Some(Joined)),
            (Joined, GRANT_UNWRAP_FAILED, None),
            (Left, "booted", None),
            (Left, "nocloud", None),
            (Left, "installed", None),
            (Left, JOINED, Some(Left)),
            (Left, FAILED, Some(Left)),
            (Left, GRANT_UNWRAP_FAILED, None),
            (Discovered, ENROLL_STEP, None),
            (Booting, ENROLL_STEP, Some(Booting)),
            (Installed, ENROLL_STEP, Some(Installed)),
            (Joined, ENROLL_STEP, Some(Joined)),
            (Left, ENROLL_STEP, Some(Left)),
        ];
        for (state, event, want) in cases {
            assert_eq!(
                next_state(*state, event).ok(),
                *want,
                "{event} while {}",
                state_name(*state)
            );
        }
        assert_eq!(
            cases.len(),
            5 * EVENT_RULES.len(),
            "every state × event is listed"
        );
    }

    #[test]
    fn no_event_makes_a_node_joined() {
        for rule in EVENT_RULES {
            assert_ne!(
                rule.to,
                Some(Joined),
                "{} would believe the node",
                rule.event
            );
            assert_ne!(rule.to, Some(Left), "{}", rule.event);
        }
    }

    #[test]
    fn no_event_moves_a_node_back() {
        for rule in EVENT_RULES {
            for from in rule.from {
                if let Some(to) = rule.to {
                    assert!(to >= *from, "{} moves {from:?} back to {to:?}", rule.event);
                }
            }
        }
    }

    #[test]
    fn events_are_listed_once() {
        let names: HashSet<&str> = EVENT_RULES.iter().map(|r| r.event).collect();
        assert_eq!(names.len(), EVENT_RULES.len());
    }

    #[test]
    fn refusals_name_the_event_the_state_and_what_is_allowed() {
        let e = next_state(Joined, "booted").unwrap_err();
        assert_eq!(
            e.to_string(),
            "event \"booted\" is not valid while the node is joined: it is accepted only in discovered or booting"
        );
        let e = next_state(Booting, "exploded").unwrap_err();
        assert!(matches!(e, TransitionError::UnknownEvent(_)));
        assert!(
            e.to_string()
                .contains("booted, nocloud, installed, joined, failed"),
            "{e}"
        );
    }
}
