//! Running the step table as a graph: a step starts as soon as every step
//! it needs ([`Step::after`]) has finished, so steps with nothing between
//! them run at the same time (Consul's wait for its leader while Vault
//! initialises; the steps after `consul-acl` side by side). All of it runs
//! in the caller's task: the steps wait on Vault and Consul, not on the CPU.
//!
//! Owns the order of starts and what happens after a failure: no further
//! step starts, and the steps already running are finished, never dropped
//! halfway: a step cut off between Vault answering `sys/init` and the
//! secrets file being written would lose the keys. Steps that only wait
//! give up on their own once the run is stopping (`Run::stopping`).

use super::{Run, Step, StepError};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::collections::HashSet;

/// Runs every step of [`Step::ALL`]; the first step that failed and why.
pub(super) async fn run_all(run: &Run) -> Result<(), (Step, StepError)> {
    let mut started: HashSet<Step> = HashSet::new();
    let mut finished: HashSet<Step> = HashSet::new();
    let mut running = FuturesUnordered::new();
    let mut first_failure: Option<(Step, StepError)> = None;
    loop {
        if first_failure.is_none() {
            let ready: Vec<Step> = ready_to_start(&started, &finished).copied().collect();
            for step in ready {
                started.insert(step);
                run.begin(step);
                running.push(async move { (step, step.run(run).await) });
            }
        }
        let Some((step, result)) = running.next().await else {
            break;
        };
        match result {
            Ok(outcome) => {
                run.finish(step, outcome);
                finished.insert(step);
            }
            Err(error) => {
                run.fail(step, &error);
                first_failure.get_or_insert((step, error));
            }
        }
    }
    match first_failure {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// The steps not started yet whose needs are all finished, in table order.
fn ready_to_start<'a>(
    started: &'a HashSet<Step>,
    finished: &'a HashSet<Step>,
) -> impl Iterator<Item = &'static Step> + 'a {
    Step::ALL.iter().filter(move |step| {
        !started.contains(*step) && step.after().iter().all(|need| finished.contains(need))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays a whole run in waves (every ready step starts, then all
    /// finish): every step starts exactly once, none before what it needs.
    #[test]
    fn every_step_starts_once_after_its_needs() {
        let mut started = HashSet::new();
        let mut finished = HashSet::new();
        let mut waves = 0;
        while finished.len() < Step::ALL.len() {
            let wave: Vec<Step> = ready_to_start(&started, &finished).copied().collect();
            assert!(!wave.is_empty(), "no step can start after {finished:?}");
            for step in &wave {
                assert!(step.after().iter().all(|n| finished.contains(n)));
                assert!(started.insert(*step), "{step} started twice");
            }
            finished.extend(wave);
            waves += 1;
        }
        assert!(
            waves < Step::ALL.len(),
            "some steps must be able to run side by side"
        );
    }

    /// Consul's wait needs nothing from Vault: it starts with the first steps.
    #[test]
    fn consul_is_waited_for_from_the_start() {
        let first: Vec<Step> = ready_to_start(&HashSet::new(), &HashSet::new())
            .copied()
            .collect();
        assert!(first.contains(&Step::ConsulApi), "{first:?}");
        assert!(first.contains(&Step::VaultStorage), "{first:?}");
    }
}
