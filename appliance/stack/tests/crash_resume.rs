//! kill -9 of Vault or Consul while the cold bootstrap runs, at several
//! steps; after a restart the rerun must finish with nothing lost and nothing
//! done twice. Vault runs in the secure `manual` unseal mode: the test plays
//! the operator, decrypting the stored init secrets with its age identity and
//! submitting the shares through the status API handler, which proves the
//! stored encrypted keys still unseal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use kindling_stack::bootstrap::{self, BootstrapError, Step};
use kindling_stack::status::{self, OverallState, StackStatus, StepState};
use std::time::{Duration, Instant};

fn step_state(lab: &Lab, step: &str) -> Option<StepState> {
    status::read(&lab.layout.status_file)
        .ok()?
        .steps
        .into_iter()
        .find(|s| s.name == step)
        .map(|s| s.state)
}

/// Runs the bootstrap; meanwhile acts as the operator whenever it waits for
/// unseal shares.
fn run_as_operator(
    lab: &Lab,
    identity: &age::x25519::Identity,
) -> Result<StackStatus, BootstrapError> {
    let opts = lab.options();
    let handle = std::thread::spawn(move || rt().block_on(bootstrap::run(opts)));
    let mut submitted = false;
    while !handle.is_finished() {
        if !submitted && step_state(lab, Step::VaultUnseal.name()) == Some(StepState::Waiting) {
            submitted = true;
            let secrets = lab.init_secrets(identity);
            for key in secrets
                .keys_base64
                .iter()
                .take(usize::from(secrets.threshold))
            {
                let reply = kindling_stack::api::vault_unseal(
                    &lab.layout,
                    serde_json::json!({"key": key}).to_string().as_bytes(),
                )
                .unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    !serde_json::to_string(&reply)
                        .unwrap()
                        .contains(key.as_str()),
                    "the API never echoes a share"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    handle.join().unwrap()
}

/// Starts a cold bootstrap and kills `service` -9 once `step` is running.
fn cold_run_killed_at(
    lab: &mut Lab,
    step: &str,
    service: &str,
) -> Result<StackStatus, BootstrapError> {
    let mut opts = lab.options();
    // The killed service stays down in this run: fail fast instead of waiting for it.
    opts.service_timeout = Duration::from_secs(10);
    let handle = std::thread::spawn(move || rt().block_on(bootstrap::run(opts)));
    let deadline = Instant::now() + Duration::from_secs(90);
    while !handle.is_finished() && Instant::now() < deadline {
        if step_state(lab, step) == Some(StepState::Running) {
            lab.kill9(service);
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    handle.join().unwrap()
}

#[test]
fn kill_9_during_bootstrap_then_resume() {
    let Some(tools) = tools() else { return };
    // (step during which to kill, service to kill)
    for (step, service) in [
        (Step::VaultSetup.name(), "vault"),
        (Step::ConsulAcl.name(), "consul"),
        (Step::KvMirror.name(), "consul"),
    ] {
        let identity = new_identity();
        let mut lab = Lab::new(&tools, site("manual", true, &identity));
        lab.start("consul");
        lab.start("vault");
        lab.start("nomad");

        let first = cold_run_killed_at(&mut lab, step, service);
        let init_after_first = std::fs::read(lab.init_file())
            .unwrap_or_else(|_| panic!("{step}: init secrets must exist"));
        eprintln!(
            "killed {service} during {step}: first run {}",
            if first.is_ok() {
                "finished anyway"
            } else {
                "failed as expected"
            }
        );

        lab.start(service);
        let resumed = run_as_operator(&lab, &identity).unwrap_or_else(|e| {
            panic!(
                "resume after killing {service} during {step}: {e}\n{}",
                lab.status_text()
            )
        });
        assert_eq!(resumed.state, OverallState::Ready);
        let state_of = |name: &str| {
            resumed
                .steps
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.state)
                .unwrap()
        };
        assert_eq!(
            state_of(Step::VaultInit.name()),
            StepState::AlreadyDone,
            "{step}: Vault is never initialised twice"
        );
        assert_eq!(
            std::fs::read(lab.init_file()).unwrap(),
            init_after_first,
            "{step}: the init secrets are kept as they were"
        );
        let consul_detail = resumed
            .steps
            .iter()
            .find(|s| s.name == Step::ConsulAcl.name())
            .unwrap()
            .detail
            .clone();
        assert!(!consul_detail.contains("someone else"), "{consul_detail}");

        // A third run finds everything done.
        let again = run_as_operator(&lab, &identity).unwrap();
        // vault-api and consul-api wait; vault-storage (raft storage) and
        // the restore steps (no restore staged) are skipped.
        for s in again.steps.iter().filter(|s| {
            ![
                Step::VaultApi,
                Step::ConsulApi,
                Step::VaultStorage,
                Step::VaultRestore,
                Step::ConsulRestore,
            ]
            .iter()
            .any(|w| w.name() == s.name)
        }) {
            assert_eq!(
                s.state,
                StepState::AlreadyDone,
                "{step}: {} on the run after the resume",
                s.name
            );
        }
        assert_eq!(
            lab.nomad.as_ref().unwrap().successful_bootstraps(),
            1,
            "{step}: one Nomad ACL bootstrap"
        );
    }
}

fn state_of(status: &StackStatus, step: Step) -> (StepState, String) {
    status
        .steps
        .iter()
        .find(|s| s.name == step.name())
        .map(|s| (s.state, s.error.clone().unwrap_or_default()))
        .unwrap()
}

/// Runs the bootstrap with Consul down (a short service timeout, no limit
/// on the wait for unseal shares); it must end on its own, failed at
/// `consul-api`.
fn run_with_consul_down(lab: &Lab) -> StackStatus {
    let mut opts = lab.options();
    opts.service_timeout = Duration::from_secs(3);
    opts.unseal_timeout = None;
    let started = Instant::now();
    let handle = std::thread::spawn(move || rt().block_on(bootstrap::run(opts)));
    while !handle.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run kept going after consul-api failed\n{}",
            lab.status_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = handle.join().unwrap().unwrap_err();
    assert_eq!(err.step(), Some(Step::ConsulApi), "{}", lab.status_text());
    let status = status::read(&lab.layout.status_file).unwrap();
    assert_eq!(status.state, OverallState::Failed);
    assert_eq!(state_of(&status, Step::ConsulAcl).0, StepState::Pending);
    status
}

/// Consul's wait runs beside Vault's steps, so they fail or finish apart:
/// - cold, Consul down: Vault is initialised and set up, Consul's steps
///   never start; with Consul up the next run finishes without
///   initialising Vault again;
/// - Vault sealed waiting for the operators' shares when Consul's wait
///   fails: the run ends there (it does not hold on until someone
///   unseals) and the next run finishes.
#[test]
fn consul_down_beside_vault_then_resume() {
    let Some(tools) = tools() else { return };
    let identity = new_identity();
    let mut lab = Lab::new(&tools, site("manual", true, &identity));
    lab.start("vault");
    lab.start("nomad");

    let cold = run_with_consul_down(&lab);
    assert_eq!(state_of(&cold, Step::VaultInit).0, StepState::Done);
    assert_eq!(state_of(&cold, Step::VaultSetup).0, StepState::Done);
    lab.start("consul");
    let resumed = run_as_operator(&lab, &identity)
        .unwrap_or_else(|e| panic!("resume after a cold run: {e}\n{}", lab.status_text()));
    assert_eq!(resumed.state, OverallState::Ready);
    assert_eq!(
        state_of(&resumed, Step::VaultInit).0,
        StepState::AlreadyDone
    );
    assert_eq!(state_of(&resumed, Step::ConsulAcl).0, StepState::Done);

    // A reboot where Consul does not come back: Vault is sealed.
    lab.kill9("consul");
    lab.kill9("vault");
    lab.start("vault");
    let sealed = run_with_consul_down(&lab);
    let (unseal, why) = state_of(&sealed, Step::VaultUnseal);
    assert_eq!(unseal, StepState::Failed, "{}", lab.status_text());
    assert!(why.contains("another step failed"), "{why}");
    lab.start("consul");
    let resumed = run_as_operator(&lab, &identity)
        .unwrap_or_else(|e| panic!("resume after a sealed run: {e}\n{}", lab.status_text()));
    assert_eq!(resumed.state, OverallState::Ready);
    assert_eq!(
        state_of(&resumed, Step::ConsulAcl).0,
        StepState::AlreadyDone
    );
}
