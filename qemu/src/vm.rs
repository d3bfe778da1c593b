//! What a lab VM is (machine, firmware, NICs, boot source, serial log) and the
//! QEMU command line for it. Pure: building the argv starts nothing, so it is
//! tested without QEMU. The VM never gets user-mode networking; its NICs are
//! taps on the lab's bridges only.

use crate::accel::Accel;
use std::ffi::OsString;
use std::path::PathBuf;

/// The appliance's NIC MACs and the lab node MACs (docs/contracts.md).
pub const APPLIANCE_UPLINK_MAC: &str = "52:54:00:6b:00:01";
pub const APPLIANCE_LAN_MAC: &str = "52:54:00:6b:00:02";
pub const NODE_DEV_MAC: &str = "52:54:00:6b:00:10";
pub const NODE_PROD_MAC: &str = "52:54:00:6b:00:20";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicModel {
    Virtio,
    E1000,
}

impl NicModel {
    fn device(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio-net-pci",
            NicModel::E1000 => "e1000",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "virtio" => Some(NicModel::Virtio),
            "e1000" => Some(NicModel::E1000),
            _ => None,
        }
    }
}

/// Which option ROM the NIC carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicRom {
    /// QEMU's default (Debian's iPXE ROM for the model): BIOS and EFI PXE.
    Default,
    /// No ROM: the appliance does not netboot; OVMF uses its own virtio PXE.
    None,
}

#[derive(Debug, Clone)]
pub struct Nic {
    pub tap: String,
    pub mac: String,
    pub model: NicModel,
    pub rom: NicRom,
    pub bootindex: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    Virtio,
    Ide,
}

/// Where the VM boots from.
#[derive(Debug, Clone)]
pub enum BootSource {
    /// Direct kernel boot: QEMU loads the kernel and initramfs itself.
    /// `disks` are raw images attached as virtio-blk devices (the
    /// installer's run: the ISO as a USB stick would be, and the target
    /// disk), each named by its serial (`/dev/disk/by-id/virtio-<serial>`);
    /// none is a boot device.
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        append: String,
        disks: Vec<AttachedDisk>,
    },
    /// A CD-ROM (ISO image); read-only, the original is used as is.
    Cdrom(PathBuf),
    /// A raw disk image; the caller passes a private copy.
    Disk { image: PathBuf, bus: DiskBus },
    /// The network: PXE through the NIC with a bootindex.
    Network,
    /// The network by UEFI HTTP boot only: OVMF's PXE is switched off, so
    /// its network boot entries are HTTP over IPv4, then IPv6. OVMF only;
    /// SeaBIOS ignores the switches and would PXE-boot.
    HttpBoot,
}

/// The QEMU fw_cfg files edk2's NetworkPkg reads at boot (OVMF's
/// `PcdIPv4PXESupport`/`PcdIPv6PXESupport` overrides): with both `n` the
/// firmware creates no PXE boot entries and falls to HTTP boot.
const OVMF_PXE_OFF: [&str; 2] = [
    "name=opt/org.tianocore/IPv4PXESupport,string=n",
    "name=opt/org.tianocore/IPv6PXESupport,string=n",
];

/// A raw disk image attached to a VM, used as it is (the caller's file).
#[derive(Debug, Clone)]
pub struct AttachedDisk {
    pub image: PathBuf,
    pub serial: String,
    pub read_only: bool,
}

#[derive(Debug, Clone)]
pub enum FirmwareChoice {
    /// SeaBIOS (QEMU's default), i440fx machine.
    Bios,
    /// OVMF on q35, with a private copy of the variable store.
    Uefi { code: PathBuf, vars: PathBuf },
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    pub name: String,
    pub firmware: FirmwareChoice,
    pub accel: Accel,
    pub memory_mb: u32,
    pub cpus: u32,
    pub nics: Vec<Nic>,
    pub boot: BootSource,
    /// Raw disks attached besides the boot source (a node's root disk
    /// while it boots from the network), as virtio-blk, never boot devices.
    pub disks: Vec<AttachedDisk>,
    pub serial_log: PathBuf,
    pub pidfile: PathBuf,
    /// The real-time clock's start (QEMU `-rtc base=`, e.g. `2001-01-01`):
    /// a machine whose RTC lost its time. `None`: the host's time (UTC).
    pub rtc_base: Option<String>,
}

impl VmConfig {
    /// The arguments after `qemu-system-x86_64`.
    pub fn qemu_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(s.into());
        push("-name");
        push(&self.name);
        let machine = match self.firmware {
            // graphics=off: SeaBIOS, iPXE and grub print to the serial port
            // (the serial graphics adapter), so their lines reach the log.
            FirmwareChoice::Bios => "pc,graphics=off",
            FirmwareChoice::Uefi { .. } => "q35",
        };
        push("-machine");
        push(&format!("{machine},accel={}", self.accel.as_str()));
        push("-cpu");
        push(self.accel.cpu());
        push("-m");
        push(&self.memory_mb.to_string());
        push("-smp");
        push(&self.cpus.to_string());
        push("-nodefaults");
        push("-display");
        push("none");
        push("-no-reboot");
        push("-serial");
        push(&format!("file:{}", self.serial_log.display()));
        push("-pidfile");
        push(&self.pidfile.display().to_string());
        push("-device");
        push("virtio-rng-pci");
        if let Some(base) = &self.rtc_base {
            push("-rtc");
            push(&format!("base={base}"));
        }
        if let FirmwareChoice::Uefi { code, vars } = &self.firmware {
            push("-drive");
            push(&format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                code.display()
            ));
            push("-drive");
            push(&format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
        }
        for (i, nic) in self.nics.iter().enumerate() {
            push("-netdev");
            push(&format!(
                "tap,id=net{i},ifname={},script=no,downscript=no",
                nic.tap
            ));
            let mut dev = format!("{},netdev=net{i},mac={}", nic.model.device(), nic.mac);
            if nic.rom == NicRom::None {
                dev.push_str(",romfile=");
            }
            if let Some(index) = nic.bootindex {
                dev.push_str(&format!(",bootindex={index}"));
            }
            push("-device");
            push(&dev);
        }
        match &self.boot {
            BootSource::Kernel {
                kernel,
                initrd,
                append,
                disks,
            } => {
                push("-kernel");
                push(&kernel.display().to_string());
                push("-initrd");
                push(&initrd.display().to_string());
                push("-append");
                push(append);
                for (i, disk) in disks.iter().enumerate() {
                    push("-drive");
                    push(&format!(
                        "file={},format=raw,if=none,id=attached{i}{}",
                        disk.image.display(),
                        if disk.read_only { ",readonly=on" } else { "" }
                    ));
                    push("-device");
                    push(&format!(
                        "virtio-blk-pci,drive=attached{i},serial={}",
                        disk.serial
                    ));
                }
            }
            BootSource::Cdrom(iso) => {
                push("-drive");
                push(&format!(
                    "file={},format=raw,media=cdrom,readonly=on,if=none,id=cd0",
                    iso.display()
                ));
                // ide.1 exists on both machines: i440fx's second IDE channel,
                // q35's second AHCI port.
                push("-device");
                push("ide-cd,drive=cd0,bus=ide.1,bootindex=0");
            }
            BootSource::Disk { image, bus } => {
                push("-drive");
                push(&format!(
                    "file={},format=raw,if=none,id=disk0",
                    image.display()
                ));
                push("-device");
                push(match bus {
                    DiskBus::Virtio => "virtio-blk-pci,drive=disk0,bootindex=0",
                    DiskBus::Ide => "ide-hd,drive=disk0,bus=ide.0,bootindex=0",
                });
            }
            BootSource::Network => {}
            BootSource::HttpBoot => {
                for file in OVMF_PXE_OFF {
                    push("-fw_cfg");
                    push(file);
                }
            }
        }
        for (i, disk) in self.disks.iter().enumerate() {
            push("-drive");
            push(&format!(
                "file={},format=raw,if=none,id=data{i}{}",
                disk.image.display(),
                if disk.read_only { ",readonly=on" } else { "" }
            ));
            push("-device");
            push(&format!(
                "virtio-blk-pci,drive=data{i},serial={}",
                disk.serial
            ));
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(firmware: FirmwareChoice, boot: BootSource) -> VmConfig {
        VmConfig {
            name: "appliance".into(),
            firmware,
            accel: Accel::Tcg,
            memory_mb: 1024,
            cpus: 1,
            nics: vec![
                Nic {
                    tap: "ka-up".into(),
                    mac: APPLIANCE_UPLINK_MAC.into(),
                    model: NicModel::Virtio,
                    rom: NicRom::None,
                    bootindex: None,
                },
                Nic {
                    tap: "ka-lan".into(),
                    mac: APPLIANCE_LAN_MAC.into(),
                    model: NicModel::E1000,
                    rom: NicRom::Default,
                    bootindex: Some(1),
                },
            ],
            boot,
            disks: Vec::new(),
            serial_log: "/lab/appliance.serial.log".into(),
            pidfile: "/lab/appliance.pid".into(),
            rtc_base: None,
        }
    }

    fn joined(c: &VmConfig) -> String {
        c.qemu_args()
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_stale_rtc_is_passed_only_when_asked() {
        let mut c = config(FirmwareChoice::Bios, BootSource::Network);
        assert!(!joined(&c).contains("-rtc"));
        c.rtc_base = Some("2001-01-01".into());
        assert!(
            joined(&c).contains("-rtc base=2001-01-01"),
            "{}",
            joined(&c)
        );
    }

    #[test]
    fn the_install_run_attaches_its_disks_by_serial_and_boots_none() {
        let disk = |image: &str, serial: &str, read_only| AttachedDisk {
            image: image.into(),
            serial: serial.into(),
            read_only,
        };
        let c = config(
            FirmwareChoice::Bios,
            BootSource::Kernel {
                kernel: "/k".into(),
                initrd: "/i".into(),
                append: "kindling.install=/dev/disk/by-id/virtio-target".into(),
                disks: vec![
                    disk("/k.iso", "medium", true),
                    disk("/t.img", "target", false),
                ],
            },
        );
        let line = joined(&c);
        assert!(
            line.contains(
                "-kernel /k -initrd /i -append kindling.install=/dev/disk/by-id/virtio-target"
            ),
            "{line}"
        );
        assert!(
            line.contains("-drive file=/k.iso,format=raw,if=none,id=attached0,readonly=on -device virtio-blk-pci,drive=attached0,serial=medium"),
            "{line}"
        );
        assert!(
            line.contains("-drive file=/t.img,format=raw,if=none,id=attached1 -device virtio-blk-pci,drive=attached1,serial=target"),
            "{line}"
        );
        assert!(!line.contains("bootindex=0"), "{line}");
    }

    #[test]
    fn kernel_boot_has_taps_macs_serial_and_no_user_networking() {
        let c = config(
            FirmwareChoice::Bios,
            BootSource::Kernel {
                kernel: "/k".into(),
                initrd: "/i".into(),
                append: "console=ttyS0".into(),
                disks: Vec::new(),
            },
        );
        let line = joined(&c);
        assert!(
            line.contains("-machine pc,graphics=off,accel=tcg -cpu max"),
            "{line}"
        );
        assert!(
            line.contains("-netdev tap,id=net0,ifname=ka-up,script=no,downscript=no"),
            "{line}"
        );
        assert!(
            line.contains("virtio-net-pci,netdev=net0,mac=52:54:00:6b:00:01,romfile="),
            "{line}"
        );
        assert!(
            line.contains("e1000,netdev=net1,mac=52:54:00:6b:00:02,bootindex=1"),
            "{line}"
        );
        assert!(
            line.contains("-serial file:/lab/appliance.serial.log"),
            "{line}"
        );
        assert!(
            line.contains("-kernel /k -initrd /i -append console=ttyS0"),
            "{line}"
        );
        assert!(
            line.contains("-no-reboot") && line.contains("-display none"),
            "{line}"
        );
        assert!(!line.contains("user"), "{line}");
    }

    #[test]
    fn uefi_disk_boot_uses_private_vars_and_the_disk_first() {
        let c = config(
            FirmwareChoice::Uefi {
                code: "/ovmf/code.fd".into(),
                vars: "/lab/vars.fd".into(),
            },
            BootSource::Disk {
                image: "/lab/disk.img".into(),
                bus: DiskBus::Virtio,
            },
        );
        let line = joined(&c);
        assert!(line.contains("-machine q35,accel=tcg"), "{line}");
        assert!(
            line.contains("if=pflash,format=raw,unit=0,readonly=on,file=/ovmf/code.fd"),
            "{line}"
        );
        assert!(
            line.contains("if=pflash,format=raw,unit=1,file=/lab/vars.fd"),
            "{line}"
        );
        assert!(
            line.contains("virtio-blk-pci,drive=disk0,bootindex=0"),
            "{line}"
        );
    }

    #[test]
    fn http_boot_turns_ovmf_pxe_off_and_pxe_does_not() {
        let uefi = || FirmwareChoice::Uefi {
            code: "/ovmf/code.fd".into(),
            vars: "/lab/vars.fd".into(),
        };
        let line = joined(&config(uefi(), BootSource::HttpBoot));
        assert!(
            line.contains(
                "-fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=n \
                 -fw_cfg name=opt/org.tianocore/IPv6PXESupport,string=n"
            ),
            "{line}"
        );
        let line = joined(&config(uefi(), BootSource::Network));
        assert!(!line.contains("fw_cfg"), "{line}");
    }

    #[test]
    fn a_network_booted_vm_gets_its_data_disks_without_a_bootindex() {
        let mut c = config(FirmwareChoice::Bios, BootSource::Network);
        c.disks = vec![AttachedDisk {
            image: "/lab/root.ext4".into(),
            serial: "root".into(),
            read_only: false,
        }];
        let line = joined(&c);
        assert!(
            line.contains(
                "-drive file=/lab/root.ext4,format=raw,if=none,id=data0 \
                 -device virtio-blk-pci,drive=data0,serial=root"
            ),
            "{line}"
        );
    }

    #[test]
    fn cdrom_is_read_only() {
        let c = config(
            FirmwareChoice::Bios,
            BootSource::Cdrom("/out/kindling.iso".into()),
        );
        assert!(joined(&c).contains("file=/out/kindling.iso,format=raw,media=cdrom,readonly=on"));
    }
}
