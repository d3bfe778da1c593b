//! Running host tools (`ip`, `dnsmasq`, `qemu-system-x86_64`) with errors that
//! name the command line and its stderr. Lab tooling may shell out to `ip`;
//! appliance code never does. Nothing here runs a shell.

use crate::error::{LabError, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Renders a command line for error messages and logs.
pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion; a non-zero exit is an error carrying its stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let command = display(cmd);
    let out = cmd.output().map_err(|source| LabError::Spawn {
        command: command.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(LabError::CommandFailed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// `ip <args>`, failing with the command line and stderr.
pub fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

/// `ip -n <ns> <args>`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<Output> {
    run(Command::new("ip").arg("-n").arg(ns).args(args))
}

/// A command that will run inside network namespace `ns` (`ip netns exec`
/// execs the program, so the spawned PID is the program's own).
pub fn in_netns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Finds `tool` on PATH, or explains how to install it.
pub fn require_tool(tool: &str) -> Result<PathBuf> {
    find_on_path(tool).ok_or_else(|| LabError::ToolMissing {
        tool: tool.to_string(),
        fix: "install the lab's packages with `tests/install-deps` (as root)".into(),
    })
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return Path::new(tool).is_file().then(|| PathBuf::from(tool));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// Fails with a clear message unless the effective user is root.
pub fn require_root(what: &str) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(LabError::NotRoot(what.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_command_error_names_command_and_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
    }

    #[test]
    fn missing_tool_names_the_fix() {
        let msg = require_tool("kindling-no-such-tool")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("kindling-no-such-tool") && msg.contains("tests/install-deps"),
            "{msg}"
        );
    }
}
