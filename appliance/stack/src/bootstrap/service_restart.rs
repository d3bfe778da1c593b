//! Restarting a service the bootstrap rewrote the configuration of, through
//! init's control socket (docs/contracts.md "Control socket").

use super::Run;
use kindling_init_protocol::Client;
use std::path::Path;
use std::time::Duration;

impl Run {
    /// Init's control socket, when there is one to ask (tests and a
    /// bootstrap run by hand may have none).
    pub(super) fn init_socket(&self) -> Option<&Path> {
        self.opts
            .control_socket
            .as_deref()
            .filter(|socket| socket.exists())
    }
}

/// Asks init to restart `name` and waits (up to `patience`) until init
/// reports a new process ready. Init answers the request before it stops
/// the old process: a step that went on at once would talk to the one on
/// its way out (and see it sealed, or its connection cut).
pub(super) async fn restart_service(
    socket: &Path,
    name: &str,
    patience: Duration,
) -> Result<(), String> {
    let init = Client::new(socket);
    let before = restarts(&init, name)?.0;
    init.restart(name).map_err(|e| e.to_string())?;
    let back = crate::patience::yes_within(patience, || async {
        let (count, ready) = restarts(&init, name)?;
        Ok::<_, String>(count > before && ready)
    })
    .await?;
    if back {
        Ok(())
    } else {
        Err(format!(
            "init was asked to restart {name} but did not report it running and ready again within {} s",
            patience.as_secs()
        ))
    }
}

/// How often init has started `name` again, and whether it is ready now.
fn restarts(init: &Client, name: &str) -> Result<(u32, bool), String> {
    let list = init
        .list()
        .map_err(|e| format!("listing init's services: {e}"))?;
    list.services
        .iter()
        .find(|s| s.name == name)
        .map(|s| (s.restarts, s.ready))
        .ok_or_else(|| format!("init runs no service named {name}"))
}
