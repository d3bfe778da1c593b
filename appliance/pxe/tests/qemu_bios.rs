//! Real firmware: a SeaBIOS node VM with QEMU's iPXE NIC ROM PXE-boots from
//! the PXE service (and, opt-in, OVMF by UEFI PXE and by UEFI HTTP boot) (in-process, in a network namespace of its own: bridge
//! `kpqbr*` + tap, nothing on the host network), gets its per-MAC profile,
//! boots the lab payload (Debian kernel + tiny initramfs that fetches its
//! NoCloud data and phones home) and ends "installed" in the inventory.
//!
//! Holds /tmp/kindling-qemu.lock while the VM runs; the VM is killed on any
//! failure. Skips with a message when not root or QEMU/iPXE ROMs are missing.
//! Prints the timing of each stage (DHCP, script, kernel, installed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use kindling_pxe::PxeSettings;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const MAC: &str = "52:54:00:6b:00:10";
const LIMIT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, PartialEq)]
enum Firmware {
    /// SeaBIOS with QEMU's iPXE option ROM on an e1000.
    SeaBios,
    /// OVMF's own PXE on virtio-net (ROM disabled) → snponly.efi over TFTP.
    Ovmf,
    /// OVMF's own network stack on virtio-net (ROM disabled) with its PXE
    /// turned off, so it network-boots by UEFI HTTP boot: DHCP with vendor
    /// class HTTPClient → http://LAN/boot/ipxe.efi, no TFTP at all.
    OvmfHttp,
}

impl Firmware {
    fn name(self) -> &'static str {
        match self {
            Firmware::SeaBios => "SeaBIOS+iPXE",
            Firmware::Ovmf => "OVMF UEFI PXE",
            Firmware::OvmfHttp => "OVMF UEFI HTTP boot",
        }
    }
}

/// Skips (false) unless KINDLING_TEST_UEFI=1 and OVMF is installed: an OVMF
/// node takes about a minute under TCG, too long for every run.
fn uefi_tests_wanted(what: &str) -> bool {
    if std::env::var_os("KINDLING_TEST_UEFI").is_none() {
        eprintln!("skipping: set KINDLING_TEST_UEFI=1 to run the OVMF ({what}) node test");
        return false;
    }
    if !Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd").exists() {
        eprintln!("skipping: ovmf not installed");
        return false;
    }
    true
}

#[test]
fn seabios_ipxe_node_boots_its_profile_and_reports_installed() {
    require_root!();
    boot_node(Firmware::SeaBios, false);
}

/// Nightly-style opt-in (about a minute under TCG): KINDLING_TEST_UEFI=1.
#[test]
fn ovmf_pxe_node_boots_its_profile_and_reports_installed() {
    require_root!();
    if uefi_tests_wanted("UEFI PXE") {
        boot_node(Firmware::Ovmf, false);
    }
}

/// UEFI HTTP boot (RFC 7230 client in the firmware, DHCP option 93 = 16):
/// the path real servers take when PXE is off in their setup. Opt-in like
/// the OVMF PXE test: KINDLING_TEST_UEFI=1.
#[test]
fn ovmf_http_boot_node_boots_its_profile_and_reports_installed() {
    require_root!();
    if uefi_tests_wanted("UEFI HTTP boot") {
        boot_node(Firmware::OvmfHttp, false);
    }
}

/// proxyDHCP, like Pixiecore: dnsmasq owns the addresses (and offers no
/// boot file), the PXE service only adds boot information.
#[test]
fn seabios_node_boots_through_proxydhcp_next_to_another_dhcp_server() {
    require_root!();
    boot_node(Firmware::SeaBios, true);
}

fn boot_node(firmware: Firmware, proxy: bool) {
    if !qemu_available() {
        return;
    }
    let dirs = Dirs::new();
    let payload = kindling_lab::payload::build(
        &kindling_lab::payload::PayloadInputs::host_defaults().unwrap(),
        &dirs.path("artifacts"),
    )
    .unwrap();
    assert!(payload.initrd.exists());

    let lan = BridgeLan::new();
    let (ns, br) = (&lan.ns, &lan.bridge);

    let mut site = lab_site();
    for profile in site.profiles.values_mut() {
        if let kindling_site::BootPayload::Linux { cmdline, .. } = &mut profile.boot {
            // The lab's NAT probe needs an uplink this test does not have.
            cmdline.push_str(" kindling.nat_probe=off");
        }
    }
    // KP_QEMU_NO_RA=1 turns the RAs off, to measure what they save.
    site.pxe.router_advertisements = std::env::var_os("KP_QEMU_NO_RA").is_none();
    // Copies, as the image does: Debian's /usr/lib/ipxe/ipxe.efi is a
    // symlink to /boot/ipxe.efi, and the service refuses any file whose real
    // path leaves its boot directory (a 404 the HTTP boot firmware reports).
    let boot_dir = dirs.path("boot");
    for name in ["undionly.kpxe", "snponly.efi", "ipxe.efi"] {
        std::fs::copy(Path::new("/usr/lib/ipxe").join(name), boot_dir.join(name)).unwrap();
    }
    let settings = PxeSettings::from_site(&site, dirs.paths(&boot_dir)).unwrap();
    let mut dnsmasq = None;
    if proxy {
        let leases = dirs.path("dnsmasq.leases");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "dnsmasq",
                "--keep-in-foreground",
                "--user=root",
                "--port=0",
                "--no-resolv",
                "--no-hosts",
                &format!("--interface={br}"),
                "--bind-interfaces",
                "--dhcp-range=192.168.100.50,192.168.100.60,1h",
                "--log-facility=/dev/null",
            ])
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .spawn()
            .unwrap();
        dnsmasq = Some(KillOnDrop(child));
    }
    let mut settings = settings;
    if proxy {
        settings.mode = kindling_site::DhcpMode::Proxy;
    }
    start_service(ns, br, settings);

    let _lock = kindling_lab::qemu_lock::QemuLock::acquire().unwrap();
    let serial = dirs.path("serial.log");
    let started = Instant::now();
    let mut cmd = node_vm_command(&lan, 512, &serial);
    match firmware {
        Firmware::SeaBios => {
            cmd.args(["-device", &format!("e1000,netdev=n0,mac={MAC}")]);
        }
        Firmware::Ovmf | Firmware::OvmfHttp => {
            // Own VARS copy per VM; romfile= empty so OVMF's own network
            // stack runs, not iPXE's EFI ROM.
            let vars = dirs.path("OVMF_VARS.fd");
            std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
            cmd.args([
                "-drive",
                "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
            ])
            .args([
                "-drive",
                &format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
            ])
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac={MAC},romfile="),
            ]);
            if firmware == Firmware::OvmfHttp {
                // edk2's NetworkPkg reads these QEMU fw_cfg files: with PXE
                // off over both IP versions, OVMF's network boot entries are
                // only "UEFI HTTPv4" and "UEFI HTTPv6", tried in that order.
                cmd.args([
                    "-fw_cfg",
                    "name=opt/org.tianocore/IPv4PXESupport,string=n",
                    "-fw_cfg",
                    "name=opt/org.tianocore/IPv6PXESupport,string=n",
                ]);
            }
        }
    }
    let mut vm = KillOnDrop(cmd.spawn().unwrap());

    let status_path = dirs.path("status/pxe.json");
    let mut seen: Vec<(&str, Duration)> = Vec::new();
    let marks = [
        ("dhcp ack", "dhcp_acks"),
        ("tftp transfer", "tftp_transfers"),
        ("boot file (http)", "boot_files"),
        ("ipxe script", "http_scripts"),
        ("kernel+initrd", "artifacts"),
    ];
    loop {
        let st = read_status(&status_path);
        for (label, counter) in marks {
            let need = if counter == "artifacts" { 2 } else { 1 };
            if !seen.iter().any(|(l, _)| *l == label)
                && st["counters"][counter].as_u64().unwrap_or(0) >= need
            {
                seen.push((label, started.elapsed()));
            }
        }
        let log = std::fs::read_to_string(&serial).unwrap_or_default();
        if !seen.iter().any(|(l, _)| *l == "payload booted")
            && log.contains("kindling-node: booted")
        {
            seen.push(("payload booted", started.elapsed()));
        }
        if log.contains("kindling-node: FAILED") {
            panic!("node failed:\n{log}");
        }
        // OVMF drops to its shell once every boot entry failed: nothing more
        // will happen, so fail now instead of at the time limit.
        if log.contains("\"EFI Internal Shell\"") {
            panic!("OVMF gave up network boot:\n{log}\nstatus: {st}");
        }
        let nodes =
            std::fs::read_to_string(dirs.path("state/inventory/nodes.json")).unwrap_or_default();
        if nodes.contains("\"installed\"") {
            seen.push(("inventory installed", started.elapsed()));
            break;
        }
        if let Ok(Some(exit)) = vm.0.try_wait() {
            // The payload powers off right after its last event; the
            // inventory reaches disk within a second of it.
            let installed = eventually(Duration::from_secs(3), || {
                let nodes =
                    std::fs::read_to_string(dirs.path("state/inventory/nodes.json")).ok()?;
                nodes.contains("\"installed\"").then_some(())
            });
            if installed.is_some() {
                seen.push(("inventory installed", started.elapsed()));
                break;
            }
            panic!("VM exited ({exit}) before the node was installed:\n{log}\nstatus: {st}");
        }
        if started.elapsed() > LIMIT {
            panic!("node not installed within {LIMIT:?}:\n{log}\nstatus: {st}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&status_path).unwrap()).unwrap();
    eprintln!("{} node {MAC}, TCG:", firmware.name());
    for (label, at) in &seen {
        eprintln!("  {label:<20} {:>6.1} s", at.as_secs_f64());
    }
    eprintln!(
        "  RAs sent: {}, RA errors: {}",
        st["counters"]["ra_sent"], st["counters"]["ra_send_errors"]
    );
    let node = inventory_node(&dirs, MAC);
    assert_eq!(node["profile"], "dev");
    assert_eq!(node["state"], "installed");
    if proxy {
        let ip = node["ip"].as_str().unwrap_or_default();
        assert!(
            ip.is_empty() || ip.starts_with("192.168.100.5") || ip == "192.168.100.60",
            "address from dnsmasq: {node}"
        );
        assert!(
            st["counters"]["dhcp_offers"].as_u64().unwrap_or(0) >= 1,
            "proxy offers: {st}"
        );
        assert_eq!(
            st["leases_in_use"], 0,
            "a proxy hands out no addresses: {st}"
        );
    }
    drop(dnsmasq);
    let log = std::fs::read_to_string(&serial).unwrap_or_default();
    // The inventory keeps the firmware of the node's latest boot-time DHCP,
    // which is iPXE's own on every path: EFI iPXE reports plain UEFI (option
    // 93 = 7) even when HTTP boot loaded it.
    let expected = match firmware {
        Firmware::SeaBios => "bios",
        Firmware::Ovmf | Firmware::OvmfHttp => "uefi",
    };
    assert_eq!(node["firmware"], expected, "serial:\n{log}");
    let counter = |name: &str| st["counters"][name].as_u64().unwrap_or(0);
    match firmware {
        Firmware::SeaBios => {}
        Firmware::Ovmf => {
            assert!(counter("dhcp_boot_uefi") >= 1, "PXE answer: {st}");
            assert!(counter("tftp_transfers") >= 1, "snponly.efi by TFTP: {st}");
        }
        Firmware::OvmfHttp => {
            // Proof the HTTP path was taken, from both ends: the firmware
            // says so on the console, and the service answered an HTTPClient
            // and served snponly.efi over HTTP without a single TFTP request.
            assert!(
                log.contains("Start HTTP Boot over IPv4"),
                "OVMF did not HTTP boot:\n{log}"
            );
            assert!(!log.contains("Start PXE"), "OVMF tried PXE:\n{log}");
            assert!(
                counter("dhcp_boot_uefi_http") >= 1,
                "HTTPClient answer: {st}"
            );
            assert_eq!(counter("dhcp_boot_uefi"), 0, "no UEFI PXE answer: {st}");
            assert!(counter("boot_files") >= 1, "snponly.efi over HTTP: {st}");
            assert_eq!(counter("tftp_requests"), 0, "no TFTP: {st}");
        }
    }
    drop(vm);
}
