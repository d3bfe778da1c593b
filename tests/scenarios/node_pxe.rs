//! The whole path: the appliance (direct kernel boot, the fastest) comes up,
//! a SeaBIOS + iPXE node PXE-boots the lab payload from it, fetches its NoCloud
//! data, phones home (the appliance's inventory shows it), and reaches the
//! upstream HTTP target through the appliance's NAT: the target sees the
//! appliance's uplink address, not the node's LAN address. Booted again,
//! the installed node is sent to its disk. Then a UEFI node
//! (OVMF's own PXE) boots the prod profile with its reserved address, and a
//! UEFI HTTP boot node (OVMF with PXE off) boots the default profile.

use crate::appliance_boot::wait_ready_and_check_status;
use crate::{NODE_FAIL, NODE_TIMEOUT};
use kindling_e2e::{lab_for, lab_image, skip_unless_root};
use kindling_lab::upstream::NAT_PROBE_PATH;
use kindling_lab::vm::{APPLIANCE_UPLINK_MAC, NODE_DEV_MAC, NODE_PROD_MAC};
use kindling_lab::{ApplianceBoot, ApplianceSpec, NodeFirmware, NodeSpec};
use std::time::Duration;

/// Not in overlays/lab: the HTTP boot node also covers an unknown MAC.
const NODE_HTTP_MAC: &str = "52:54:00:6b:00:30";

#[test]
#[ignore = "QEMU lab: run by tests/e2e"]
fn bios_and_uefi_nodes_pxe_boot_from_the_appliance_and_reach_upstream_through_nat(
) -> Result<(), String> {
    let scenario = "node_pxe";
    if skip_unless_root(scenario) {
        return Ok(());
    }
    let image = lab_image()?;
    let mut lab = lab_for(scenario)?;
    let boot = ApplianceBoot::Kernel {
        kernel: image.join("vmlinuz"),
        initrd: image.join("initramfs.cpio.zst"),
        append: "console=ttyS0 panic=-1".into(),
    };
    let app = lab
        .boot_appliance(&ApplianceSpec::new(boot))
        .map_err(|e| e.to_string())?;
    wait_ready_and_check_status(&mut lab, app, scenario)?;

    // An operator's browser on the LAN watches the node's row from before it boots.
    let watch = crate::status_page::PageWatch::start(&lab, NODE_DEV_MAC)?;

    let node = lab
        .boot_node(&NodeSpec::pxe(
            "node-bios",
            NODE_DEV_MAC,
            NodeFirmware::Bios,
        ))
        .map_err(|e| e.to_string())?;
    let vm = lab.vm(node);
    for step in [
        r"kindling-node: booted",
        r"kindling-node: lease 192\.168\.100\.",
        r"kindling-node: nocloud ok",
        r"kindling-node: upstream (reachable|unreachable)",
        r"kindling-node: installed",
    ] {
        let seen = vm
            .wait_for_unless(step, Some(NODE_FAIL), NODE_TIMEOUT)
            .map_err(|e| e.to_string())?;
        eprintln!(
            "[{scenario}] node +{:.1}s {}",
            seen.elapsed.as_secs_f64(),
            seen.line.trim()
        );
    }
    vm.wait_exit(Duration::from_secs(30))
        .ok_or("the node did not power off after `installed`")?;

    // The appliance's inventory, asked from the LAN side.
    let url = kindling_lab::demo::NODES_PATH;
    let settle = kindling_lab::demo::INVENTORY_SETTLE;
    let (code, body) = kindling_lab::demo::wait_node_phoned_home(&lab, NODE_DEV_MAC, settle)
        .map_err(|e| e.to_string())?;
    if code != 200 || !kindling_lab::demo::node_phoned_home(&body, NODE_DEV_MAC) {
        let state = kindling_lab::demo::node_state(&body, NODE_DEV_MAC);
        return Err(format!(
            "GET {url} answered {code}; node {NODE_DEV_MAC} has state {state:?}, expected installed: {body}"
        ));
    }

    // The browser's page followed it live; the page as the API's own client
    // fetches it (over TLS, read-only token) shows it too.
    watch.expect_state("installed", Duration::from_secs(20))?;
    let started = std::time::Instant::now();
    let reader = lab
        .api_client_from_lan(kindling_lab::api::LabOperator::Read)
        .map_err(|e| e.to_string())?;
    let (code, page) =
        kindling_lab::api::call(&reader, "GET", "/", None).map_err(|e| e.to_string())?;
    let shown = ["installed", "joined"].iter().any(|state| {
        page.contains(&format!(
            "<span class=node-state data-mac=\"{NODE_DEV_MAC}\">{state}</span>"
        ))
    });
    if code != 200 || !shown {
        return Err(format!(
            "GET / (status page, read role) answered {code} without node {NODE_DEV_MAC} installed: {page}"
        ));
    }
    eprintln!(
        "[{scenario}] status page: {} bytes, shows {NODE_DEV_MAC} installed, {:.2}s",
        page.len(),
        started.elapsed().as_secs_f64()
    );

    // NAT: the upstream target saw the appliance's uplink lease, not 192.168.100.x.
    let upstream = lab.upstream().ok_or("the lab has no upstream")?;
    let uplink_ip = upstream
        .leases()
        .into_iter()
        .find(|(mac, _)| mac == APPLIANCE_UPLINK_MAC)
        .map(|(_, ip)| ip)
        .ok_or("the upstream router never leased an address to the appliance's uplink")?;
    let clients = upstream.http_clients_for(NAT_PROBE_PATH);
    if clients.is_empty() {
        return Err("the node's NAT probe never reached the upstream HTTP target".into());
    }
    if clients.iter().any(|c| c != &uplink_ip) {
        return Err(format!(
            "upstream saw {clients:?}; with NAT every request comes from {uplink_ip}"
        ));
    }

    // Install once: the installed node's next PXE boot gets an address but
    // no boot program, so its firmware moves on to its disk (the lab node
    // has none, which SeaBIOS says). It must not boot the profile again.
    let again = NodeSpec::pxe("node-bios-again", NODE_DEV_MAC, NodeFirmware::Bios);
    let node = lab.boot_node(&again).map_err(|e| e.to_string())?;
    let vm = lab.vm(node);
    for step in [r"net0: 192\.168\.100\.\d+", r"No bootable device"] {
        let seen = vm
            .wait_for_unless(step, Some(r"kindling-node: |\.ipxe\.\.\."), NODE_TIMEOUT)
            .map_err(|e| format!("installed node: {e}"))?;
        eprintln!(
            "[{scenario}] installed node +{:.1}s {}",
            seen.elapsed.as_secs_f64(),
            seen.line.trim()
        );
    }
    vm.stop();
    let (_, body) = kindling_lab::demo::wait_node_phoned_home(&lab, NODE_DEV_MAC, settle)
        .map_err(|e| e.to_string())?;
    let state = kindling_lab::demo::node_state(&body, NODE_DEV_MAC);
    if state.as_deref() != Some("installed") {
        return Err(format!(
            "node {NODE_DEV_MAC} is {state:?} after booting its disk, expected installed: {body}"
        ));
    }

    // A UEFI node (OVMF's own virtio PXE, no iPXE ROM) with the prod profile
    // and its reserved address from overlays/lab.
    let uefi = NodeSpec::pxe("node-uefi", NODE_PROD_MAC, NodeFirmware::Uefi);
    let node = lab.boot_node(&uefi).map_err(|e| e.to_string())?;
    let vm = lab.vm(node);
    for step in [
        r"kindling-node: lease 192\.168\.100\.150/",
        r"kindling-node: nocloud ok",
        r"kindling-node: installed",
    ] {
        let seen = vm
            .wait_for_unless(step, Some(NODE_FAIL), NODE_TIMEOUT)
            .map_err(|e| format!("UEFI node: {e}"))?;
        eprintln!(
            "[{scenario}] uefi node +{:.1}s {}",
            seen.elapsed.as_secs_f64(),
            seen.line.trim()
        );
    }
    vm.wait_exit(Duration::from_secs(30))
        .ok_or("the UEFI node did not power off after `installed`")?;
    let (code, body) = kindling_lab::demo::wait_node_phoned_home(&lab, NODE_PROD_MAC, settle)
        .map_err(|e| e.to_string())?;
    if code != 200 || !kindling_lab::demo::node_phoned_home(&body, NODE_PROD_MAC) {
        return Err(format!(
            "GET {url}: UEFI node {NODE_PROD_MAC} not recorded as installed: {body}"
        ));
    }

    // A UEFI HTTP boot node (OVMF with its PXE off): DHCP vendor class
    // HTTPClient, snponly.efi over HTTP, no TFTP. Its MAC is not in the site, so
    // it gets pxe.default_profile. OVMF announcing PXE, or giving up to its
    // shell, fails at once.
    let started = std::time::Instant::now();
    let http = NodeSpec::pxe("node-uefi-http", NODE_HTTP_MAC, NodeFirmware::UefiHttp);
    let node = lab.boot_node(&http).map_err(|e| e.to_string())?;
    let vm = lab.vm(node);
    let fail = format!("{NODE_FAIL}|Start PXE|EFI Internal Shell");
    for step in [
        r"Start HTTP Boot over IPv4",
        r"kindling-node: lease 192\.168\.100\.",
        r"kindling-node: installed",
    ] {
        let seen = vm
            .wait_for_unless(step, Some(&fail), NODE_TIMEOUT)
            .map_err(|e| format!("UEFI HTTP boot node: {e}"))?;
        eprintln!(
            "[{scenario}] uefi http node +{:.1}s {}",
            seen.elapsed.as_secs_f64(),
            seen.line.trim()
        );
    }
    vm.wait_exit(Duration::from_secs(30))
        .ok_or("the UEFI HTTP boot node did not power off after `installed`")?;
    let (code, body) = kindling_lab::demo::wait_node_phoned_home(&lab, NODE_HTTP_MAC, settle)
        .map_err(|e| e.to_string())?;
    if code != 200 || !kindling_lab::demo::node_phoned_home(&body, NODE_HTTP_MAC) {
        return Err(format!(
            "GET {url}: UEFI HTTP boot node {NODE_HTTP_MAC} not recorded as installed: {body}"
        ));
    }
    eprintln!(
        "[{scenario}] uefi http node: {:.1}s from start to installed in the inventory",
        started.elapsed().as_secs_f64()
    );
    lab.succeeded();
    Ok(())
}
