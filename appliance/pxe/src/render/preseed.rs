//! Debian installer preseed for one node: unattended install on the first
//! disk, the profile's SSH keys for root, and a late command that runs
//! `/begin.sh` on the installed system's first boot and reports "installed".
//!
//! Owns preseed text only.

use super::cloud_init::{begin_command, installed_report_command, HttpClient};
use super::{shell_quote, NodeContext};
use std::fmt::Write;

/// Where the installed system keeps its first-boot command.
const BEGIN_SCRIPT: &str = "/usr/local/sbin/kindling-begin";

/// `text` as one shell word for `printf '%b'`: d-i reads the late command
/// as one line, so newlines travel as `\n` (and backslashes as `\\`) for
/// printf to turn back.
fn printf_b_arg(text: &str) -> String {
    shell_quote(&text.replace('\\', "\\\\").replace('\n', "\\n"))
}

pub fn render(ctx: &NodeContext<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# kindling preseed for {} (profile {})",
        ctx.mac, ctx.profile_name
    );
    out.push_str(
        "d-i debian-installer/locale string en_US.UTF-8\n\
         d-i keyboard-configuration/xkb-keymap select us\n",
    );
    // Fetched over the network, this file comes after netcfg ran: these
    // three also ride on the kernel command line (render::ipxe). Here they
    // serve a preseed loaded another way. The NIC is named by its MAC
    // (netcfg takes aa:bb:cc:dd:ee:ff), the one on the bootstrap LAN.
    let _ = writeln!(out, "d-i netcfg/choose_interface select {}", ctx.mac);
    let _ = writeln!(out, "d-i netcfg/get_hostname string {}", ctx.hostname);
    let _ = writeln!(out, "d-i netcfg/get_domain string {}", ctx.domain);
    out.push_str(
        "d-i netcfg/hostname string \n\
         d-i mirror/country string manual\n\
         d-i mirror/http/hostname string deb.debian.org\n\
         d-i mirror/http/directory string /debian\n\
         d-i mirror/http/proxy string\n\
         d-i clock-setup/utc boolean true\n\
         d-i time/zone string Etc/UTC\n",
    );
    // Root logs in by the profile's SSH keys only. Its password hash is
    // `*` (no password matches), not `!`: user-setup takes a preseeded
    // `!` for "no password given" and asks for one at critical priority.
    out.push_str(
        "d-i passwd/root-login boolean true\n\
         d-i passwd/root-password-crypted password *\n\
         d-i passwd/make-user boolean false\n",
    );
    // The first disk, whatever its name (partman-auto asks, at critical
    // priority, which disk when there are several), and a node installed
    // before may carry LVM or RAID that partman would ask to remove.
    out.push_str(
        "d-i partman/early_command string debconf-set partman-auto/disk \"$(list-devices disk | head -n1)\"\n\
         d-i partman-auto/method string regular\n\
         d-i partman-lvm/device_remove_lvm boolean true\n\
         d-i partman-md/device_remove_md boolean true\n\
         d-i partman-lvm/confirm boolean true\n\
         d-i partman-lvm/confirm_nooverwrite boolean true\n\
         d-i partman-auto/choose_recipe select atomic\n\
         d-i partman-partitioning/confirm_write_new_label boolean true\n\
         d-i partman/choose_partition select finish\n\
         d-i partman/confirm boolean true\n\
         d-i partman/confirm_nooverwrite boolean true\n\
         tasksel tasksel/first multiselect standard, ssh-server\n\
         d-i pkgsel/include string curl ca-certificates\n\
         popularity-contest popularity-contest/participate boolean false\n\
         d-i grub-installer/only_debian boolean true\n\
         d-i grub-installer/bootdev string default\n\
         d-i finish-install/reboot_in_progress note\n",
    );
    let keys = format!(
        "{}\n",
        ctx.profile.cloud_init.ssh_authorized_keys.join("\n")
    );
    // The first-boot command lives in a script of its own, so the unit's
    // ExecStart is a plain path (systemd's unit quoting is not the shell's).
    let script = format!("#!/bin/sh\n{}\n", begin_command(ctx));
    let first_boot = format!(
        "[Unit]\nDescription=kindling first boot\nAfter=network-online.target\nWants=network-online.target\nConditionPathExists=!/var/lib/kindling-begin.done\n[Service]\nType=oneshot\nExecStart=/bin/sh {BEGIN_SCRIPT}\nExecStartPost=/bin/touch /var/lib/kindling-begin.done\n[Install]\nWantedBy=multi-user.target\n"
    );
    let late = format!(
        "mkdir -p /target/root/.ssh && printf '%b' {keys} > /target/root/.ssh/authorized_keys && chmod 600 /target/root/.ssh/authorized_keys; \
         mkdir -p /target/usr/local/sbin && printf '%b' {script} > /target{BEGIN_SCRIPT} && chmod 755 /target{BEGIN_SCRIPT}; \
         printf '%b' {unit} > /target/etc/systemd/system/kindling-begin.service; \
         in-target systemctl enable kindling-begin.service; \
         {report}",
        keys = printf_b_arg(&keys),
        script = printf_b_arg(&script),
        unit = printf_b_arg(&first_boot),
        report = installed_report_command(ctx, "preseed", HttpClient::Wget),
    );
    let _ = writeln!(out, "d-i preseed/late_command string {late}");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::tests::context;
    use super::*;
    use kindling_site::{BootPayload, Profile};

    #[test]
    fn printf_b_arg_survives_the_shell_and_printf() {
        let text = "line 1\nback\\slash 'quote' \\n\n";
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf '%b' {}", printf_b_arg(text))])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), text);
        assert!(!printf_b_arg(text).contains('\n'), "one line for d-i");
    }

    #[test]
    fn preseed_is_single_line_values_with_hostname_and_late_command() {
        let p = Profile {
            name: "dev".parse().unwrap(),
            description: String::new(),
            tags: Default::default(),
            boot: BootPayload::Iso { iso: "x".into() },
            cloud_init: Default::default(),
            enrollment: Default::default(),
            after_install: Default::default(),
        };
        let text = render(&context(&p, "dev"));
        assert!(text.contains("d-i netcfg/get_hostname string node-dev-1\n"));
        assert!(text.contains("d-i netcfg/choose_interface select 52:54:00:6b:00:10\n"));
        // `!` would make user-setup ask for a root password.
        assert!(text.contains("d-i passwd/root-password-crypted password *\n"));
        assert!(text.contains(
            "d-i partman/early_command string debconf-set partman-auto/disk \"$(list-devices disk | head -n1)\"\n"
        ));
        let late: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("d-i preseed/late_command"))
            .collect();
        assert_eq!(late.len(), 1);
        assert!(late[0].contains("nodes/52:54:00:6b:00:10/events"));
        assert!(late[0].contains("ExecStart=/bin/sh /usr/local/sbin/kindling-begin\\n"));
        for line in text.lines() {
            assert!(
                line.starts_with("d-i ")
                    || line.starts_with('#')
                    || line.starts_with("tasksel")
                    || line.starts_with("popularity"),
                "{line}"
            );
        }
    }
}
