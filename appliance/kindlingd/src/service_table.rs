//! SiteConfig → this boot's service table (`/run/kindling/services.json`).
//!
//! Decides which children run, in which phase, with which capabilities and
//! dependencies. [`build`] is a pure function of the site and [`BootInputs`]
//! (what the image holds, the stack's rendered entries); [`for_this_boot`]
//! gathers those inputs. It only describes; kindling-init supervises. The
//! HashiCorp services are described by the stack crate, which knows their
//! binaries, config files and health endpoints. Must never start a process
//! or write anything but through the stack's renderer in [`for_this_boot`].

// The service-table wire types: the one place they are imported from.
use kindling_init_protocol::accounts::{self, Account};
use kindling_init_protocol::table::{OutputLogLimits, Phase, Readiness, ServiceSpec, ServiceTable};
use kindling_site::SiteConfig;
use std::path::{Path, PathBuf};

/// ntpd-rs's daemon in the image (`kindling image build --extra-bin
/// ntp-daemon=PATH` puts it there); its config is rendered into the run
/// directory by [`for_this_boot`].
const NTP_DAEMON: &str = "/bin/ntp-daemon";
const NTP_CONFIG: &str = "ntp.toml";

/// What the table needs besides the site: facts about this image and boot.
#[derive(Debug, Clone, PartialEq)]
pub struct BootInputs {
    /// kindlingd's own path, `argv[0]` of each of its roles.
    pub kindlingd: String,
    /// The stack's entries, already rendered (their config files written);
    /// empty when the site enables none or the stack could not be rendered.
    pub stack: Vec<ServiceSpec>,
    /// Optional service binaries the image holds.
    pub installed: Installed,
    /// Where rendered configs live (`/run/kindling`).
    pub run_dir: PathBuf,
}

/// Optional service binaries found in the image; `None` is not installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    pub ntp_daemon: Option<PathBuf>,
    /// init mounted the boot disk's ESP (A/B slots): this boot can update
    /// itself.
    pub boot_slots: bool,
    /// The kernel command line asks for an install (`kindling.install=`).
    pub install_on_cmdline: bool,
}

impl Installed {
    /// Looks for each optional binary at its place in the image.
    pub fn probe() -> Self {
        let present = |p: &str| Some(PathBuf::from(p)).filter(|p| p.is_file());
        Self {
            ntp_daemon: present(NTP_DAEMON),
            boot_slots: Path::new(kindling_init_protocol::control::ESP_MOUNT)
                .join("EFI")
                .is_dir(),
            install_on_cmdline: kindling_install::target::request(
                &std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
                None,
                false,
            )
            .is_some(),
        }
    }
}

/// Runs `spec` as `account`: its uid, its group and the shared groups it
/// holds (`accounts::MEMBERS`).
fn run_as(spec: &mut ServiceSpec, account: Account) {
    spec.user = account.uid;
    spec.group = account.gid;
    spec.groups = accounts::supplementary_groups(account);
}

fn kindlingd_role(
    inputs: &BootInputs,
    name: &str,
    role: &str,
    account: Account,
    caps: &[&str],
    depends_on: &[&str],
    phase: Phase,
) -> ServiceSpec {
    let mut spec = ServiceSpec::new(name, &[&inputs.kindlingd, role]);
    spec.env.insert("RUST_LOG".to_owned(), "info".to_owned());
    run_as(&mut spec, account);
    spec.capabilities = caps.iter().map(|c| (*c).to_owned()).collect();
    spec.depends_on = depends_on.iter().map(|d| (*d).to_owned()).collect();
    spec.readiness = Readiness::Notify;
    spec.phase = phase;
    spec
}

/// net configures links, addresses, routes, sysctls under net/ and
/// nftables (CAP_NET_ADMIN), runs the uplink DHCP client on a packet socket
/// (CAP_NET_RAW) and the LAN DNS forwarder on port 53 (CAP_NET_BIND_SERVICE).
fn net(_: &SiteConfig, inputs: &BootInputs) -> Option<ServiceSpec> {
    Some(kindlingd_role(
        inputs,
        "net",
        "net",
        accounts::NET,
        &["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"],
        &[],
        Phase::Network,
    ))
}

/// DHCP/TFTP/HTTP on privileged ports (CAP_NET_BIND_SERVICE), DHCP
/// broadcasts on the LAN device and raw router-advertisement sockets
/// (CAP_NET_RAW).
fn pxe(site: &SiteConfig, inputs: &BootInputs) -> Option<ServiceSpec> {
    site.pxe.enabled.then(|| {
        kindlingd_role(
            inputs,
            "pxe",
            "pxe",
            accounts::PXE,
            &["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
            &["net"],
            Phase::Services,
        )
    })
}

/// Reads status and talks to init's socket (kl-control); binds its port,
/// which needs CAP_NET_BIND_SERVICE only when the site puts it below 1024.
fn api(site: &SiteConfig, inputs: &BootInputs) -> Option<ServiceSpec> {
    let caps: &[&str] = if site.api.port < 1024 {
        &["CAP_NET_BIND_SERVICE"]
    } else {
        &[]
    };
    Some(kindlingd_role(
        inputs,
        "api",
        "api",
        accounts::API,
        caps,
        &[],
        Phase::Services,
    ))
}

/// The status screen on tty1: no capability; lists init's services (the
/// console account may do only that) and writes to the console the config
/// phase gives it. Not required: a box without a console boots all the same.
fn dashboard(_: &SiteConfig, inputs: &BootInputs) -> Option<ServiceSpec> {
    let mut spec = kindlingd_role(
        inputs,
        "dashboard",
        "dashboard",
        accounts::CONSOLE,
        &[],
        &[],
        Phase::Services,
    );
    spec.required = false;
    Some(spec)
}

/// ntpd-rs serving the LAN on port 123 and keeping the clock. Not required:
/// the appliance boots and serves PXE without it.
fn ntp(site: &SiteConfig, inputs: &BootInputs) -> Option<ServiceSpec> {
    let daemon = inputs.installed.ntp_daemon.as_ref()?;
    if !site.time.ntp_server {
        return None;
    }
    let daemon = daemon.to_string_lossy();
    let config = inputs.run_dir.join(NTP_CONFIG);
    // `-l warn`: ntpd-rs writes its first info line in colour before it
    // reads `ansi-colors = false` from the config (and NO_COLOR does not
    // stop it); at warn its console lines are plain and only say what an
    // operator must see (its info lines repeat every poll).
    let config = config.to_string_lossy();
    let mut spec = ServiceSpec::new("ntp", &[&daemon, "-c", &config, "-l", "warn"]);
    run_as(&mut spec, accounts::NTP);
    spec.capabilities = vec!["CAP_NET_BIND_SERVICE".to_owned(), "CAP_SYS_TIME".to_owned()];
    spec.depends_on = vec!["net".to_owned()];
    spec.readiness = Readiness::Started;
    spec.required = false;
    spec.phase = Phase::Services;
    Some(spec)
}

/// The update agent, on boots from a disk's slots: reads init's list and
/// asks it to reboot into an armed slot (kl-control, nothing else), takes
/// pushed bundles from the update spool (kl-upspool, its own directory)
/// and renames slot files on the ESP init mounted for its account; no
/// capability. Not required: an appliance that cannot
/// update itself still serves.
fn update(_: &SiteConfig, inputs: &BootInputs) -> Option<ServiceSpec> {
    if !inputs.installed.boot_slots {
        return None;
    }
    let mut spec = kindlingd_role(
        inputs,
        "update",
        "update",
        accounts::UPDATE,
        &[],
        &[],
        Phase::Services,
    );
    spec.readiness = Readiness::Started;
    spec.required = false;
    Some(spec)
}

/// The backup service, when the site runs a stack with Vault (whose
/// recipients backups are encrypted to, and which keeps the Consul token a
/// snapshot needs): as kl-stack, which already holds those tokens, so no
/// other account gains them. Its groups are not the bootstrap's: status
/// (its status file), inventory and PXE's (to read the inventory and the
/// leases), and neither init's socket nor the services' own groups. No
/// capability; not required (an appliance that cannot back up still serves).
fn backup(site: &SiteConfig, inputs: &BootInputs) -> Option<ServiceSpec> {
    if !site.stack.vault.enabled || inputs.stack.is_empty() {
        return None;
    }
    let mut spec = kindlingd_role(
        inputs,
        "backup",
        "backup",
        accounts::STACK,
        &[],
        &[],
        Phase::Services,
    );
    spec.groups = backup_groups();
    spec.required = false;
    Some(spec)
}

/// The backup service's supplementary groups (see [`backup`]).
fn backup_groups() -> Vec<u32> {
    vec![
        accounts::STATUS.gid,
        accounts::INVENTORY.gid,
        accounts::PXE.gid,
    ]
}

/// The node-token keeper, when the site runs Consul and Vault (where site
/// nodes get Consul tokens).
fn node_tokens(site: &SiteConfig, inputs: &BootInputs) -> Option<ServiceSpec> {
    let stack = &site.stack;
    (stack.vault.enabled && stack.consul.enabled).then(|| stack_keeper(inputs, "node-tokens"))?
}

/// The Nomad node lister, when the site runs Nomad and Vault (where the
/// bootstrap keeps Nomad's management token, which listing client nodes
/// needs).
fn nomad_nodes(site: &SiteConfig, inputs: &BootInputs) -> Option<ServiceSpec> {
    let stack = &site.stack;
    (stack.vault.enabled && stack.nomad.enabled).then(|| stack_keeper(inputs, "nomad-nodes"))?
}

/// A kindlingd role that works with the tokens the stack bootstrap keeps
/// (node-tokens: revoking a re-armed node's token and certificates;
/// nomad-nodes: listing Nomad's clients): as kl-stack, which already holds
/// them, so no other account gains them. Its one extra group is
/// inventory's (its files in and out). No capability; not required
/// (nothing else waits for it). None when the stack does not run.
fn stack_keeper(inputs: &BootInputs, role: &str) -> Option<ServiceSpec> {
    if inputs.stack.is_empty() {
        return None;
    }
    let mut spec = kindlingd_role(
        inputs,
        role,
        role,
        accounts::STACK,
        &[],
        &[],
        Phase::Services,
    );
    spec.groups = vec![accounts::INVENTORY.gid];
    spec.required = false;
    Some(spec)
}

/// The installer (docs/install.md), on a boot from the ISO (no slots) whose
/// command line or site names a disk: a one-shot after the API (so the
/// state it copies holds the API's CA, and the fingerprint on the console
/// stays true on the installed disk). As root, because it writes a raw
/// disk whose node is root's and runs mke2fs on it, with one capability,
/// CAP_DAC_READ_SEARCH, to read every service's state to copy it; no
/// CAP_SYS_ADMIN (it mounts nothing). It may ask init to reboot (root's
/// right on the control socket). Required: a refused or failed install
/// leaves the appliance degraded, its reason on the console. Never
/// restarted: a second try would meet a half-written disk.
fn install(site: &SiteConfig, inputs: &BootInputs) -> Option<ServiceSpec> {
    if inputs.installed.boot_slots {
        return None;
    }
    let asked = inputs.installed.install_on_cmdline
        || site.install.disk.as_deref().is_some_and(|d| !d.is_empty());
    if !asked {
        return None;
    }
    let mut spec = ServiceSpec::new("install", &[&inputs.kindlingd, "install"]);
    spec.env.insert("RUST_LOG".to_owned(), "info".to_owned());
    spec.user = 0;
    spec.group = 0;
    spec.capabilities = vec!["CAP_DAC_READ_SEARCH".to_owned()];
    spec.depends_on = vec!["api".to_owned()];
    spec.readiness = Readiness::Exited;
    spec.oneshot = true;
    spec.restart = kindling_init_protocol::table::RestartPolicy::Never;
    spec.phase = Phase::Services;
    Some(spec)
}

/// kindling's own children, in table order; each decides from the site and
/// the inputs whether it runs. The stack's entries follow them.
const SERVICES: &[fn(&SiteConfig, &BootInputs) -> Option<ServiceSpec>] = &[
    net,
    pxe,
    api,
    dashboard,
    ntp,
    update,
    backup,
    node_tokens,
    nomad_nodes,
    install,
];

/// The full table for `site` and this boot's `inputs`.
pub fn build(site: &SiteConfig, inputs: &BootInputs) -> ServiceTable {
    let mut services: Vec<ServiceSpec> = SERVICES.iter().filter_map(|s| s(site, inputs)).collect();
    services.extend(inputs.stack.iter().cloned());
    ServiceTable {
        hostname: Some(site.site.hostname.clone()),
        services,
        output_logs: Some(OutputLogLimits {
            file_bytes: u64::from(site.logs.file_kib) * 1024,
            files: site.logs.files_per_service,
        }),
        // Validated with the site: an address that does not parse is refused there.
        syslog: site.logs.syslog.as_deref().and_then(|s| s.parse().ok()),
    }
}

/// Where kindlingd lives in the image; tests run the binary from `target/`.
fn kindlingd_path() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned))
        .unwrap_or_else(|| "/bin/kindlingd".to_owned())
}

/// What [`for_this_boot`] does with the stack's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackFiles {
    /// Render the configs, keys and certificates (the config phase, as root).
    Render,
    /// Only describe the stack's entries (the API's live reload: it may not
    /// write the stack's files, and a changed stack applies at next boot).
    Describe,
}

/// The stack's layout under `run_dir` and `data_dir`.
fn stack_layout(run_dir: &Path, data_dir: &Path, kindlingd: &str) -> kindling_stack::StackLayout {
    kindling_stack::StackLayout {
        config_dir: run_dir.join("stack"),
        data_dir: data_dir.to_owned(),
        status_file: run_dir.join("status/stack.json"),
        kindlingd: PathBuf::from(kindlingd),
        ..kindling_stack::StackLayout::appliance()
    }
}

/// This boot's table and who must own the stack's files.
pub struct BootTable {
    pub table: ServiceTable,
    pub ownership: Vec<kindling_stack::render::Owned>,
}

/// Gathers this boot's inputs and builds the table: renders the stack's
/// config files (under `run_dir`, data under `data_dir`) or only describes
/// its entries, and probes the image for optional binaries. A stack that
/// cannot be rendered must not cost the appliance its network and PXE: its
/// services are left out and the reason goes to the console.
pub fn for_this_boot(
    site: &SiteConfig,
    run_dir: &Path,
    data_dir: &Path,
    files: StackFiles,
) -> BootTable {
    let kindlingd = kindlingd_path();
    let layout = stack_layout(run_dir, data_dir, &kindlingd);
    let (stack, ownership) = match files {
        StackFiles::Describe => (
            kindling_stack::render::service_entries(site, &layout),
            Vec::new(),
        ),
        StackFiles::Render => match kindling_stack::render(site, &layout) {
            Ok(stack) => (stack.services, stack.ownership),
            Err(e) => {
                println!("degraded: stack: not started: {e}");
                (Vec::new(), Vec::new())
            }
        },
    };
    let inputs = BootInputs {
        kindlingd,
        stack,
        installed: Installed::probe(),
        run_dir: run_dir.to_owned(),
    };
    // The live reload (StackFiles::Describe) keeps the boot's ntp.toml:
    // like the stack's, it is written once, in the config phase.
    if site.time.ntp_server && files == StackFiles::Render {
        write_ntp_config(site, &inputs);
    }
    BootTable {
        table: build(site, &inputs),
        ownership,
    }
}

/// The `ntp` service's config, or why the LAN gets no time service.
fn write_ntp_config(site: &SiteConfig, inputs: &BootInputs) {
    if inputs.installed.ntp_daemon.is_none() {
        println!(
            "ntp: time.ntp_server is on but the image has no {NTP_DAEMON} \
             (build it with --extra-bin ntp-daemon=PATH): the LAN gets no time service"
        );
        return;
    }
    if let Err(e) = crate::ntp::write(site, &inputs.run_dir.join(NTP_CONFIG)) {
        println!("ntp: {e:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab_site() -> SiteConfig {
        let toml = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../overlays/lab/site.toml"
        ))
        .unwrap_or_default();
        toml::from_str(&toml).unwrap_or_else(|e| panic!("lab site.toml does not parse: {e}"))
    }

    fn inputs() -> BootInputs {
        BootInputs {
            kindlingd: "/bin/kindlingd".to_owned(),
            stack: Vec::new(),
            installed: Installed::default(),
            run_dir: PathBuf::from("/run/kindling"),
        }
    }

    fn with_ntp_daemon() -> BootInputs {
        BootInputs {
            installed: Installed {
                ntp_daemon: Some(PathBuf::from(NTP_DAEMON)),
                ..Installed::default()
            },
            ..inputs()
        }
    }

    fn from_boot_slots(inputs: BootInputs) -> BootInputs {
        BootInputs {
            installed: Installed {
                boot_slots: true,
                ..inputs.installed
            },
            ..inputs
        }
    }

    fn install_site() -> SiteConfig {
        let mut site = lab_site();
        site.install.disk = Some("/dev/disk/by-id/virtio-target".to_owned());
        site
    }

    /// The installer runs as root with only CAP_DAC_READ_SEARCH, once,
    /// after the API; a failure is not retried.
    #[test]
    fn the_installer_is_a_root_one_shot_with_one_capability() {
        let table = build(&install_site(), &inputs());
        let Some(install) = table.get("install") else {
            panic!("no install entry: {:?}", names(&table));
        };
        assert_eq!(install.argv, ["/bin/kindlingd", "install"]);
        assert_eq!((install.user, install.group), (0, 0));
        assert!(install.groups.is_empty());
        assert_eq!(install.capabilities, ["CAP_DAC_READ_SEARCH"]);
        assert_eq!(install.depends_on, ["api"]);
        assert!(install.oneshot && install.required);
        assert_eq!(install.readiness, Readiness::Exited);
        assert_eq!(
            install.restart,
            kindling_init_protocol::table::RestartPolicy::Never
        );
    }

    fn stack_site() -> SiteConfig {
        let mut site = lab_site();
        site.stack.consul.enabled = true;
        site.stack.vault.enabled = true;
        site.stack.vault.recipients =
            vec!["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".to_owned()];
        site
    }

    /// The stack's entries as the renderer describes them, without writing.
    fn stack_entries(site: &SiteConfig) -> Vec<ServiceSpec> {
        kindling_stack::render::service_entries(site, &kindling_stack::StackLayout::appliance())
    }

    fn names(table: &ServiceTable) -> Vec<&str> {
        table.services.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn tables_for_each_kind_of_site() {
        struct Case {
            what: &'static str,
            site: SiteConfig,
            inputs: BootInputs,
            want: &'static [&'static str],
        }
        let no_pxe = {
            let mut s = lab_site();
            s.pxe.enabled = false;
            s
        };
        let with_nomad = {
            let mut s = stack_site();
            s.stack.nomad.enabled = true;
            s
        };
        let ntp_on = {
            let mut s = lab_site();
            s.time.ntp_server = true;
            s
        };
        let ntp_off = {
            let mut s = lab_site();
            s.time.ntp_server = false;
            s
        };
        let cases = [
            Case {
                what: "lab site",
                site: lab_site(),
                inputs: inputs(),
                want: &["net", "pxe", "api", "dashboard"],
            },
            Case {
                what: "pxe disabled",
                site: no_pxe,
                inputs: inputs(),
                want: &["net", "api", "dashboard"],
            },
            Case {
                what: "consul and vault",
                site: stack_site(),
                inputs: BootInputs {
                    stack: stack_entries(&stack_site()),
                    ..inputs()
                },
                want: &[
                    "net",
                    "pxe",
                    "api",
                    "dashboard",
                    "backup",
                    "node-tokens",
                    "consul",
                    "vault",
                    "stack",
                ],
            },
            Case {
                what: "with nomad",
                inputs: BootInputs {
                    stack: stack_entries(&with_nomad),
                    ..inputs()
                },
                site: with_nomad,
                want: &[
                    "net",
                    "pxe",
                    "api",
                    "dashboard",
                    "backup",
                    "node-tokens",
                    "nomad-nodes",
                    "consul",
                    "vault",
                    "nomad",
                    "stack",
                ],
            },
            Case {
                what: "ntp enabled and installed",
                site: ntp_on.clone(),
                inputs: with_ntp_daemon(),
                want: &["net", "pxe", "api", "dashboard", "ntp"],
            },
            Case {
                what: "ntp enabled, not in the image",
                site: ntp_on,
                inputs: inputs(),
                want: &["net", "pxe", "api", "dashboard"],
            },
            Case {
                what: "ntp in the image, not enabled",
                site: ntp_off,
                inputs: with_ntp_daemon(),
                want: &["net", "pxe", "api", "dashboard"],
            },
            Case {
                what: "booted from a disk's slots",
                site: lab_site(),
                inputs: from_boot_slots(inputs()),
                want: &["net", "pxe", "api", "dashboard", "update"],
            },
            Case {
                what: "install asked by the site, booted from the ISO",
                site: install_site(),
                inputs: inputs(),
                want: &["net", "pxe", "api", "dashboard", "install"],
            },
            Case {
                what: "install asked by the command line",
                site: lab_site(),
                inputs: BootInputs {
                    installed: Installed {
                        install_on_cmdline: true,
                        ..Installed::default()
                    },
                    ..inputs()
                },
                want: &["net", "pxe", "api", "dashboard", "install"],
            },
            Case {
                what: "install asked, but booted from the installed disk",
                site: install_site(),
                inputs: from_boot_slots(inputs()),
                want: &["net", "pxe", "api", "dashboard", "update"],
            },
        ];
        for case in cases {
            let table = build(&case.site, &case.inputs);
            if let Err(e) = table.validate(case.what) {
                panic!("{}: the table is invalid: {e}", case.what);
            }
            assert_eq!(names(&table), case.want, "{}", case.what);
            assert_eq!(
                table.hostname.as_deref(),
                Some("kindling-lab"),
                "{}",
                case.what
            );
        }
    }

    #[test]
    fn lab_table_is_valid_and_ordered() {
        let table = build(&lab_site(), &inputs());
        if let Err(e) = table.validate("lab") {
            panic!("lab service table is invalid: {e}");
        }
        assert_eq!(names(&table), ["net", "pxe", "api", "dashboard"]);
        assert_eq!(
            table.get("pxe").map(|s| s.depends_on.clone()),
            Some(vec!["net".to_owned()])
        );
        assert_eq!(table.get("net").map(|s| s.phase), Some(Phase::Network));
        assert_eq!(
            table.get("api").map(|s| s.argv.clone()),
            Some(vec!["/bin/kindlingd".to_owned(), "api".to_owned()])
        );
        assert_eq!(table.hostname.as_deref(), Some("kindling-lab"));
    }

    /// Every child runs as its own account with only what it needs.
    #[test]
    fn each_service_has_its_own_account_and_only_its_capabilities() {
        let mut site = stack_site();
        site.stack.nomad.enabled = true;
        site.time.ntp_server = true;
        let inputs = from_boot_slots(BootInputs {
            stack: stack_entries(&site),
            ..with_ntp_daemon()
        });
        let table = build(&site, &inputs);
        let want: &[(&str, Account, &[&str])] = &[
            (
                "net",
                accounts::NET,
                &["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"],
            ),
            (
                "pxe",
                accounts::PXE,
                &["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
            ),
            ("api", accounts::API, &[]),
            ("dashboard", accounts::CONSOLE, &[]),
            (
                "ntp",
                accounts::NTP,
                &["CAP_NET_BIND_SERVICE", "CAP_SYS_TIME"],
            ),
            ("update", accounts::UPDATE, &[]),
            ("consul", accounts::CONSUL, &[]),
            ("vault", accounts::VAULT, &["CAP_IPC_LOCK"]),
            ("nomad", accounts::NOMAD, &[]),
            ("stack", accounts::STACK, &[]),
        ];
        // The backup service, the node-token keeper and the Nomad node
        // lister share the bootstrap's account (they need the tokens only
        // that account holds), not its groups.
        assert_eq!(table.services.len(), want.len() + 3, "{:?}", names(&table));
        let backup = table.get("backup").cloned().unwrap();
        assert_eq!(
            (backup.user, backup.group, backup.groups.clone()),
            (accounts::STACK.uid, accounts::STACK.gid, backup_groups())
        );
        assert!(backup.capabilities.is_empty() && !backup.required);
        for name in ["node-tokens", "nomad-nodes"] {
            let keeper = table.get(name).cloned().unwrap();
            assert_eq!(
                (keeper.user, keeper.group, keeper.groups.clone()),
                (
                    accounts::STACK.uid,
                    accounts::STACK.gid,
                    vec![accounts::INVENTORY.gid]
                ),
                "{name}"
            );
            assert!(keeper.capabilities.is_empty() && !keeper.required, "{name}");
        }
        for (name, account, caps) in want {
            let Some(s) = table.get(name) else {
                panic!("no {name} entry");
            };
            assert_eq!((s.user, s.group), (account.uid, account.gid), "{name}");
            assert_eq!(s.groups, accounts::supplementary_groups(*account), "{name}");
            assert_eq!(s.capabilities, *caps, "{name}");
        }
        // Only the API, the stack bootstrap, the dashboard and the update
        // agent may reach init's socket (init lets the last two only list).
        let control: Vec<&str> = table
            .services
            .iter()
            .filter(|s| s.groups.contains(&accounts::CONTROL.gid))
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(control, ["api", "dashboard", "update", "stack"]);
        assert!(!table.get("dashboard").is_some_and(|d| d.required));
        // An API port below 1024 is the one reason the API gets a capability.
        site.api.port = 443;
        let api = build(&site, &inputs).get("api").cloned();
        assert_eq!(
            api.map(|a| a.capabilities),
            Some(vec!["CAP_NET_BIND_SERVICE".to_owned()])
        );
    }

    #[test]
    fn ntp_entry_serves_the_lan_and_is_not_required() {
        let mut site = lab_site();
        site.time.ntp_server = true;
        let table = build(&site, &with_ntp_daemon());
        let Some(ntp) = table.get("ntp") else {
            panic!("no ntp entry: {:?}", names(&table));
        };
        assert_eq!(
            ntp.argv,
            [NTP_DAEMON, "-c", "/run/kindling/ntp.toml", "-l", "warn"]
        );
        assert_eq!(ntp.depends_on, ["net"]);
        assert_eq!(ntp.capabilities, ["CAP_NET_BIND_SERVICE", "CAP_SYS_TIME"]);
        assert!(!ntp.required, "a failed NTP server must not fail the boot");
        assert_eq!(ntp.phase, Phase::Services);
    }

    #[test]
    fn pxe_disabled_leaves_it_out() {
        let mut site = lab_site();
        site.pxe.enabled = false;
        let dir = std::env::temp_dir();
        let table = for_this_boot(&site, &dir, &dir, StackFiles::Render).table;
        assert!(table.get("pxe").is_none());
        assert!(table.get("api").is_some());
    }

    #[test]
    fn stack_services_follow_the_site_and_write_under_run_dir() {
        let site = stack_site();
        let dir = tempfile::tempdir().unwrap();
        let (run, data) = (dir.path().join("run"), dir.path().join("data"));
        let table = for_this_boot(&site, &run, &data, StackFiles::Render).table;
        table.validate("stack").unwrap();
        let names = names(&table);
        assert_eq!(
            names,
            [
                "net",
                "pxe",
                "api",
                "dashboard",
                "backup",
                "node-tokens",
                "consul",
                "vault",
                "stack"
            ]
        );
        assert!(
            run.join("stack/consul.json").is_file(),
            "consul config not under run_dir"
        );
        assert!(
            data.join("consul").is_dir(),
            "consul data dir not under data_dir"
        );
    }

    #[test]
    fn a_stack_that_cannot_render_leaves_the_rest_running() {
        let mut site = lab_site();
        site.stack.vault.enabled = true; // no recipients: cannot be rendered
        let dir = tempfile::tempdir().unwrap();
        let table = for_this_boot(&site, dir.path(), dir.path(), StackFiles::Render).table;
        assert_eq!(names(&table), ["net", "pxe", "api", "dashboard"]);
    }
}
