//! The service dependency graph: start order, stop order, cycle detection.
//!
//! Owns the ordering rules only; it never looks at processes. Errors name the
//! offending services so a bad table can be fixed from the console line alone.

use std::collections::BTreeMap;

use crate::phase::BootPhase;
use crate::spec::ServiceSpec;

/// Why a set of services cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("service {service:?} depends on unknown service {dependency:?}")]
    UnknownDependency { service: String, dependency: String },
    #[error("dependency cycle: {}", .cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
    #[error("service {service:?} (phase {phase}) depends on {dependency:?} which starts later (phase {dependency_phase})")]
    PhaseInversion {
        service: String,
        phase: BootPhase,
        dependency: String,
        dependency_phase: BootPhase,
    },
}

/// Indices of `services` such that every service comes after its dependencies.
/// Ties keep table order, so the result is deterministic.
pub fn start_order(services: &[ServiceSpec]) -> Result<Vec<usize>, GraphError> {
    let index: BTreeMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    for spec in services {
        for dep in &spec.depends_on {
            let Some(&d) = index.get(dep.as_str()) else {
                return Err(GraphError::UnknownDependency {
                    service: spec.name.clone(),
                    dependency: dep.clone(),
                });
            };
            if services[d].phase > spec.phase {
                return Err(GraphError::PhaseInversion {
                    service: spec.name.clone(),
                    phase: spec.phase.boot_phase(),
                    dependency: dep.clone(),
                    dependency_phase: services[d].phase.boot_phase(),
                });
            }
        }
    }
    // Depth-first search with colours; the grey stack is the cycle when a grey
    // node is reached again.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        White,
        Grey,
        Black,
    }
    let mut marks = vec![Mark::White; services.len()];
    let mut order = Vec::with_capacity(services.len());
    let mut stack: Vec<usize> = Vec::new();

    fn visit(
        node: usize,
        services: &[ServiceSpec],
        index: &BTreeMap<&str, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), GraphError> {
        match marks[node] {
            Mark::Black => return Ok(()),
            Mark::Grey => {
                let start = stack.iter().position(|&n| n == node).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..]
                    .iter()
                    .map(|&n| services[n].name.clone())
                    .collect();
                cycle.push(services[node].name.clone());
                return Err(GraphError::Cycle { cycle });
            }
            Mark::White => {}
        }
        marks[node] = Mark::Grey;
        stack.push(node);
        for dep in &services[node].depends_on {
            // Unknown dependencies were rejected above.
            if let Some(&d) = index.get(dep.as_str()) {
                visit(d, services, index, marks, stack, order)?;
            }
        }
        stack.pop();
        marks[node] = Mark::Black;
        order.push(node);
        Ok(())
    }

    for node in 0..services.len() {
        visit(node, services, &index, &mut marks, &mut stack, &mut order)?;
    }
    Ok(order)
}

/// Names of the services that depend directly on `name`.
pub fn dependents<'a>(services: &'a [ServiceSpec], name: &str) -> Vec<&'a str> {
    services
        .iter()
        .filter(|s| s.depends_on.iter().any(|d| d == name))
        .map(|s| s.name.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::spec::Phase;

    fn spec(name: &str, deps: &[&str]) -> ServiceSpec {
        let mut s = ServiceSpec::new(name, &["/bin/true"]);
        s.depends_on = deps.iter().map(|d| d.to_string()).collect();
        s
    }

    fn names(services: &[ServiceSpec], order: &[usize]) -> Vec<String> {
        order.iter().map(|&i| services[i].name.clone()).collect()
    }

    #[test]
    fn dependencies_come_first() {
        let services = vec![
            spec("stack", &["vault", "consul"]),
            spec("vault", &["net"]),
            spec("consul", &["net"]),
            spec("net", &[]),
        ];
        let order = names(&services, &start_order(&services).unwrap());
        assert_eq!(order, ["net", "vault", "consul", "stack"]);
    }

    #[test]
    fn cycle_is_named() {
        let services = vec![
            spec("a", &["b"]),
            spec("b", &["c"]),
            spec("c", &["a"]),
            spec("d", &[]),
        ];
        let err = start_order(&services).unwrap_err();
        assert_eq!(
            err,
            GraphError::Cycle {
                cycle: vec!["a".into(), "b".into(), "c".into(), "a".into()]
            }
        );
        assert_eq!(err.to_string(), "dependency cycle: a -> b -> c -> a");
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let err = start_order(&[spec("a", &["a"])]).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: a -> a");
    }

    #[test]
    fn unknown_dependency_is_named() {
        let err = start_order(&[spec("pxe", &["nett"])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service \"pxe\" depends on unknown service \"nett\""
        );
    }

    #[test]
    fn network_service_cannot_wait_for_a_later_phase() {
        let mut net = spec("net", &["api"]);
        net.phase = Phase::Network;
        let err = start_order(&[net, spec("api", &[])]).unwrap_err();
        assert!(matches!(err, GraphError::PhaseInversion { .. }), "{err}");
    }

    #[test]
    fn dependents_are_found() {
        let services = vec![spec("a", &[]), spec("b", &["a"]), spec("c", &["a", "b"])];
        assert_eq!(dependents(&services, "a"), ["b", "c"]);
        assert!(dependents(&services, "c").is_empty());
    }
}
