//! Power cuts during an update (docs/updates.md): the appliance's QEMU is
//! killed (SIGKILL, by the PID the lab started it with) at five points of
//! a push from v1 to v2, and each time the same disk boots again, as the
//! machine would once the power is back:
//!
//! - (a) while the agent verifies the upload in the spool (the ESP not
//!   touched yet);
//! - (b) while the image streams into the ESP's `kindling-incoming.partial`;
//! - (c) right after it was armed (`kindling-V2+3.efi`), before the reboot;
//! - (d) in v2's first boot, right after the data partition was mounted,
//!   long before its health gate;
//! - (e) right after v2's agent blessed it and raised the floor.
//!
//! After each cut the test reads the ESP of the killed VM's disk (mtools):
//! v1's entry is there, every entry is whole (byte for byte the image),
//! and the state file's floor is what the agent had said. The upload stays in the spool on the data partition until it is
//! armed, so after (a) and (b) v1 boots and its agent starts the same
//! update over by itself; after (c) and (d) systemd-boot tries v2 again.
//! Node assignments the API acknowledged before a cut are all there at
//! the end, and a new push afterwards goes through as usual.

use crate::update_push::{
    boot_again, build_bundle, get, good_update, next_version, running_version, spawn_push,
    wait_blessed,
};
use crate::{APPLIANCE_FAIL, APPLIANCE_READY_TIMEOUT, READY};
use kindling_e2e::{lab_for, lab_image, skip_unless_root};
use kindling_lab::api::LabOperator;
use kindling_lab::{ApplianceBoot, ApplianceSpec, DiskBus, Lab, VmId};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// From a boot's start (or the push) to the console line a cut waits for:
/// a boot to ready under TCG, the gate and the staging, with room.
const CUT_TIMEOUT: Duration = Duration::from_secs(360);

/// One power cut: where, and the console line it follows at once.
struct Cut {
    label: &'static str,
    what: &'static str,
    line: &'static str,
}

const CUTS: [Cut; 5] = [
    Cut {
        label: "a",
        what: "verifying the upload in the spool",
        line: r"update: push \S+: Staging: verifying",
    },
    Cut {
        label: "b",
        what: "streaming the image into kindling-incoming.partial",
        line: r"update: \S+ verified; writing its image to",
    },
    Cut {
        label: "c",
        what: "armed, before the reboot",
        line: r"update: push \S+: Armed: ",
    },
    Cut {
        label: "d",
        what: "v2's first boot, the data partition just mounted",
        line: r"kindling: state: \w+ in \d+ ms",
    },
    Cut {
        label: "e",
        what: "v2 blessed and the floor raised",
        line: r"update: Blessed: ",
    },
];

#[test]
#[ignore = "QEMU lab: run by tests/e2e"]
fn update_survives_power_loss() -> Result<(), String> {
    let scenario = "update_power_loss";
    if skip_unless_root(scenario) {
        return Ok(());
    }
    let image = lab_image()?;
    let efi_path = image.join("kindling.efi");
    let efi = std::fs::read(&efi_path).map_err(|e| format!("{}: {e}", efi_path.display()))?;
    let began = Instant::now();
    let mut lab = lab_for(scenario)?;
    let spec = ApplianceSpec::new(ApplianceBoot::Disk {
        image: image.join("kindling.img"),
        bus: DiskBus::Virtio,
    });
    let app = lab.boot_appliance(&spec).map_err(|e| e.to_string())?;
    wait_ready(&mut lab, app, "the first boot")?;
    wait_blessed(&lab, Instant::now(), "v1")?;
    let v1 = running_version(&lab)?;
    let v2 = format!("{v1}.1");
    let mut markers = vec![assign(&lab, 0)?];
    let (bundle, size) = build_bundle(&lab, image, image, &v2, &v1)?;
    eprintln!("[{scenario}] pushing {v1} -> {v2} ({size} bytes), to be cut five times");
    // Its upload is all the cuts need; the CLI is stopped after (a).
    let mut cli = spawn_push(&lab, &bundle, Duration::from_secs(60))?;
    let v1_entry = format!("kindling-{v1}.efi");
    let esp = Esp {
        efi: &efi,
        v1: &v1,
        v2: &v2,
    };

    // (a): v1 is verifying the upload; nothing was written to the ESP.
    let disk = cut(&mut lab, app, &CUTS[0], scenario)?;
    let _ = cli.kill();
    let _ = cli.wait();
    let seen = esp.check(&disk, Some(&v1))?;
    esp.expect_no_v2(&seen, &CUTS[0])?;

    // (b) and (c): v1 boots again and its agent takes the upload again.
    for (n, c) in CUTS[1..3].iter().enumerate() {
        let app = boot_again(&mut lab, &format!("cut-{}", CUTS[n].label))?;
        wait_ready(
            &mut lab,
            app,
            &format!("the boot after cut ({})", CUTS[n].label),
        )?;
        let observer = observe(&lab, markers.len())?;
        let disk = cut(&mut lab, app, c, scenario)?;
        let observed = observer.join().unwrap_or_default();
        let log = console(&lab)?;
        if !log.contains(&format!("update: Blessed: healthy; boots {v1_entry}")) {
            return Err(format!(
                "before cut ({}): v1's agent did not bless {v1_entry}",
                c.label
            ));
        }
        if let Some(update) = &observed.update {
            if update["version"] != v1.as_str()
                || update["entry"] != v1_entry.as_str()
                || update["floor"] != v1.as_str()
            {
                return Err(format!(
                    "before cut ({}): expected {v1_entry} at version and floor {v1}: {update}",
                    c.label
                ));
            }
        }
        eprintln!(
            "[{scenario}] before cut ({}): v1 booted {v1_entry} at floor {v1} ({}), took the spooled upload again; {}",
            c.label,
            if observed.update.is_some() {
                "status API and console"
            } else {
                "console; the status API was not read in time"
            },
            observed.acknowledged.as_deref().map_or(
                format!(
                    "no assignment acknowledged before the cut ({})",
                    observed.refused.as_deref().unwrap_or("no answer")
                ),
                |mac| format!("assignment {mac} acknowledged")
            )
        );
        markers.extend(observed.acknowledged);
        let seen = esp.check(&disk, Some(&v1))?;
        if c.label == "b" {
            esp.expect_no_v2(&seen, c)?;
        } else if !seen.entries.contains(&format!("kindling-{v2}+3.efi")) {
            return Err(format!(
                "after cut (c): v2 is not armed with 3 tries: {:?}",
                seen.entries
            ));
        }
    }

    // (d): v2's first try, cut early in its boot.
    let app = boot_again(&mut lab, "cut-c")?;
    let disk = cut(&mut lab, app, &CUTS[3], scenario)?;
    let seen = esp.check(&disk, Some(&v1))?;
    if !seen
        .entries
        .iter()
        .any(|e| e.starts_with(&format!("kindling-{v2}+")))
    {
        return Err(format!(
            "after cut (d): v2 is no longer on trial: {:?}",
            seen.entries
        ));
    }

    // (e): v2's second try passes its gate; cut right after the blessing.
    let app = boot_again(&mut lab, "cut-d")?;
    let disk = cut(&mut lab, app, &CUTS[4], scenario)?;
    let seen = esp.check(&disk, Some(&v2))?;
    if !seen.entries.contains(&format!("kindling-{v2}.efi")) {
        return Err(format!(
            "after cut (e): v2 is not blessed on the ESP: {:?}",
            seen.entries
        ));
    }

    // Power back once more: v2, blessed, at its floor, nothing lost.
    let app = boot_again(&mut lab, "cut-e")?;
    let back = Instant::now();
    wait_ready(&mut lab, app, "the boot after cut (e)")?;
    let update = wait_blessed(&lab, back, "v2 after the cuts")?;
    let v2_entry = format!("kindling-{v2}.efi");
    if update["version"] != v2.as_str()
        || update["entry"] != v2_entry.as_str()
        || update["floor"] != v2.as_str()
    {
        return Err(format!(
            "after the cuts: expected {v2_entry} at version and floor {v2}: {update}"
        ));
    }
    for mac in &markers {
        if assignment(&lab, mac)? != "prod" {
            return Err(format!(
                "the assignment of {mac}, acknowledged before a cut, is lost"
            ));
        }
    }
    eprintln!(
        "[{scenario}] after the five cuts: {v2_entry} at floor {v2}; {} node assignments acknowledged before cuts all there; last result: {}",
        markers.len(),
        update["last_result"]
    );

    // A cut right after `Armed` can come before the agent removed the
    // bundle from the spool: v2's agent then finds its own bundle there,
    // refuses it (not newer) and, until it did, the API answers a push with
    // 409. Seen in the lab; the new push waits for that to settle.
    let leftover = settle_spool(&lab)?;
    eprintln!("[{scenario}] the spool after the cuts: {leftover}");

    // A new push afterwards goes through as any other.
    let v3 = next_version(&v2)?;
    good_update(&mut lab, app, image, scenario, &v3)?;
    eprintln!(
        "[{scenario}] power-loss scenario: {:.0} s in all",
        began.elapsed().as_secs_f64()
    );
    lab.succeeded();
    Ok(())
}

/// Waits (at most 10 s) for the agent to have dealt with a bundle left in
/// the spool; says what it found.
fn settle_spool(lab: &Lab) -> Result<String, String> {
    let since = Instant::now();
    loop {
        let push = get(lab, "/v1/update")?["agent"]["push"].clone();
        match push["state"].as_str() {
            Some("refused") => {
                return Ok(format!(
                    "a bundle left there by cut (c) was refused: {}",
                    push["detail"]
                ))
            }
            Some("staging") => {}
            Some(other) => return Ok(format!("a push is {other}: {push}")),
            None if since.elapsed() > Duration::from_secs(5) => {
                return Ok("empty (the agent had removed the bundle before cut (c))".into())
            }
            None => {}
        }
        if since.elapsed() > Duration::from_secs(10) {
            return Err(format!("the agent's push did not settle: {push}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn wait_ready(lab: &mut Lab, app: VmId, what: &str) -> Result<(), String> {
    lab.vm(app)
        .wait_for_unless(READY, Some(APPLIANCE_FAIL), APPLIANCE_READY_TIMEOUT)
        .map(|_| ())
        .map_err(|e| format!("{what}: {e}"))
}

/// Waits for `cut`'s console line and pulls the plug at once; returns the
/// disk as the cut left it.
fn cut(lab: &mut Lab, app: VmId, cut: &Cut, scenario: &str) -> Result<std::path::PathBuf, String> {
    let vm = lab.vm(app);
    let seen = vm
        .wait_for(cut.line, CUT_TIMEOUT)
        .map_err(|e| format!("cut ({}) {}: {e}", cut.label, cut.what))?;
    let read = Instant::now();
    vm.power_cut();
    eprintln!(
        "[{scenario}] cut ({}) {}: QEMU killed {:.1}s into its boot, {:.2}s after reading `{}`",
        cut.label,
        cut.what,
        vm.uptime().as_secs_f64(),
        read.elapsed().as_secs_f64(),
        seen.line.trim()
    );
    Ok(lab.run_dir().join("appliance-disk.img"))
}

/// The console of the boot that a cut just ended.
fn console(lab: &Lab) -> Result<String, String> {
    let path = lab.run_dir().join("appliance.serial.log");
    std::fs::read(&path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The lab's marker nodes: one runtime assignment each, written through
/// the API (to the data partition) between cuts.
fn marker_mac(n: usize) -> String {
    format!("52:54:00:6b:01:{n:02x}")
}

/// Assigns marker `n` the prod profile; returns its MAC.
fn assign(lab: &Lab, n: usize) -> Result<String, String> {
    let mac = marker_mac(n);
    let path = format!("/v1/nodes/{mac}/profile");
    let (code, body) = lab
        .api_from_lan("PUT", &path, Some(r#"{"profile": "prod"}"#))
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("PUT {path}: {code}: {body}"));
    }
    Ok(mac)
}

/// A node's runtime assignment's profile ("" when it has none).
fn assignment(lab: &Lab, mac: &str) -> Result<String, String> {
    let node = get(lab, &format!("/v1/nodes/{mac}"))?;
    Ok(node["assignment"]["profile"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// What a boot's observer saw before the cut ended it.
#[derive(Default)]
struct Observed {
    /// The update agent's status, once it said which slot booted.
    update: Option<serde_json::Value>,
    /// A marker assignment the API acknowledged.
    acknowledged: Option<String>,
    /// The API's answer when it did not.
    refused: Option<String>,
}

/// While the main thread waits to cut, a thread writes marker `n` and
/// asks the status API which slot booted; whatever it got before the cut.
fn observe(lab: &Lab, n: usize) -> Result<std::thread::JoinHandle<Observed>, String> {
    // Short: a cut leaves a request hanging with no one to reset it.
    let client = lab
        .api_client_from_lan(LabOperator::Admin)
        .map_err(|e| e.to_string())?
        .with_timeout(Duration::from_secs(5));
    Ok(std::thread::spawn(move || {
        let mut observed = Observed::default();
        let call = |method, path: &str, body| kindling_lab::api::call(&client, method, path, body);
        // The write first: the cut comes a few seconds after ready.
        let mac = marker_mac(n);
        match call(
            "PUT",
            &format!("/v1/nodes/{mac}/profile"),
            Some(r#"{"profile": "prod"}"#),
        ) {
            Ok((200, _)) => observed.acknowledged = Some(mac),
            Ok((code, body)) => observed.refused = Some(format!("{code}: {body}")),
            Err(_) => return observed,
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while observed.update.is_none() && Instant::now() < deadline {
            match call("GET", "/v1/status", None) {
                Ok((200, body)) => {
                    let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let update = &status["services"]["update"];
                    if update["version"].is_string() && update["floor"].is_string() {
                        observed.update = Some(update.clone());
                    }
                }
                Ok(_) => {}
                // The cut: the appliance is gone.
                Err(_) => return observed,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        observed
    }))
}

/// What the tests expect of the ESP of a killed VM.
struct Esp<'a> {
    /// The image every bundle here carries.
    efi: &'a [u8],
    v1: &'a str,
    v2: &'a str,
}

/// The ESP as a cut left it.
struct Seen {
    entries: Vec<String>,
    floor: Option<String>,
}

impl Esp<'_> {
    /// Reads `disk`'s ESP: v1's entry is there, every entry is whole,
    /// and the state file's floor is `floor`.
    fn check(&self, disk: &Path, floor: Option<&str>) -> Result<Seen, String> {
        let esp = EspImage::open(disk)?;
        let entries = esp.entries()?;
        if !entries.iter().any(|e| version_of(e) == Some(self.v1)) {
            return Err(format!("v1's entry is gone from the ESP: {entries:?}"));
        }
        // Both versions carry the lab image's kindling.efi.
        for entry in entries
            .iter()
            .filter(|e| version_of(e) == Some(self.v1) || version_of(e) == Some(self.v2))
        {
            let bytes = esp.read(&format!("EFI/Linux/{entry}"))?;
            if bytes != self.efi {
                return Err(format!(
                    "{entry} on the ESP is not the whole image: {} bytes of {}",
                    bytes.len(),
                    self.efi.len()
                ));
            }
        }
        let state: serde_json::Value = esp
            .read("kindling-update.json")
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let seen = Seen {
            entries,
            floor: state["floor"].as_str().map(str::to_string),
        };
        if seen.floor.as_deref() != floor {
            return Err(format!(
                "the ESP's state file has floor {:?}, not {floor:?}: {state}",
                seen.floor
            ));
        }
        eprintln!(
            "    ESP after the cut: {:?}, floor {}, {}",
            seen.entries,
            seen.floor.as_deref().unwrap_or("none"),
            esp.free()
        );
        Ok(seen)
    }

    fn expect_no_v2(&self, seen: &Seen, cut: &Cut) -> Result<(), String> {
        if seen.entries.iter().any(|e| version_of(e) == Some(self.v2)) {
            return Err(format!(
                "after cut ({}): an entry of {} is on the ESP before it was armed: {:?}",
                cut.label, self.v2, seen.entries
            ));
        }
        Ok(())
    }
}

/// The version of a boot entry's name (`kindling-V[+L[-D]].efi`).
fn version_of(entry: &str) -> Option<&str> {
    let stem = entry.strip_prefix("kindling-")?.strip_suffix(".efi")?;
    Some(stem.split_once('+').map_or(stem, |(v, _)| v))
}

/// The ESP inside a raw GPT disk image, read with mtools.
struct EspImage {
    /// `DISK@@OFFSET`, mtools' way to name a partition of an image.
    image: String,
}

/// The ESP's partition type GUID as GPT stores it (mixed endian).
const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
];
const SECTOR: u64 = 512;

impl EspImage {
    fn open(disk: &Path) -> Result<Self, String> {
        use std::io::Read;
        let mut head = vec![0u8; 34 * SECTOR as usize];
        std::fs::File::open(disk)
            .and_then(|mut f| f.read_exact(&mut head))
            .map_err(|e| format!("{}: {e}", disk.display()))?;
        let gpt = &head[SECTOR as usize..2 * SECTOR as usize];
        if &gpt[..8] != b"EFI PART" {
            return Err(format!("{}: no GPT header", disk.display()));
        }
        let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let (count, size) = (word(&gpt[80..84]), word(&gpt[84..88]));
        let table = 2 * SECTOR as usize;
        let first_lba = (0..count.min(128))
            .map(|i| &head[table + i * size..table + (i + 1) * size])
            .find(|e| e[..16] == ESP_TYPE)
            .map(|e| u64::from_le_bytes(e[32..40].try_into().unwrap_or_default()))
            .ok_or_else(|| format!("{}: no ESP in the GPT", disk.display()))?;
        Ok(Self {
            image: format!("{}@@{}", disk.display(), first_lba * SECTOR),
        })
    }

    fn mtools(&self, tool: &str, args: &[&str]) -> Result<Vec<u8>, String> {
        let out = Command::new(tool)
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&self.image)
            .args(args)
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{tool} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(out.stdout)
    }

    /// The names in `EFI/Linux`.
    fn entries(&self) -> Result<Vec<String>, String> {
        let out = self.mtools("mdir", &["-b", "::/EFI/Linux"])?;
        let mut names: Vec<String> = String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.trim().rsplit('/').next())
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        names.sort();
        Ok(names)
    }

    /// mdir's `N bytes free` (clusters a cut left allocated to no file
    /// would show here as a shrinking number).
    fn free(&self) -> String {
        self.mtools("mdir", &["::/"])
            .map(|out| {
                String::from_utf8_lossy(&out)
                    .lines()
                    .find(|l| l.contains("bytes free"))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .unwrap_or_default()
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.mtools("mtype", &[&format!("::/{path}")])
    }
}
