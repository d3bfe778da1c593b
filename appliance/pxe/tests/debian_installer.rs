//! Debian's real netboot installer (Debian 12, package
//! `debian-installer-12-netboot-amd64`) against the PXE service and the
//! preseed it renders. Opt-in: KINDLING_TEST_DI=1, root, and the package.
//!
//! - `real_installer_…`: a SeaBIOS+iPXE node VM (TCG, 1 GiB) in a namespace
//!   of its own PXE-boots the installer's kernel and 40 MB initrd from the
//!   service, d-i takes a DHCP lease from it, fetches `/preseed/<mac>.cfg`
//!   and goes through language, keyboard, hostname, domain and mirror
//!   without a question until the mirror check, which fails: the lab has no
//!   Debian mirror (that is where a real install would download from).
//!   d-i's own account comes by its remote syslog (`log_host=`) with
//!   `DEBCONF_DEBUG=developer`: every question it raised, and whether it
//!   was shown.
//! - `late_command_…`: what the VM cannot reach without a mirror: the
//!   preseed's late command, run as d-i runs it, by the installer's own
//!   programs from the same initrd (chroot): d-i's preseed fetch and
//!   debconf-set-selections, its debconf, `preseed_command`, busybox sh and
//!   GNU wget; `/target` is a directory and `in-target` a recorder.
//!
//! Nothing leaves the test's namespaces; the VM is killed on any failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use kindling_pxe::PxeSettings;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Not a lab `[[nodes]]` MAC: the node gets the default profile and the
/// hostname derived from its MAC, so only kindling's preseed names it.
const MAC: &str = "52:54:00:6b:00:30";
const HOSTNAME: &str = "node-6b0030";
const DOMAIN: &str = "lab.kindling.internal";
const DI_IMAGES: &str = "/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64";
const KERNEL: &str = "debian-12-linux";
const INITRD: &str = "debian-12-initrd.gz";
/// Below ~780 MiB (MemTotal 737 MB) d-i enters low memory mode and stops
/// on a critical "Low memory" note before any preseed can answer it:
/// measured at 512 and 768 MiB.
const MEMORY_MIB: u32 = 1024;
/// Measured ~80 s to the mirror step under TCG; the limit leaves room for a
/// slow CI host.
const LIMIT: Duration = Duration::from_secs(240);

/// Questions kindling's preseed answers before the mirror step, and that
/// d-i reaches on the way there (`INPUT <priority> <name>` in its debconf
/// trace). Each must come up and be skipped.
const PRESEEDED_ON_THE_WAY: [&str; 8] = [
    "localechooser/languagelist",
    "keyboard-configuration/xkb-keymap",
    "netcfg/get_hostname",
    "netcfg/get_domain",
    "mirror/http/countries",
    "mirror/http/hostname",
    "mirror/http/directory",
    "mirror/http/proxy",
];

/// The bottom line of every newt dialog that waits for the user.
const NEWT_HELP: &str = "<Tab> moves; <Space> selects; <Enter> activates buttons";

/// Skips (false) unless KINDLING_TEST_DI=1 and the installer package is there.
fn installer_tests_wanted() -> bool {
    if std::env::var_os("KINDLING_TEST_DI").is_none() {
        eprintln!(
            "skipping: set KINDLING_TEST_DI=1 to run Debian's real installer against the preseed"
        );
        return false;
    }
    if !Path::new(DI_IMAGES).join("initrd.gz").is_file() {
        eprintln!(
            "skipping: Debian's netboot installer is not installed \
             (apt-get install debian-installer-12-netboot-amd64, 133 MB)"
        );
        return false;
    }
    true
}

/// The lab site plus the shipped example profile `debian` (kind
/// `debian-installer`) as the default profile, its kernel and initrd copied
/// in as artifacts. `extra_cmdline` is appended to the profile's own.
fn installer_site(dirs: &Dirs, extra_cmdline: &str) -> PxeSettings {
    for (from, to) in [("linux", KERNEL), ("initrd.gz", INITRD)] {
        std::fs::copy(
            Path::new(DI_IMAGES).join(from),
            dirs.path("artifacts").join(to),
        )
        .unwrap();
    }
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../overlays/production-example/profiles/debian.toml"),
    )
    .unwrap();
    let mut profile: kindling_site::Profile = toml::from_str(&text).unwrap();
    match &mut profile.boot {
        kindling_site::BootPayload::DebianInstaller {
            kernel,
            initrd,
            cmdline,
        } => {
            assert_eq!((kernel.as_str(), initrd.as_str()), (KERNEL, INITRD));
            cmdline.push_str(extra_cmdline);
        }
        other => panic!("the example profile debian boots {other:?}"),
    }
    let mut site = lab_site();
    let name: kindling_site::ProfileName = "debian".parse().unwrap();
    site.profiles.insert(name.clone(), profile);
    site.pxe.default_profile = Some(name);
    let boot_dir = dirs.path("boot");
    std::fs::copy(
        "/usr/lib/ipxe/undionly.kpxe",
        boot_dir.join("undionly.kpxe"),
    )
    .unwrap();
    PxeSettings::from_site(&site, dirs.paths(&boot_dir)).unwrap()
}

/// d-i's syslog lines, as they arrive: from its busybox syslogd over UDP
/// (kernel argument `log_host=`, once the network is up), or straight from
/// its programs to a `/dev/log` of the test's.
struct SyslogSink {
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SyslogSink {
    /// UDP 192.168.100.1:514 in namespace `ns`.
    fn udp(ns: &str) -> Self {
        let socket = in_netns(ns, || UdpSocket::bind("192.168.100.1:514").unwrap());
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Self::collect(move |buf| socket.recv(buf).ok())
    }

    /// A Unix datagram socket at `path` (syslog(3) writes to `/dev/log`).
    fn unix(path: &Path) -> Self {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Self::collect(move |buf| socket.recv(buf).ok())
    }

    fn collect(mut recv: impl FnMut(&mut [u8]) -> Option<usize> + Send + 'static) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, stopped) = (lines.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !stopped.load(Ordering::SeqCst) {
                if let Some(n) = recv(&mut buf) {
                    let line = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
                    sink.lock().unwrap().push(line);
                }
            }
        });
        Self {
            lines,
            stop,
            thread: Some(thread),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for SyslogSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One `INPUT` in cdebconf's protocol trace and its answer.
#[derive(Debug, Clone, PartialEq)]
struct Input {
    priority: String,
    question: String,
    /// `0 question will be asked` (shown) rather than `30 question skipped`.
    shown: bool,
}

/// The INPUT commands in a `DEBCONF_DEBUG=developer` trace (`debconf: -->
/// INPUT critical mirror/bad` then `debconf: <-- 0 question will be asked`).
fn debconf_inputs(lines: &[String]) -> Vec<Input> {
    let mut inputs = Vec::new();
    let mut pending: Option<(String, String)> = None;
    for line in lines {
        if let Some(rest) = line.split_once("debconf: --> INPUT ").map(|(_, r)| r) {
            let mut words = rest.split_whitespace();
            if let (Some(p), Some(q)) = (words.next(), words.next()) {
                pending = Some((p.to_string(), q.to_string()));
            }
        } else if let Some(answer) = line.split_once("debconf: <-- ").map(|(_, r)| r) {
            if let Some((priority, question)) = pending.take() {
                inputs.push(Input {
                    priority,
                    question,
                    shown: answer.starts_with("0 "),
                });
            }
        }
    }
    inputs
}

/// The value d-i read back for `question` (`--> GET q` then `<-- 0 value`),
/// the last time it asked.
fn debconf_value(lines: &[String], question: &str) -> Option<String> {
    let get = format!("debconf: --> GET {question}");
    let mut value = None;
    let mut iter = lines.iter();
    while let Some(line) = iter.next() {
        if line.ends_with(&get) {
            if let Some(answer) = iter.next().and_then(|l| l.split_once("debconf: <-- 0")) {
                value = Some(answer.1.trim().to_string());
            }
        }
    }
    value
}

/// The serial log without terminal escape sequences (d-i's newt screens
/// run inside GNU screen on the serial line).
fn plain(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                for c in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                for c in chars.by_ref() {
                    if c == '\x07' {
                        break;
                    }
                }
            }
            Some('(' | ')' | '*' | '+') => {
                chars.next();
            }
            _ => {}
        }
    }
    out
}

/// The last `n` characters of `s`.
fn last_chars(s: &str, n: usize) -> &str {
    let start = s.char_indices().rev().nth(n).map_or(0, |(i, _)| i);
    &s[start..]
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A raw HTTP/1.1 request to the service at 192.168.100.1:80 in `ns`:
/// status, headers (lower-case names) and body (empty for HEAD).
fn http(ns: &str, head: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let request = format!("{head}\r\nHost: 192.168.100.1\r\nConnection: close\r\n\r\n");
    let is_head = head.starts_with("HEAD ");
    in_netns(ns, move || {
        let mut stream = TcpStream::connect("192.168.100.1:80").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let mut body = Vec::new();
        if !is_head {
            reader.read_to_end(&mut body).unwrap();
        }
        (status, headers, body)
    })
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The 40 MB initrd as a client that checks lengths sees it: HEAD gives its
/// exact Content-Length, and a Range request for its last 64 KiB gets 206
/// with a Content-Range and exactly those bytes.
fn assert_initrd_length_and_range(ns: &str, initrd: &Path) {
    let bytes = std::fs::read(initrd).unwrap();
    let len = bytes.len() as u64;
    let (status, headers, _) = http(ns, &format!("HEAD /artifacts/{INITRD} HTTP/1.1"));
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-length"),
        Some(len.to_string().as_str()),
        "{headers:?}"
    );
    assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));
    let start = len - 65536;
    let (status, headers, body) = http(
        ns,
        &format!("GET /artifacts/{INITRD} HTTP/1.1\r\nRange: bytes={start}-"),
    );
    assert_eq!(status, 206, "{headers:?}");
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes {start}-{}/{len}", len - 1).as_str())
    );
    assert_eq!(
        header(&headers, "content-length"),
        Some("65536"),
        "{headers:?}"
    );
    assert!(body == bytes[start as usize..], "range body differs");
}

#[test]
fn real_installer_takes_the_preseed_and_stops_only_at_the_missing_mirror() {
    require_root!();
    if !installer_tests_wanted() || !qemu_available() {
        return;
    }
    let dirs = Dirs::new();
    let lan = BridgeLan::new();
    // d-i's resolver asks 192.168.100.1 (the lab's DNS forwarder address,
    // nothing listening here) for the mirror: with ICMP port-unreachable
    // rate-limited, every lookup waits 5 s and the mirror check tries 5
    // suites. Unlimited, each fails at once.
    sh(&lan.ns, "sysctl -qw net.ipv4.icmp_ratelimit=0");
    let settings = installer_site(&dirs, " log_host=192.168.100.1 DEBCONF_DEBUG=developer");
    start_service(&lan.ns, &lan.bridge, settings);
    let syslog = SyslogSink::udp(&lan.ns);

    let _lock = kindling_lab::qemu_lock::QemuLock::acquire().unwrap();
    let serial = dirs.path("serial.log");
    let status_path = dirs.path("status/pxe.json");
    let started = Instant::now();
    let mut cmd = node_vm_command(&lan, MEMORY_MIB, &serial);
    // Two NICs, as servers have: the first (lower PCI slot, so d-i lists
    // it first) has no cable and no boot ROM; the node PXE-boots from the
    // second. d-i must configure the one it booted from, unasked.
    cmd.args(["-device", "e1000,mac=52:54:00:6b:00:3f,romfile=,addr=0x3"])
        .args(["-device", &format!("e1000,netdev=n0,mac={MAC},addr=0x4")]);
    let mut vm = KillOnDrop(cmd.spawn().unwrap());

    let preseed_url = format!("http://192.168.100.1/preseed/{MAC}.cfg");
    let counter = |st: &serde_json::Value, name: &str| st["counters"][name].as_u64().unwrap_or(0);
    let mut seen: Vec<(&str, Duration)> = Vec::new();
    let mut dialog_since: Option<Instant> = None;
    let (lines, screen) = loop {
        let st = read_status(&status_path);
        let lines = syslog.lines();
        let screen = plain(&String::from_utf8_lossy(
            &std::fs::read(&serial).unwrap_or_default(),
        ));
        let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
        let marks = [
            ("iPXE dhcp", counter(&st, "dhcp_acks") >= 1),
            ("iPXE script", counter(&st, "http_scripts") >= 1),
            ("initrd requested", counter(&st, "artifacts") >= 2),
            ("kernel started", screen.contains("Linux version")),
            ("d-i dhcp", counter(&st, "dhcp_acks") >= 2),
            ("preseed fetched", counter(&st, "http_preseeds") >= 1),
            ("preseed loaded", has("successfully loaded preseed file")),
            ("mirror check", has("choose-mirror") && has("command: wget")),
            ("Bad archive mirror", screen.contains("Bad archive mirror")),
        ];
        for (label, reached) in marks {
            if reached && !seen.iter().any(|(l, _)| *l == label) {
                seen.push((label, started.elapsed()));
            }
        }
        let inputs = debconf_inputs(&lines);
        let shown: Vec<&Input> = inputs.iter().filter(|i| i.shown).collect();
        if let Some(other) = shown.iter().find(|i| i.question != "mirror/bad") {
            panic!(
                "d-i asked {other:?} (the preseed should have answered it):\n{}\n--- screen:\n{}",
                tail(&lines, 80),
                last_chars(&screen, 4000)
            );
        }
        if !shown.is_empty() && screen.contains("Bad archive mirror") {
            break (lines, screen);
        }
        // A dialog waiting for a key shows newt's help line. Before the
        // network is up d-i's syslog cannot say which (e.g. "Low memory").
        if screen.contains(NEWT_HELP) && !screen.contains("Bad archive mirror") {
            let waiting = *dialog_since.get_or_insert_with(Instant::now);
            if waiting.elapsed() > Duration::from_secs(5) {
                panic!(
                    "d-i waits for an answer:\n{}\n--- screen:\n{}",
                    tail(&lines, 80),
                    last_chars(&screen, 2000)
                );
            }
        }
        if let Ok(Some(exit)) = vm.0.try_wait() {
            panic!(
                "VM exited ({exit}):\n{}\n--- screen:\n{screen}",
                tail(&lines, 80)
            );
        }
        if started.elapsed() > LIMIT {
            panic!(
                "d-i did not reach the mirror step within {LIMIT:?}: {st}\n{}\n--- screen:\n{}",
                tail(&lines, 80),
                last_chars(&screen, 4000)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    drop(vm);
    let st = read_status(&status_path);

    eprintln!("Debian 12 installer, SeaBIOS+iPXE node {MAC}, {MEMORY_MIB} MiB, TCG:");
    for (label, at) in &seen {
        eprintln!("  {label:<20} {:>6.1} s", at.as_secs_f64());
    }

    // Kernel and initrd over HTTP from the service, intact: the kernel
    // unpacked the initrd (a short or corrupt one fails its gzip check).
    assert!(counter(&st, "artifacts") >= 2, "{st}");
    assert_eq!(counter(&st, "http_errors"), 0, "{st}");
    for name in [KERNEL, INITRD] {
        assert!(
            screen.contains(&format!("http://192.168.100.1/artifacts/{name}... ok")),
            "iPXE fetch of {name}:\n{screen}"
        );
    }
    assert!(!screen.contains("Initramfs unpacking failed"), "{screen}");
    assert!(
        screen.contains(&format!(
            "auto=true priority=critical url={preseed_url} netcfg/choose_interface={MAC} netcfg/get_hostname={HOSTNAME} netcfg/get_domain={DOMAIN}"
        )),
        "kernel command line:\n{screen}"
    );
    assert_initrd_length_and_range(&lan.ns, &dirs.path("artifacts").join(INITRD));

    // d-i's own DHCP lease from the service (busybox udhcpc), the same
    // address the inventory has for the node.
    let node = inventory_node(&dirs, MAC);
    assert_eq!(node["profile"], "debian", "{node}");
    let ip = node["ip"].as_str().unwrap_or_default();
    // On the NIC that booted (slot 4: ens4), not the first one listed.
    let configured = format!("Got IP {ip} (using ens4)");
    assert!(
        lines.iter().any(|l| l.contains(&configured)),
        "{configured}:\n{}",
        tail(&lines, 200)
    );
    let lease = format!("lease of {ip} obtained from 192.168.100.1");
    assert!(
        !ip.is_empty() && lines.iter().any(|l| l.contains(&lease)),
        "{lease}:\n{}",
        tail(&lines, 200)
    );
    assert!(counter(&st, "dhcp_acks") >= 2, "iPXE's and d-i's: {st}");

    // The preseed: fetched once from the service, loaded without error.
    assert_eq!(counter(&st, "http_preseeds"), 1, "{st}");
    let loaded = format!("preseed: successfully loaded preseed file from {preseed_url}");
    assert!(
        lines.iter().any(|l| l.contains(&loaded)),
        "{loaded}:\n{}",
        tail(&lines, 200)
    );
    for failure in [
        "Failed to retrieve the preconfiguration file",
        "Failed to process the preconfiguration file",
    ] {
        assert!(!screen.contains(failure), "{failure}:\n{screen}");
    }

    // Every question on the way came up and was answered by the preseed
    // (skipped, at critical priority too); the only one shown is the
    // mirror's failure.
    let inputs = debconf_inputs(&lines);
    for question in PRESEEDED_ON_THE_WAY {
        let input = inputs
            .iter()
            .find(|i| i.question == question)
            .unwrap_or_else(|| panic!("d-i never reached {question}: {inputs:?}"));
        assert!(!input.shown, "{input:?}");
    }
    let shown: Vec<&Input> = inputs.iter().filter(|i| i.shown).collect();
    assert_eq!(
        shown,
        [&Input {
            priority: "critical".into(),
            question: "mirror/bad".into(),
            shown: true
        }]
    );
    // The values d-i went on with are kindling's.
    for (question, want) in [
        ("netcfg/get_hostname", HOSTNAME),
        ("netcfg/get_domain", DOMAIN),
        ("mirror/country", "manual"),
        ("mirror/http/hostname", "deb.debian.org"),
        ("mirror/http/directory", "/debian"),
        ("mirror/http/proxy", ""),
    ] {
        assert_eq!(
            debconf_value(&lines, question).as_deref(),
            Some(want),
            "{question}"
        );
    }
    // It stopped because the mirror is missing, not over the preseed: it
    // was fetching the release file from the preseeded mirror.
    assert!(
        lines.iter().any(|l| l.contains(
            "choose-mirror" // then: DEBUG: command: wget --no-verbose http://deb.debian.org/debian/dists/…
        ) && l.contains("http://deb.debian.org/debian/dists/")),
        "{}",
        tail(&lines, 100)
    );
}

/// The initrd unpacked under `dir` (root: it holds device nodes).
fn unpack_initrd(dir: &Path) -> bool {
    let ok = Command::new("sh")
        .arg("-ec")
        .arg(format!(
            "cd '{}' && zcat '{DI_IMAGES}/initrd.gz' | cpio -idm --quiet",
            dir.display()
        ))
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipping: could not unpack the installer's initrd (needs zcat and cpio)");
    }
    ok
}

#[test]
fn late_command_runs_with_the_installers_own_debconf_shell_and_wget() {
    require_root!();
    if !installer_tests_wanted() {
        return;
    }
    let dirs = Dirs::new();
    let root: PathBuf = dirs.path("d-i");
    std::fs::create_dir_all(&root).unwrap();
    if !unpack_initrd(&root) {
        return;
    }
    let lan = BridgeLan::new();
    start_service(&lan.ns, &lan.bridge, installer_site(&dirs, ""));

    // The node booted the installer (script fetched: inventory "booting").
    let (status, _, script) = http(&lan.ns, &format!("GET /boot/{MAC}.ipxe HTTP/1.1"));
    assert_eq!(status, 200);
    let script = String::from_utf8(script).unwrap();
    assert!(script.contains("preseed/"), "{script}");

    // What the installed system would be by the time late_command runs: a
    // /target with /etc/systemd/system; in-target (chroot /target CMD)
    // only records what it was asked to run.
    std::fs::create_dir_all(root.join("target/etc/systemd/system")).unwrap();
    std::fs::write(
        root.join("bin/in-target"),
        "#!/bin/sh\necho \"$@\" >> /target/in-target.log\n",
    )
    .unwrap();
    // d-i's steps, by its own scripts: network-preseed (fetch +
    // debconf-set-selections), partman's early command (partman-auto,
    // which owns the question it sets, comes from the mirror: registered
    // here as d-i registers unknown questions) and finish-install's late
    // command.
    std::fs::write(
        root.join("kindling-preseed-steps.sh"),
        format!(
            ". /usr/share/debconf/confmodule\n\
             . /lib/preseed/preseed.sh\n\
             preseed_location 'http://192.168.100.1/preseed/{MAC}.cfg'\n\
             db_register debian-installer/dummy partman-auto/disk\n\
             preseed_command partman/early_command\n\
             db_get partman-auto/disk\n\
             echo \"kindling: partman-auto/disk=$RET\" >&2\n\
             preseed_command preseed/late_command\n\
             echo kindling: steps done >&2\n"
        ),
    )
    .unwrap();
    // In the lab namespace (wget reaches the service) and a private mount
    // namespace (d-i's scripts need /proc, list-devices /sys; the mounts
    // die with them).
    let chroot = |argv: &[&str]| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lan.ns,
                "unshare",
                "--mount",
                "--propagation",
                "private",
            ])
            .args([
                "sh",
                "-ec",
                "mount -t proc proc \"$0/proc\" && mount -t sysfs sys \"$0/sys\" && exec chroot \"$0\" \"$@\"",
            ])
            .arg(&root)
            .args(argv)
            .env("DEBIAN_FRONTEND", "none")
            .env("DEBCONF_DEBUG", "developer")
            .output()
            .unwrap()
    };
    // As d-i's startup does before its menu.
    let out = chroot(&[
        "/bin/sh",
        "-c",
        "debconf-loadtemplate d-i /var/lib/dpkg/info/*.templates",
    ]);
    assert!(out.status.success(), "{out:?}");
    // d-i's programs log by syslog(3): debconf's trace, preseed's messages
    // and the late command's output (log-output).
    let syslog = SyslogSink::unix(&root.join("dev/log"));
    let out = chroot(&[
        "/usr/bin/debconf",
        "-o",
        "d-i",
        "/bin/sh",
        "/kindling-preseed-steps.sh",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::thread::sleep(Duration::from_millis(300));
    let lines = syslog.lines();
    let trace = lines.join("\n");
    assert!(
        out.status.success() && stderr.contains("kindling: steps done"),
        "{out:?}\n{stderr}\n{trace}"
    );
    // No preseed/retrieve_error, load_error or command_failed: nothing asked.
    let inputs = debconf_inputs(&lines);
    assert!(inputs.is_empty(), "{inputs:?}\n{trace}");
    for said in [
        format!(
            "preseed: successfully loaded preseed file from http://192.168.100.1/preseed/{MAC}.cfg"
        ),
        "preseed: running preseed command preseed/late_command: mkdir -p /target/root/.ssh".into(),
    ] {
        assert!(trace.contains(&said), "{said}:\n{trace}");
    }

    // partman/early_command named the first disk d-i lists (this host's).
    let disk = stderr
        .lines()
        .find_map(|l| l.strip_prefix("kindling: partman-auto/disk="))
        .unwrap_or_else(|| panic!("{stderr}"));
    eprintln!("partman-auto/disk={disk}");
    if let Some(name) = disk.strip_prefix("/dev/") {
        assert!(Path::new("/sys/block").join(name).exists(), "{disk}");
    } else {
        assert!(disk.is_empty(), "{disk}");
    }

    let target = root.join("target");
    let keys = std::fs::read_to_string(target.join("root/.ssh/authorized_keys")).unwrap();
    assert_eq!(
        keys,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleOnlyReplaceMe ops@example.net\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(target.join("root/.ssh/authorized_keys"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let unit_path = target.join("etc/systemd/system/kindling-begin.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    assert!(
        unit.contains("ConditionPathExists=!/var/lib/kindling-begin.done\n"),
        "{unit}"
    );
    assert!(
        unit.ends_with("[Install]\nWantedBy=multi-user.target\n"),
        "{unit}"
    );
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("{unit}"));
    assert_eq!(exec, "/bin/sh /usr/local/sbin/kindling-begin", "{unit}");
    let script_path = target.join("usr/local/sbin/kindling-begin");
    let script = std::fs::read_to_string(&script_path).unwrap();
    assert!(
        script.starts_with("#!/bin/sh\ncurl ") && script.contains("begin.sh"),
        "{script}"
    );
    let out = Command::new("sh")
        .arg("-n")
        .arg(&script_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "first-boot script: {out:?}\n{script}");
    let enabled = std::fs::read_to_string(target.join("in-target.log")).unwrap();
    assert_eq!(enabled, "systemctl enable kindling-begin.service\n");
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&unit_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "systemd-analyze verify:\n{}{}\n{unit}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // GNU wget's POST reached the service: the node is installed.
    eventually(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(dirs.path("state/inventory/nodes.json")).ok()?;
        text.contains("\"installed\"").then_some(())
    })
    .unwrap_or_else(|| panic!("no installed event:\n{trace}"));
    let node = inventory_node(&dirs, MAC);
    assert_eq!(node["state"], "installed", "{node}");
    assert!(
        node["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "installed" && e["detail"]["via"] == "preseed"),
        "{node}"
    );
}
