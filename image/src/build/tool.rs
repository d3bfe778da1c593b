//! Runs the build machine's tools (grub-mkrescue, mkfs.*, objcopy, sfdisk,
//! mtools) and turns their failures into one-line errors naming the tool,
//! what it was doing, and its stderr.
//!
//! It never runs a shell: arguments are passed as a vector.

use std::ffi::OsStr;
use std::io::Write;
use std::process::{Command, Stdio};

use super::error::BuildError;

/// A host tool and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

pub const GRUB_MKRESCUE: Tool = Tool {
    program: "grub-mkrescue",
    package: "grub-common grub-pc-bin grub-efi-amd64-bin xorriso mtools",
};
pub const OBJCOPY: Tool = Tool {
    program: "objcopy",
    package: "binutils",
};
pub const MKFS_VFAT: Tool = Tool {
    program: "mkfs.vfat",
    package: "dosfstools",
};
pub const MKFS_EXT4: Tool = Tool {
    program: "mkfs.ext4",
    package: "e2fsprogs",
};
pub const MMD: Tool = Tool {
    program: "mmd",
    package: "mtools",
};
pub const MCOPY: Tool = Tool {
    program: "mcopy",
    package: "mtools",
};
pub const SFDISK: Tool = Tool {
    program: "sfdisk",
    package: "fdisk",
};
pub const BUSYBOX: Tool = Tool {
    program: "busybox",
    package: "busybox-static",
};

impl Tool {
    /// Runs the tool to completion; `stdin` is fed to it if given.
    pub fn run<I, S>(
        &self,
        action: &str,
        args: I,
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>, BuildError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_program(self.program.as_ref(), action, args, env, stdin)
    }

    /// As `run`, for a tool found at another path (e.g. --busybox).
    pub fn run_program<I, S>(
        &self,
        program: &OsStr,
        action: &str,
        args: I,
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>, BuildError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => BuildError::ToolMissing {
                tool: self.program.to_string(),
                package: self.package.to_string(),
            },
            _ => BuildError::ToolFailed {
                tool: self.program.to_string(),
                action: action.to_string(),
                status: "could not start".to_string(),
                stderr: err.to_string(),
            },
        })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A tool that exits early closes its stdin; its exit status
            // below then says why, so a write error here is not the cause.
            let _ = pipe.write_all(input);
        }
        let output = child
            .wait_with_output()
            .map_err(|err| BuildError::ToolFailed {
                tool: self.program.to_string(),
                action: action.to_string(),
                status: "lost".to_string(),
                stderr: err.to_string(),
            })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr = stderr
                .trim()
                .lines()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(" / ");
            return Err(BuildError::ToolFailed {
                tool: self.program.to_string(),
                action: action.to_string(),
                status: output.status.to_string(),
                stderr,
            });
        }
        Ok(output.stdout)
    }
}
