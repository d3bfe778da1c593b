//! kindling's end-to-end scenarios in the QEMU lab. All are `#[ignore]`d so
//! `cargo test --workspace` stays fast; `tests/e2e` runs them with
//! `--ignored --test-threads=1` (the QEMU lock allows one lab at a time).
//! A failed scenario keeps its serial logs under `build/e2e-logs/<scenario>/`.

mod appliance_boot;
// The DevTools-protocol driver of kindlingd's status-page test, shared.
#[path = "../../appliance/kindlingd/tests/common/cdp.rs"]
mod cdp;
mod debian_node;
mod install_iso;
mod node_join;
mod node_payload;
mod node_pxe;
mod power_loss;
mod restore_lab;
mod service_logs;
mod stack_lab;
mod status_page;
mod update_push;

use std::time::Duration;

/// Under TCG the appliance reaches ready in well under this; the bound only
/// stops a hung boot from eating the CI budget.
pub const APPLIANCE_READY_TIMEOUT: Duration = Duration::from_secs(240);
pub const NODE_TIMEOUT: Duration = Duration::from_secs(240);

pub const READY: &str = kindling_lab::bench::READY_PATTERN;
/// Lines that end a wait early: a degraded appliance or a dead kernel.
pub const APPLIANCE_FAIL: &str = r"kindling: degraded:|Kernel panic";
pub const NODE_FAIL: &str = r"kindling-node: FAILED|Kernel panic|No bootable device";
