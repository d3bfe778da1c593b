//! `units`: systemd units for the Consul and Nomad clients, and, on the
//! running system (`--root /`) under systemd, `daemon-reload`, `enable`,
//! and a start (a restart where this run changed a config, certificate or
//! binary); sshd is reloaded when its host certificate changed. Elsewhere
//! the units are written and nothing is started.

use super::Ctx;
use crate::error::StepError;
use crate::files::{paths, Root};
use std::path::Path;
use std::process::Command;

const CONSUL_UNIT: &str = "consul.service";
const NOMAD_UNIT: &str = "nomad.service";

fn consul_unit() -> String {
    format!(
        "# Written by kindling-node.\n[Unit]\nDescription=Consul client agent (kindling)\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nExecStart={bin}/consul agent -config-dir={conf}\nExecReload=/bin/kill -HUP $MAINPID\nKillSignal=SIGINT\nRestart=on-failure\nRestartSec=5\nLimitNOFILE=65536\n\n[Install]\nWantedBy=multi-user.target\n",
        bin = Root::on_node(paths::BIN_DIR),
        conf = Root::on_node("etc/consul.d"),
    )
}

fn nomad_unit() -> String {
    format!(
        "# Written by kindling-node.\n[Unit]\nDescription=Nomad client (kindling)\nWants=network-online.target consul.service\nAfter=network-online.target consul.service\n\n[Service]\nExecStart={bin}/nomad agent -config={conf}\nExecReload=/bin/kill -HUP $MAINPID\nKillMode=process\nKillSignal=SIGINT\nRestart=on-failure\nRestartSec=5\nLimitNOFILE=65536\nTasksMax=infinity\n\n[Install]\nWantedBy=multi-user.target\n",
        bin = Root::on_node(paths::BIN_DIR),
        conf = Root::on_node("etc/nomad.d"),
    )
}

pub(super) fn run(ctx: &mut Ctx) -> Result<String, StepError> {
    let units = [
        ("consul", CONSUL_UNIT, consul_unit()),
        ("nomad", NOMAD_UNIT, nomad_unit()),
    ];
    for (service, unit, text) in &units {
        if ctx.root.write(
            &format!("{}/{unit}", paths::UNIT_DIR),
            text.as_bytes(),
            0o644,
        )? {
            ctx.changed.insert(service);
        }
    }
    if !ctx.root.is_system() {
        return Ok(format!(
            "{CONSUL_UNIT} and {NOMAD_UNIT} written; nothing started (--root is not /)"
        ));
    }
    if !Path::new("/run/systemd/system").is_dir() {
        return Err(StepError::NoSystemd);
    }
    systemctl(&["daemon-reload"])?;
    systemctl(&["enable", CONSUL_UNIT, NOMAD_UNIT])?;
    let mut did = Vec::new();
    for (service, unit, _) in &units {
        let verb = if ctx.changed.contains(service) {
            "restart"
        } else {
            "start"
        };
        systemctl(&[verb, unit])?;
        did.push(format!("{unit} {verb}ed"));
    }
    if ctx.changed.contains("ssh") {
        // Debian and Ubuntu name sshd's unit ssh.service.
        match systemctl(&["reload-or-restart", "ssh.service"]) {
            Ok(()) => did.push("ssh.service reloaded".into()),
            Err(e) => did.push(format!(
                "sshd not reloaded ({e}); it presents the certificate from its next start"
            )),
        }
    }
    Ok(did.join("; "))
}

fn systemctl(args: &[&str]) -> Result<(), StepError> {
    let command = format!("systemctl {}", args.join(" "));
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| StepError::Command {
            command: command.clone(),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(StepError::Command {
            command,
            reason: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}
