//! `units`: systemd units for the Consul and Nomad clients (Nomad's only
//! where node.json names Nomad servers: the site runs Nomad), and, on the
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
    let mut units = vec![("consul", CONSUL_UNIT, consul_unit())];
    // No Nomad on the site: no Nomad unit to start (and fail).
    if ctx.runs_nomad() {
        units.push(("nomad", NOMAD_UNIT, nomad_unit()));
    }
    let names: Vec<&str> = units.iter().map(|(_, unit, _)| *unit).collect();
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
            "{} written; nothing started (--root is not /)",
            names.join(" and ")
        ));
    }
    if !Path::new("/run/systemd/system").is_dir() {
        return Err(StepError::NoSystemd);
    }
    systemctl(&["daemon-reload"])?;
    let mut enable = vec!["enable"];
    enable.extend(&names);
    systemctl(&enable)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::{nomad_config, setup, Options};
    use super::*;

    fn ctx_for(dir: &Path, nomad_servers: &[&str]) -> Ctx {
        let root = Root::new(dir);
        let node = serde_json::json!({
            "appliance": "http://192.168.100.1/",
            "mac": "52:54:00:6b:00:10",
            "profile": "dev",
            "stack": {
                "datacenter": "lab",
                "consul_join": ["192.168.100.1:8301"],
                "nomad_servers": nomad_servers,
            },
        });
        root.write(paths::NODE, node.to_string().as_bytes(), 0o644)
            .unwrap();
        setup(
            &root,
            &Options {
                root: dir.to_path_buf(),
                source_address: None,
            },
        )
        .unwrap()
    }

    /// A site without Nomad: the node runs Consul only, and no Nomad unit
    /// is left to fail for want of a binary the appliance does not offer.
    #[test]
    fn no_nomad_servers_means_no_nomad_client() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = ctx_for(dir.path(), &[]);
        let said = nomad_config::run(&mut ctx).unwrap();
        assert!(said.contains("no Nomad client"), "{said}");
        assert!(!dir.path().join(paths::NOMAD_CONFIG).exists());
        let said = run(&mut ctx).unwrap();
        assert_eq!(
            said,
            "consul.service written; nothing started (--root is not /)"
        );
        let units = dir.path().join(paths::UNIT_DIR);
        assert!(units.join(CONSUL_UNIT).is_file());
        assert!(!units.join(NOMAD_UNIT).exists());

        let dir = tempfile::tempdir().unwrap();
        let mut ctx = ctx_for(dir.path(), &["192.168.100.1:4647"]);
        let said = run(&mut ctx).unwrap();
        assert!(
            said.starts_with("consul.service and nomad.service written"),
            "{said}"
        );
        assert!(dir.path().join(paths::UNIT_DIR).join(NOMAD_UNIT).is_file());
    }
}
