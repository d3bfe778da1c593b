//! iPXE scripts: one per node and profile (`linux`, `iso`, `debian-installer`,
//! `ubuntu-autoinstall`), a menu for unknown MACs, and a refusal script.
//!
//! Owns script text only. Artifact names are turned into
//! `<base>artifacts/<name>` URLs (or used as-is when already a URL); a
//! pinned artifact (`sha256/HEX`, `kindling_site::ArtifactRef`) is a name
//! too: the store of pushed artifacts is `sha256/` in the first artifact
//! directory, so it is `<base>artifacts/sha256/HEX`.

use super::NodeContext;
use kindling_site::BootPayload;
use std::fmt::Write;

fn artifact_url(base: &str, name: &str) -> String {
    if name.starts_with("http://") || name.starts_with("https://") {
        name.to_string()
    } else {
        format!("{base}artifacts/{name}")
    }
}

fn basename(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The kernel arguments every kindling-booted node gets: where the appliance
/// is, who the node is, and its NoCloud seed. (iPXE splits commands only on
/// whole-word `;`, so `ds=nocloud;s=…` passes through intact.)
///
/// The seed is on the network, so the datasource must say so: `dsmode=net`.
/// Without it cloud-init before 23.1 (Debian 12's 22.4) reads `ds=nocloud`
/// as local mode, cannot seed from HTTP in its local stage, and in its
/// network stage fetches the seed but then exits with "datasource in local
/// mode", so the user-data never runs. Newer cloud-init infers network mode
/// from an `http://` seed and takes an explicit `dsmode` over that.
pub fn kindling_args(ctx: &NodeContext<'_>) -> String {
    format!(
        "kindling.url={base} kindling.mac={mac} kindling.profile={profile} ds=nocloud;s={base}nocloud/{mac}/;dsmode=net",
        base = ctx.base_url,
        mac = ctx.mac,
        profile = ctx.profile_name
    )
}

fn join_args(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn render(ctx: &NodeContext<'_>) -> String {
    let base = ctx.base_url;
    let mut out = String::from("#!ipxe\n");
    let _ = writeln!(
        out,
        "echo kindling: {} profile {}",
        ctx.mac, ctx.profile_name
    );
    match &ctx.profile.boot {
        BootPayload::Linux {
            kernel,
            initrd,
            cmdline,
        } => {
            // `initrd=NAME` lets EFI stubs find iPXE's initrds; harmless on BIOS.
            let initrd_args: Vec<String> = initrd
                .iter()
                .map(|i| format!("initrd={}", basename(i)))
                .collect();
            let args = join_args(&[&initrd_args.join(" "), cmdline, &kindling_args(ctx)]);
            let _ = writeln!(out, "kernel {} {args}", artifact_url(base, kernel));
            for i in initrd {
                let _ = writeln!(out, "initrd {}", artifact_url(base, i));
            }
            out.push_str("boot\n");
        }
        BootPayload::Iso { iso } => {
            // sanboot reads the ISO over HTTP with Range requests, block by block.
            let _ = writeln!(out, "sanboot --no-describe {}", artifact_url(base, iso));
        }
        BootPayload::DebianInstaller {
            kernel,
            initrd,
            cmdline,
        } => {
            // d-i configures the network before it fetches the preseed
            // file, so what netcfg needs comes on the command line: the
            // NIC to use, named by the MAC that booted (with several NICs
            // d-i otherwise asks, at critical priority), and the hostname
            // and domain.
            let preseed = format!(
                "auto=true priority=critical url={base}preseed/{mac}.cfg netcfg/choose_interface={mac} netcfg/get_hostname={host} netcfg/get_domain={domain}",
                mac = ctx.mac,
                host = ctx.hostname,
                domain = ctx.domain
            );
            let init = format!("initrd={}", basename(initrd));
            let args = join_args(&[&init, &preseed, cmdline, &kindling_args(ctx)]);
            let _ = writeln!(out, "kernel {} {args}", artifact_url(base, kernel));
            let _ = writeln!(out, "initrd {}", artifact_url(base, initrd));
            out.push_str("boot\n");
        }
        BootPayload::UbuntuAutoinstall {
            kernel,
            initrd,
            iso,
            cmdline,
        } => {
            let install = format!(
                "ip=dhcp url={} autoinstall cloud-config-url=/dev/null",
                artifact_url(base, iso)
            );
            let init = format!("initrd={}", basename(initrd));
            let args = join_args(&[&init, &install, cmdline, &kindling_args(ctx)]);
            let _ = writeln!(out, "kernel {} {args}", artifact_url(base, kernel));
            let _ = writeln!(out, "initrd {}", artifact_url(base, initrd));
            out.push_str("boot\n");
        }
    }
    out
}

/// The menu an unknown MAC gets with `unknown = "menu"`: one item per
/// profile; choosing one chains the script for that profile.
pub fn menu(mac: &kindling_site::MacAddr, profiles: &[&str], base_url: &str) -> String {
    let mut out = String::from("#!ipxe\n");
    let _ = writeln!(out, "menu kindling: choose a profile for {mac}");
    for p in profiles {
        let _ = writeln!(out, "item {p} {p}");
    }
    out.push_str("item --gap\nitem exit Boot from local disk\n");
    out.push_str("choose --timeout 60000 --default exit selected || goto exit\n");
    out.push_str("iseq ${selected} exit && goto exit ||\n");
    let _ = writeln!(out, "chain {base_url}boot/{mac}.ipxe?profile=${{selected}}");
    out.push_str(":exit\nexit\n");
    out
}

/// For an installed node: leave PXE so the firmware boots the next device,
/// its disk.
pub fn local_disk(mac: &kindling_site::MacAddr) -> String {
    format!(
        "#!ipxe\necho kindling: {mac} is installed; booting its disk (`kindling node reprovision {mac}` installs it again)\nexit\n"
    )
}

/// For a MAC the site does not serve: leave PXE, let the firmware try the
/// next boot device.
pub fn not_served(mac: &kindling_site::MacAddr) -> String {
    format!("#!ipxe\necho kindling: {mac} has no profile on this appliance\nexit\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::tests::context;
    use super::*;
    use kindling_site::Profile;

    fn profile(boot: BootPayload) -> Profile {
        Profile {
            name: "dev".parse().unwrap(),
            description: String::new(),
            tags: [("env".to_string(), "development".to_string())].into(),
            boot,
            cloud_init: Default::default(),
            enrollment: Default::default(),
            after_install: Default::default(),
        }
    }

    #[test]
    fn linux_script_carries_kindling_and_nocloud_args() {
        let p = profile(BootPayload::Linux {
            kernel: "vmlinuz".into(),
            initrd: vec!["lab-node.cpio.zst".into()],
            cmdline: "console=ttyS0 quiet".into(),
        });
        let s = render(&context(&p, "dev"));
        assert!(s.starts_with("#!ipxe\n"));
        assert!(s.contains(
            "kernel http://192.168.100.1/artifacts/vmlinuz initrd=lab-node.cpio.zst console=ttyS0 quiet \
             kindling.url=http://192.168.100.1/ kindling.mac=52:54:00:6b:00:10 kindling.profile=dev \
             ds=nocloud;s=http://192.168.100.1/nocloud/52:54:00:6b:00:10/;dsmode=net\n"
        ), "{s}");
        assert!(
            s.contains("initrd http://192.168.100.1/artifacts/lab-node.cpio.zst\nboot\n"),
            "{s}"
        );
    }

    /// The `ds=` word as cloud-init reads it (one whitespace-separated word,
    /// `;`-separated `key=value`s): an HTTP seed that ends in `/` (cloud-init
    /// appends `meta-data`, `user-data`) and network mode spelled out, which
    /// cloud-init 22.4 needs to run the user-data of an HTTP seed at all.
    #[test]
    fn nocloud_seed_is_read_in_network_mode() {
        let p = profile(BootPayload::Linux {
            kernel: "vmlinuz".into(),
            initrd: vec![],
            cmdline: String::new(),
        });
        let args = kindling_args(&context(&p, "dev"));
        let words: Vec<&str> = args
            .split_whitespace()
            .filter(|w| w.starts_with("ds="))
            .collect();
        let [word] = words[..] else {
            panic!("one ds= word expected: {args}");
        };
        let mut fields = word.split(';');
        assert_eq!(fields.next(), Some("ds=nocloud"), "{word}");
        let pairs: Vec<(&str, &str)> = fields.filter_map(|f| f.split_once('=')).collect();
        assert_eq!(
            pairs,
            [
                ("s", "http://192.168.100.1/nocloud/52:54:00:6b:00:10/"),
                ("dsmode", "net")
            ],
            "{word}"
        );
    }

    #[test]
    fn pinned_artifacts_are_fetched_from_the_store_by_hash() {
        let (k, i, iso) = ("1a".repeat(32), "2b".repeat(32), "3c".repeat(32));
        let p = profile(BootPayload::Linux {
            kernel: format!("sha256/{k}"),
            initrd: vec![format!("sha256/{i}"), "extra.cpio".into()],
            cmdline: String::new(),
        });
        let s = render(&context(&p, "dev"));
        assert!(
            s.contains(&format!(
                "kernel http://192.168.100.1/artifacts/sha256/{k} initrd={i} initrd=extra.cpio kindling.url="
            )),
            "{s}"
        );
        assert!(
            s.contains(&format!(
                "initrd http://192.168.100.1/artifacts/sha256/{i}\ninitrd http://192.168.100.1/artifacts/extra.cpio\nboot\n"
            )),
            "{s}"
        );
        let p = profile(BootPayload::UbuntuAutoinstall {
            kernel: format!("sha256/{k}"),
            initrd: format!("sha256/{i}"),
            iso: format!("sha256/{iso}"),
            cmdline: String::new(),
        });
        let s = render(&context(&p, "dev"));
        assert!(
            s.contains(&format!(
                "url=http://192.168.100.1/artifacts/sha256/{iso} autoinstall"
            )),
            "{s}"
        );
        assert!(
            s.contains(&format!(
                "initrd http://192.168.100.1/artifacts/sha256/{i}\n"
            )),
            "{s}"
        );
        let p = profile(BootPayload::Iso {
            iso: format!("sha256/{iso}"),
        });
        let s = render(&context(&p, "dev"));
        assert!(
            s.contains(&format!(
                "sanboot --no-describe http://192.168.100.1/artifacts/sha256/{iso}\n"
            )),
            "{s}"
        );
    }

    #[test]
    fn iso_uses_sanboot_and_urls_pass_through() {
        let p = profile(BootPayload::Iso {
            iso: "https://mirror.example/x.iso".into(),
        });
        let s = render(&context(&p, "dev"));
        assert!(
            s.contains("sanboot --no-describe https://mirror.example/x.iso"),
            "{s}"
        );
    }

    #[test]
    fn debian_installer_points_at_preseed() {
        let p = profile(BootPayload::DebianInstaller {
            kernel: "d-i/linux".into(),
            initrd: "d-i/initrd.gz".into(),
            cmdline: String::new(),
        });
        let s = render(&context(&p, "dev"));
        assert!(
            s.contains("url=http://192.168.100.1/preseed/52:54:00:6b:00:10.cfg"),
            "{s}"
        );
        assert!(
            s.contains(" netcfg/choose_interface=52:54:00:6b:00:10 netcfg/get_hostname=node-dev-1 netcfg/get_domain=lab.kindling.internal "),
            "{s}"
        );
        assert!(s.contains("initrd=initrd.gz"), "{s}");
    }

    #[test]
    fn ubuntu_autoinstall_has_autoinstall_and_iso_url() {
        let p = profile(BootPayload::UbuntuAutoinstall {
            kernel: "casper/vmlinuz".into(),
            initrd: "casper/initrd".into(),
            iso: "ubuntu.iso".into(),
            cmdline: String::new(),
        });
        let s = render(&context(&p, "dev"));
        assert!(
            s.contains("url=http://192.168.100.1/artifacts/ubuntu.iso autoinstall"),
            "{s}"
        );
    }

    #[test]
    fn menu_lists_profiles() {
        let mac = kindling_site::MacAddr([2, 0, 0, 0, 0, 1]);
        let m = menu(&mac, &["dev", "prod"], "http://192.168.100.1/");
        assert!(m.contains("item dev dev\nitem prod prod\n"), "{m}");
        assert!(
            m.contains(
                "chain http://192.168.100.1/boot/02:00:00:00:00:01.ipxe?profile=${selected}"
            ),
            "{m}"
        );
    }
}
