//! The lab node payload on its own: a node VM boots the payload directly
//! (virtio-net, then e1000) against `tests/pxe-double` (a stand-in for the
//! appliance's PXE HTTP service) and dnsmasq as the LAN's DHCP server. Proves
//! the payload's drivers, DHCP, NoCloud fetch and phone-home work, so a failure
//! in the full PXE scenario points at the appliance, not the payload.

use crate::{NODE_FAIL, NODE_TIMEOUT};
use kindling_e2e::{lab_for, node_payload, repo_root, skip_unless_root};
use kindling_lab::vm::{NODE_DEV_MAC, NODE_PROD_MAC};
use kindling_lab::{NicModel, NodeFirmware, NodeSpec};
use std::time::Duration;

#[test]
#[ignore = "QEMU lab: run by tests/e2e"]
fn node_payload_fetches_nocloud_and_phones_home() -> Result<(), String> {
    let scenario = "node_payload";
    if skip_unless_root(scenario) {
        return Ok(());
    }
    let payload = node_payload()?;
    let mut lab = lab_for(scenario)?;
    let run = lab.run_dir().to_path_buf();
    lab.add_lan_address("192.168.100.1/24")
        .map_err(|e| e.to_string())?;
    let leases = run.join("lan-dnsmasq.leases");
    lab.spawn_in_lan(
        "lan-dnsmasq",
        "dnsmasq",
        &[
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--interface=br-lan",
            "--bind-interfaces",
            "--port=0",
            "--no-ping",
            "--user=root",
            "--pid-file=",
            "--dhcp-authoritative",
            "--dhcp-range=192.168.100.100,192.168.100.200,255.255.255.0,1h",
            "--dhcp-option=3,192.168.100.1",
            &format!("--dhcp-leasefile={}", leases.display()),
            "--log-dhcp",
        ],
        &run.join("lan-dnsmasq.log"),
    )
    .map_err(|e| e.to_string())?;
    let events = run.join("events.jsonl");
    let double = repo_root().join("tests/pxe-double/server.py");
    lab.spawn_in_lan(
        "pxe-double",
        "python3",
        &[
            "-u",
            &double.display().to_string(),
            "192.168.100.1",
            "80",
            &events.display().to_string(),
        ],
        &run.join("pxe-double.log"),
    )
    .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));

    for (name, mac, model) in [
        ("node-virtio", NODE_DEV_MAC, NicModel::Virtio),
        ("node-e1000", NODE_PROD_MAC, NicModel::E1000),
    ] {
        let append = format!(
            "console=ttyS0 panic=-1 kindling.url=http://192.168.100.1/ kindling.mac={mac} kindling.nat_probe=off"
        );
        let mut spec = NodeSpec::pxe(name, mac, NodeFirmware::Bios);
        spec.nic_model = model;
        spec.direct = Some((payload.kernel.clone(), payload.initrd.clone(), append));
        let id = lab.boot_node(&spec).map_err(|e| e.to_string())?;
        let vm = lab.vm(id);
        for step in [
            r"kindling-node: booted",
            r"kindling-node: lease 192\.168\.100\.",
            r"kindling-node: nocloud ok",
            r"kindling-node: installed",
        ] {
            let seen = vm
                .wait_for_unless(step, Some(NODE_FAIL), NODE_TIMEOUT)
                .map_err(|e| format!("{name}: {e}"))?;
            eprintln!(
                "[{scenario}] {name} +{:.1}s {}",
                seen.elapsed.as_secs_f64(),
                seen.line.trim()
            );
        }
        vm.wait_exit(Duration::from_secs(30))
            .ok_or(format!("{name} did not power off after `installed`"))?;

        let log = std::fs::read_to_string(&events)
            .map_err(|e| format!("reading {}: {e}", events.display()))?;
        let got: Vec<String> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["mac"] == mac)
            .filter_map(|v| v["event"].as_str().map(str::to_string))
            .collect();
        if got != ["booted", "nocloud", "installed"] {
            return Err(format!(
                "{name}: phone-home events {got:?}, expected booted, nocloud, installed"
            ));
        }
    }
    lab.succeeded();
    Ok(())
}
