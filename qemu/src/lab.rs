//! One running lab: its namespaces, the upstream services, the QEMU lock and
//! the VMs. `Lab` is the guard: dropping it (normal end, `?`, panic unwind, or
//! the CLI's Ctrl-C handler) stops every VM and service it started by PID and
//! deletes its namespaces. Logs stay in the run directory unless the caller
//! marked the run a success and asked for them to be removed.

use crate::accel::Accel;
use crate::cmd;
use crate::error::{LabError, Result};
use crate::kernel::{Firmware, KernelInfo};
use crate::network::{LabNames, LabNetwork, Segment};
use crate::process::LabProcess;
use crate::qemu_lock::QemuLock;
use crate::running_vm::RunningVm;
use crate::upstream::Upstream;
use crate::vm::{
    AttachedDisk, BootSource, DiskBus, FirmwareChoice, Nic, NicModel, NicRom, VmConfig,
    APPLIANCE_LAN_MAC, APPLIANCE_UPLINK_MAC,
};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// At most this many VMs at once (machine-wide, enforced with the QEMU lock).
pub const MAX_VMS: usize = 2;

/// What happens to the run directory (serial logs, service logs) at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPolicy {
    Keep,
    /// Removed if `Lab::succeeded` was called and no panic is unwinding.
    RemoveOnSuccess,
}

#[derive(Debug, Clone)]
pub struct LabOptions {
    pub names: LabNames,
    pub run_dir: PathBuf,
    pub logs: LogPolicy,
}

impl LabOptions {
    /// The lab as the CLI and the demo run it: `kl-up`/`kl-lan`, logs kept.
    pub fn standard(run_dir: PathBuf) -> Self {
        Self {
            names: LabNames::default(),
            run_dir,
            logs: LogPolicy::Keep,
        }
    }

    /// A test's lab: its own namespace prefix and a log directory
    /// `<logs_root>/<test>` that survives only if the test fails.
    pub fn for_test(test: &str, logs_root: &Path) -> Self {
        Self {
            names: LabNames::with_prefix("kl-t"),
            run_dir: logs_root.join(test),
            logs: LogPolicy::RemoveOnSuccess,
        }
    }
}

/// How the appliance VM boots.
#[derive(Debug, Clone)]
pub enum ApplianceBoot {
    /// `-kernel/-initrd/-append` (fastest; `console=ttyS0` is always appended).
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        append: String,
    },
    /// The hybrid ISO as a CD under SeaBIOS.
    Iso(PathBuf),
    /// The raw GPT disk under OVMF (a private copy; the original stays pristine).
    Disk { image: PathBuf, bus: DiskBus },
    /// `-kernel/-initrd/-append` (as `Kernel`) with the ISO attached as a
    /// disk, as a USB stick written from it is (`virtio-medium`, read-only)
    /// and a target disk (`virtio-target`, written in place): the
    /// installer's run (docs/install.md).
    Install {
        kernel: PathBuf,
        initrd: PathBuf,
        append: String,
        medium: PathBuf,
        target: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct ApplianceSpec {
    pub boot: ApplianceBoot,
    pub nic_model: NicModel,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Start the appliance's RTC at this date (a machine whose clock was
    /// lost); `None`: the host's time.
    pub rtc_base: Option<String>,
}

impl ApplianceSpec {
    pub fn new(boot: ApplianceBoot) -> Self {
        Self {
            boot,
            nic_model: NicModel::Virtio,
            memory_mb: 1024,
            cpus: 1,
            rtc_base: None,
        }
    }

    /// Fails early (before any lab is created) when a boot file is missing.
    pub fn check_files(&self) -> Result<()> {
        match &self.boot {
            ApplianceBoot::Kernel { kernel, initrd, .. } => {
                require_file("kernel", kernel)?;
                require_file("initramfs", initrd)
            }
            ApplianceBoot::Iso(iso) => require_file("ISO image", iso),
            ApplianceBoot::Disk { image, .. } => require_file("disk image", image),
            ApplianceBoot::Install {
                kernel,
                initrd,
                medium,
                target,
                ..
            } => {
                require_file("kernel", kernel)?;
                require_file("initramfs", initrd)?;
                require_file("ISO image", medium)?;
                require_file("target disk", target)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFirmware {
    Bios,
    /// OVMF, network boot by PXE (TFTP).
    Uefi,
    /// OVMF with its PXE off: UEFI HTTP boot (DHCP vendor class HTTPClient,
    /// the boot program over HTTP, no TFTP), the path a server takes when
    /// its firmware setup has PXE disabled.
    UefiHttp,
}

#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub mac: String,
    pub firmware: NodeFirmware,
    pub nic_model: NicModel,
    pub memory_mb: u32,
    /// `None`: PXE from the LAN. `Some`: direct kernel boot (payload tests
    /// against a stand-in server, before a PXE service exists).
    pub direct: Option<(PathBuf, PathBuf, String)>,
    /// Disks the node has besides its NIC (virtio-blk, used as they are:
    /// the caller passes its own copy). Empty: a diskless node.
    pub disks: Vec<AttachedDisk>,
}

impl NodeSpec {
    pub fn pxe(name: &str, mac: &str, firmware: NodeFirmware) -> Self {
        Self {
            name: name.to_string(),
            mac: mac.to_string(),
            firmware,
            nic_model: NicModel::Virtio,
            memory_mb: 512,
            direct: None,
            disks: Vec::new(),
        }
    }
}

/// Index of a VM in its lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmId(usize);

#[derive(Debug)]
pub struct Lab {
    options: LabOptions,
    accel: Accel,
    vms: Vec<RunningVm>,
    upstream: Option<Upstream>,
    network: Option<LabNetwork>,
    extra: Vec<LabProcess>,
    lock: Option<QemuLock>,
    succeeded: bool,
}

impl Lab {
    /// Creates the namespaces, bridges and upstream services and takes the
    /// QEMU lock. Fails with a clear message when not root or a tool is missing.
    pub fn up(options: LabOptions) -> Result<Self> {
        cmd::require_root("kindling-lab up")?;
        for tool in ["ip", "qemu-system-x86_64", "dnsmasq", "python3", "curl"] {
            cmd::require_tool(tool)?;
        }
        let mut options = options;
        prepare_run_dir(&options.run_dir)?;
        // dnsmasq and QEMU run with another working directory: absolute paths only.
        options.run_dir = std::fs::canonicalize(&options.run_dir)
            .map_err(|e| LabError::io("resolving the run directory", &options.run_dir, e))?;
        let lock = QemuLock::acquire()?;
        let kernel = KernelInfo::newest_installed()?;
        let accel = Accel::detect(&kernel.image, &lock);
        let network = LabNetwork::create(&options.names)?;
        let upstream = Upstream::start(&network, &options.run_dir)?;
        Ok(Self {
            options,
            accel,
            vms: Vec::new(),
            upstream: Some(upstream),
            network: Some(network),
            extra: Vec::new(),
            lock: Some(lock),
            succeeded: false,
        })
    }

    pub fn names(&self) -> &LabNames {
        &self.options.names
    }

    pub fn run_dir(&self) -> &Path {
        &self.options.run_dir
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }

    pub fn upstream(&self) -> Option<&Upstream> {
        self.upstream.as_ref()
    }

    pub fn vm(&mut self, id: VmId) -> &mut RunningVm {
        // A VmId is only made by this lab's start_vm and VMs are never
        // removed, so the index is always in range.
        &mut self.vms[id.0]
    }

    /// Marks the run good: with `LogPolicy::RemoveOnSuccess` its logs go.
    pub fn succeeded(&mut self) {
        self.succeeded = true;
    }

    fn network(&self) -> Result<&LabNetwork> {
        self.network
            .as_ref()
            .ok_or_else(|| LabError::NotUp(self.options.names.lan.clone()))
    }

    fn running_vms(&mut self) -> usize {
        let mut running = 0;
        for vm in &mut self.vms {
            if vm.exited().is_none() {
                running += 1;
            }
        }
        running
    }

    /// Boots the appliance with its uplink NIC on br-up and LAN NIC on br-lan.
    pub fn boot_appliance(&mut self, spec: &ApplianceSpec) -> Result<VmId> {
        let run = self.options.run_dir.clone();
        let (firmware, boot) = match &spec.boot {
            ApplianceBoot::Kernel {
                kernel,
                initrd,
                append,
            } => {
                require_file("kernel", kernel)?;
                require_file("initramfs", initrd)?;
                let append = if append.contains("console=ttyS0") {
                    append.clone()
                } else {
                    format!("{append} console=ttyS0").trim().to_string()
                };
                (
                    FirmwareChoice::Bios,
                    BootSource::Kernel {
                        kernel: kernel.clone(),
                        initrd: initrd.clone(),
                        append,
                        disks: Vec::new(),
                    },
                )
            }
            ApplianceBoot::Iso(iso) => {
                require_file("ISO image", iso)?;
                (FirmwareChoice::Bios, BootSource::Cdrom(iso.clone()))
            }
            ApplianceBoot::Install {
                kernel,
                initrd,
                append,
                medium,
                target,
            } => {
                spec.check_files()?;
                let disk = |image: &PathBuf, serial: &str, read_only| AttachedDisk {
                    image: image.clone(),
                    serial: serial.to_string(),
                    read_only,
                };
                (
                    FirmwareChoice::Bios,
                    BootSource::Kernel {
                        kernel: kernel.clone(),
                        initrd: initrd.clone(),
                        append: format!("{append} console=ttyS0").trim().to_string(),
                        disks: vec![disk(medium, "medium", true), disk(target, "target", false)],
                    },
                )
            }
            ApplianceBoot::Disk { image, bus } => {
                require_file("disk image", image)?;
                let copy = run.join("appliance-disk.img");
                std::fs::copy(image, &copy)
                    .map_err(|e| LabError::io("copying the disk image to", &copy, e))?;
                (
                    self.uefi_firmware("appliance")?,
                    BootSource::Disk {
                        image: copy,
                        bus: *bus,
                    },
                )
            }
        };
        let nics = vec![
            Nic {
                tap: "ap-up".into(),
                mac: APPLIANCE_UPLINK_MAC.into(),
                model: spec.nic_model,
                rom: NicRom::None,
                bootindex: None,
            },
            Nic {
                tap: "ap-lan".into(),
                mac: APPLIANCE_LAN_MAC.into(),
                model: spec.nic_model,
                rom: NicRom::None,
                bootindex: None,
            },
        ];
        let config = VmConfig {
            name: "appliance".into(),
            firmware,
            accel: self.accel,
            memory_mb: spec.memory_mb,
            cpus: spec.cpus,
            nics,
            boot,
            disks: Vec::new(),
            serial_log: run.join("appliance.serial.log"),
            pidfile: run.join("appliance.qemu.pid"),
            rtc_base: spec.rtc_base.clone(),
        };
        self.start_vm(config, &[Segment::Uplink, Segment::Lan])
    }

    /// Boots a node VM on br-lan (PXE, or a direct kernel for payload tests).
    pub fn boot_node(&mut self, spec: &NodeSpec) -> Result<VmId> {
        let config = node_config(spec, self.accel, &self.options.run_dir)?;
        self.start_vm(config, &[Segment::Lan])
    }

    fn uefi_firmware(&self, vm: &str) -> Result<FirmwareChoice> {
        uefi_firmware(vm, &self.options.run_dir)
    }

    fn start_vm(&mut self, config: VmConfig, segments: &[Segment]) -> Result<VmId> {
        if self.running_vms() >= MAX_VMS {
            return Err(LabError::InvalidOption {
                option: "VM count",
                reason: format!(
                    "at most {MAX_VMS} VMs run at once on this machine; stop one first"
                ),
            });
        }
        let vm = start_vm_in(self.network()?, config, segments)?;
        self.vms.push(vm);
        Ok(VmId(self.vms.len() - 1))
    }

    /// Starts a helper process inside the LAN namespace (e.g. a stand-in
    /// server for payload tests); it is stopped with the lab.
    pub fn spawn_in_lan(
        &mut self,
        name: &str,
        program: &str,
        args: &[&str],
        log: &Path,
    ) -> Result<()> {
        let out = std::fs::File::create(log).map_err(|e| LabError::io("creating", log, e))?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::io("opening", log, e))?;
        let mut command = cmd::in_netns(&self.options.names.lan, program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let pidfile = self.options.run_dir.join(format!("{name}.pid"));
        self.extra
            .push(LabProcess::spawn(name, command, Some(&pidfile))?);
        Ok(())
    }

    /// Adds an address to the LAN bridge (inside the LAN namespace).
    pub fn add_lan_address(&self, cidr: &str) -> Result<()> {
        cmd::ip_in(
            &self.options.names.lan,
            &["addr", "add", cidr, "dev", crate::network::LAN_BRIDGE],
        )?;
        Ok(())
    }

    /// A request to the appliance's API from the LAN side (the lab's
    /// 192.168.100.2 on br-lan) as the lab's TEST-ONLY admin operator, over
    /// TLS pinned to the CA fingerprint on the appliance's console: (status
    /// code, body). `body` is JSON.
    pub fn api_from_lan(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String)> {
        let client = self.api_client_from_lan(crate::api::LabOperator::Admin)?;
        crate::api::call(&client, method, path, body)
    }

    /// A client for the appliance's API from the upstream network (the
    /// uplink side), dialling `address` and expecting `server_name` in the
    /// certificate, as `who`.
    pub fn api_client_from_upstream(
        &self,
        who: crate::api::LabOperator,
        address: &str,
        server_name: &str,
    ) -> Result<kindling_api_client::ApiClient> {
        let endpoint = kindling_api_client::Endpoint::parse(address)
            .and_then(|e| e.with_server_name(server_name))
            .map_err(|e| LabError::Api(e.to_string()))?;
        crate::api::client_at(
            &self.options.names.upstream,
            &self.options.run_dir.join("appliance.serial.log"),
            who,
            endpoint,
        )
    }

    /// A client for the appliance's API from the LAN side as `who` (a
    /// client without a token: `.with_token(None)`).
    pub fn api_client_from_lan(
        &self,
        who: crate::api::LabOperator,
    ) -> Result<kindling_api_client::ApiClient> {
        crate::api::client_from(
            &self.options.names.lan,
            &self.options.run_dir.join("appliance.serial.log"),
            who,
        )
    }

    /// What a LAN host hears from the NTP server at `server`.
    pub fn ntp_from_lan(&self, server: std::net::Ipv4Addr) -> Result<crate::sntp::SntpReply> {
        crate::sntp::query_in_netns(&self.options.names.lan, server)
    }

    /// A LAN host asking for a DHCP offer every `every` (at most
    /// `max_probes` times) until the prober is stopped.
    pub fn dhcp_prober_on_lan(
        &self,
        every: std::time::Duration,
        max_probes: u32,
    ) -> crate::dhcp_probe::Prober {
        crate::dhcp_probe::Prober::start(
            &self.options.names.lan,
            crate::network::LAN_BRIDGE,
            every,
            max_probes,
        )
    }

    /// Stops every VM now (the lab stays up).
    pub fn stop_vms(&mut self) {
        for vm in self.vms.iter_mut().rev() {
            vm.stop();
        }
    }

    /// Tears everything down now; also what `Drop` does.
    pub fn down(&mut self) {
        self.stop_vms();
        if let Some(net) = self.network.as_ref() {
            for vm in &self.vms {
                for tap in &vm.taps {
                    net.remove_tap(tap);
                }
            }
        }
        for p in self.extra.iter_mut() {
            p.stop();
        }
        self.upstream = None;
        self.network = None;
        self.lock = None;
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.down();
        let dir = &self.options.run_dir;
        let ok = self.succeeded && !std::thread::panicking();
        if ok && self.options.logs == LogPolicy::RemoveOnSuccess {
            let _ = std::fs::remove_dir_all(dir);
        } else if !ok {
            eprintln!("kindling-lab: logs of this run kept in {}", dir.display());
        }
    }
}

/// A node VM's configuration: one NIC on br-lan with the node's MAC.
pub fn node_config(spec: &NodeSpec, accel: Accel, run_dir: &Path) -> Result<VmConfig> {
    let firmware = match spec.firmware {
        NodeFirmware::Bios => FirmwareChoice::Bios,
        NodeFirmware::Uefi | NodeFirmware::UefiHttp => uefi_firmware(&spec.name, run_dir)?,
    };
    // OVMF has its own virtio network stack (PXE and HTTP boot) but no e1000
    // driver: keep iPXE's ROM there.
    let rom = match (spec.firmware, spec.nic_model) {
        (NodeFirmware::Uefi | NodeFirmware::UefiHttp, NicModel::Virtio) => NicRom::None,
        _ => NicRom::Default,
    };
    let boot = match &spec.direct {
        Some((kernel, initrd, append)) => BootSource::Kernel {
            kernel: kernel.clone(),
            initrd: initrd.clone(),
            append: append.clone(),
            disks: Vec::new(),
        },
        None if spec.firmware == NodeFirmware::UefiHttp => BootSource::HttpBoot,
        None => BootSource::Network,
    };
    let tap = format!("nd-{}", spec.mac.rsplit(':').next().unwrap_or("x"));
    Ok(VmConfig {
        name: spec.name.clone(),
        firmware,
        accel,
        memory_mb: spec.memory_mb,
        cpus: 1,
        nics: vec![Nic {
            tap,
            mac: spec.mac.clone(),
            model: spec.nic_model,
            rom,
            bootindex: spec.direct.is_none().then_some(0),
        }],
        boot,
        disks: spec.disks.clone(),
        serial_log: run_dir.join(format!("{}.serial.log", spec.name)),
        pidfile: run_dir.join(format!("{}.qemu.pid", spec.name)),
        rtc_base: None,
    })
}

/// Starts a node VM in a lab another process runs (`kindling-lab node`).
/// The caller stops it; its tap stays until `LabNetwork::remove_tap`.
pub fn start_node_in(net: &LabNetwork, spec: &NodeSpec, run_dir: &Path) -> Result<RunningVm> {
    std::fs::create_dir_all(run_dir)
        .map_err(|e| LabError::io("creating the run directory", run_dir, e))?;
    let config = node_config(spec, Accel::cached_or_tcg(), run_dir)?;
    start_vm_in(net, config, &[Segment::Lan])
}

fn uefi_firmware(vm: &str, run_dir: &Path) -> Result<FirmwareChoice> {
    let ovmf = Firmware::ovmf()?;
    let vars = run_dir.join(format!("{vm}-OVMF_VARS.fd"));
    std::fs::copy(&ovmf.ovmf_vars, &vars)
        .map_err(|e| LabError::io("copying OVMF vars to", &vars, e))?;
    Ok(FirmwareChoice::Uefi {
        code: ovmf.ovmf_code,
        vars,
    })
}

/// Creates the VM's taps on their bridges and starts QEMU in the LAN namespace.
fn start_vm_in(network: &LabNetwork, config: VmConfig, segments: &[Segment]) -> Result<RunningVm> {
    let mut taps = Vec::new();
    for (nic, segment) in config.nics.iter().zip(segments) {
        // A tap left by an earlier VM of the same name is replaced.
        network.remove_tap(&nic.tap);
        network.add_tap(&nic.tap, *segment)?;
        taps.push(nic.tap.clone());
    }
    let _ = std::fs::remove_file(&config.serial_log);
    let qemu_log = config.serial_log.with_extension("qemu.log");
    let stderr =
        std::fs::File::create(&qemu_log).map_err(|e| LabError::io("creating", &qemu_log, e))?;
    let mut command = cmd::in_netns(&network.names().lan, "qemu-system-x86_64");
    command
        .args(config.qemu_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let process = LabProcess::spawn(&config.name, command, None)?;
    Ok(RunningVm::new(config, process, taps))
}

fn require_file(what: &'static str, path: &Path) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(LabError::ArtifactMissing {
            what,
            path: path.to_path_buf(),
            fix: "build the image first (`kindling image build … --out build/image`)".into(),
        })
    }
}

fn prepare_run_dir(dir: &Path) -> Result<()> {
    // Logs of an earlier run of the same lab/test would mix with this one's.
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| LabError::io("clearing the run directory", dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| LabError::io("creating the run directory", dir, e))
}

/// `curl` inside `ns`: (status, body). A refused or timed-out connection is
/// an error naming the URL.
pub fn http_in_netns(
    ns: &str,
    method: &str,
    url: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let mut c = cmd::in_netns(ns, "curl");
    c.args([
        "-sS",
        "--max-time",
        "10",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    c.arg(url);
    let out = cmd::run(&mut c)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    let code = code.trim().parse().map_err(|_| LabError::CommandFailed {
        command: format!("curl {url}"),
        status: "no HTTP status".into(),
        stderr: text.clone(),
    })?;
    Ok((code, body.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn uefi_http_node_uses_ovmf_own_virtio_stack_and_http_boot() {
        if Firmware::ovmf().is_err() {
            eprintln!("skipping: ovmf not installed");
            return;
        }
        let run_dir = tempfile::tempdir().unwrap();
        let config = |firmware| {
            let spec = NodeSpec::pxe("node", "52:54:00:6b:00:30", firmware);
            node_config(&spec, Accel::Tcg, run_dir.path()).unwrap()
        };
        let http = config(NodeFirmware::UefiHttp);
        assert!(matches!(http.firmware, FirmwareChoice::Uefi { .. }));
        assert!(matches!(http.boot, BootSource::HttpBoot));
        assert_eq!(http.nics[0].rom, NicRom::None);
        assert!(matches!(
            config(NodeFirmware::Uefi).boot,
            BootSource::Network
        ));
    }
}
