//! `kindling-lab`: the lab's command line (thin over the library).
//!
//!   kindling-lab up      create the lab, boot the appliance (and nodes), run until Ctrl-C
//!   kindling-lab node    boot a PXE node into a lab another `up` runs
//!   kindling-lab status  what lab namespaces and processes exist
//!   kindling-lab down    remove a crashed lab's leftovers
//!   kindling-lab payload build the lab node payload (kernel + initramfs)
//!   kindling-lab bench   boot-to-ready benchmark
//!   kindling-lab demo    the live demo: appliance + one PXE node, with a summary

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use kindling_lab::bench;
use kindling_lab::lab::{ApplianceBoot, ApplianceSpec, Lab, LabOptions, NodeFirmware, NodeSpec};
use kindling_lab::network::LabNames;
use kindling_lab::payload::{self, PayloadInputs};
use kindling_lab::vm::{DiskBus, NicModel, NODE_DEV_MAC};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "kindling-lab", about = "The kindling QEMU lab")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Boot {
    Kernel,
    Iso,
    Disk,
}

#[derive(Clone, Copy, ValueEnum)]
enum Nic {
    Virtio,
    E1000,
}

#[derive(Clone, Copy, ValueEnum)]
enum Fw {
    Bios,
    Uefi,
    /// OVMF with PXE off: UEFI HTTP boot.
    UefiHttp,
}

#[derive(Clone, Copy, ValueEnum)]
enum Bus {
    Virtio,
    Ide,
}

#[derive(clap::Args, Clone)]
struct ApplianceArgs {
    /// How the appliance boots: kernel (direct, fastest), iso (SeaBIOS CD), disk (OVMF raw disk).
    #[arg(long, value_enum, default_value = "kernel")]
    boot: Boot,
    /// Output directory of `kindling image build` (vmlinuz, initramfs.cpio.zst, kindling.iso, kindling.img).
    #[arg(long, default_value = "build/image")]
    image_dir: PathBuf,
    /// Extra kernel command line for --boot kernel (console=ttyS0 is always added).
    #[arg(long, default_value = "panic=-1")]
    append: String,
    #[arg(long, value_enum, default_value = "virtio")]
    nic: Nic,
    /// Disk bus for --boot disk.
    #[arg(long, value_enum, default_value = "virtio")]
    disk_bus: Bus,
    /// Appliance memory in MiB (2048 when it runs bao/consul).
    #[arg(long, default_value_t = 1024)]
    memory: u32,
}

impl ApplianceArgs {
    fn spec(&self) -> ApplianceSpec {
        let dir = &self.image_dir;
        let boot = match self.boot {
            Boot::Kernel => ApplianceBoot::Kernel {
                kernel: dir.join("vmlinuz"),
                initrd: dir.join("initramfs.cpio.zst"),
                append: self.append.clone(),
            },
            Boot::Iso => ApplianceBoot::Iso(dir.join("kindling.iso")),
            Boot::Disk => ApplianceBoot::Disk {
                image: dir.join("kindling.img"),
                bus: match self.disk_bus {
                    Bus::Virtio => DiskBus::Virtio,
                    Bus::Ide => DiskBus::Ide,
                },
            },
        };
        let mut spec = ApplianceSpec::new(boot);
        spec.nic_model = nic_model(self.nic);
        spec.memory_mb = self.memory;
        spec
    }

    fn boot_name(&self) -> &'static str {
        match self.boot {
            Boot::Kernel => "kernel",
            Boot::Iso => "iso",
            Boot::Disk => "disk",
        }
    }
}

fn nic_model(nic: Nic) -> NicModel {
    match nic {
        Nic::Virtio => NicModel::Virtio,
        Nic::E1000 => NicModel::E1000,
    }
}

fn node_firmware(fw: Fw) -> NodeFirmware {
    match fw {
        Fw::Bios => NodeFirmware::Bios,
        Fw::Uefi => NodeFirmware::Uefi,
        Fw::UefiHttp => NodeFirmware::UefiHttp,
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create the lab and boot the appliance; runs until Ctrl-C (or --for), then tears down.
    Up {
        #[command(flatten)]
        appliance: ApplianceArgs,
        /// Also PXE-boot one node per flag once the appliance is ready.
        #[arg(long, value_enum)]
        node: Vec<Fw>,
        /// Print the appliance's serial console as it comes.
        #[arg(long)]
        follow: bool,
        /// Stop after this many seconds instead of waiting for Ctrl-C.
        #[arg(long = "for")]
        run_for: Option<u64>,
        #[arg(long, env = "KINDLING_LAB_DIR", default_value = "/run/kindling-lab")]
        run_dir: PathBuf,
    },
    /// PXE-boot a node VM into the running lab; waits until it powers off or times out.
    Node {
        #[arg(long, value_enum, default_value = "bios")]
        firmware: Fw,
        #[arg(long, default_value = NODE_DEV_MAC)]
        mac: String,
        #[arg(long, value_enum, default_value = "virtio")]
        nic: Nic,
        #[arg(long, default_value_t = 180)]
        timeout: u64,
        #[arg(long, env = "KINDLING_LAB_DIR", default_value = "/run/kindling-lab")]
        run_dir: PathBuf,
    },
    /// Show the lab's namespaces, processes and logs.
    Status {
        #[arg(long, env = "KINDLING_LAB_DIR", default_value = "/run/kindling-lab")]
        run_dir: PathBuf,
    },
    /// Remove leftovers of a lab that did not shut down (processes in kl-* namespaces, the namespaces).
    Down {
        #[arg(long, env = "KINDLING_LAB_DIR", default_value = "/run/kindling-lab")]
        run_dir: PathBuf,
    },
    /// Build the lab node payload (vmlinuz + lab-node.cpio.zst) into --out.
    Payload {
        #[arg(long)]
        out: PathBuf,
        /// Kernel image named vmlinuz-<version> (default: newest in /boot).
        #[arg(long)]
        kernel: Option<PathBuf>,
    },
    /// The live demo: boot the appliance, PXE-boot one BIOS node from it, print what
    /// happens and a summary. Exits 0 only if the node really booted from the appliance.
    Demo {
        #[command(flatten)]
        appliance: ApplianceArgs,
        #[arg(long, default_value_t = 300)]
        appliance_timeout: u64,
        #[arg(long, default_value_t = 240)]
        node_timeout: u64,
        #[arg(long, env = "KINDLING_LAB_DIR", default_value = "/run/kindling-lab")]
        run_dir: PathBuf,
    },
    /// Boot the appliance --runs times and print boot-to-ready vs kernel-to-/init.
    Bench {
        #[command(flatten)]
        appliance: ApplianceArgs,
        #[arg(long, default_value_t = 3)]
        runs: u32,
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        #[arg(long, env = "KINDLING_LAB_DIR", default_value = "/run/kindling-lab")]
        run_dir: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("kindling-lab: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up {
            appliance,
            node,
            follow,
            run_for,
            run_dir,
        } => up(&appliance, &node, follow, run_for, run_dir),
        Command::Node {
            firmware,
            mac,
            nic,
            timeout,
            run_dir,
        } => node(
            node_firmware(firmware),
            &mac,
            nic_model(nic),
            timeout,
            &run_dir,
        ),
        Command::Status { run_dir } => status(&run_dir),
        Command::Down { run_dir } => {
            kindling_lab::cmd::require_root("kindling-lab down")?;
            let report = kindling_lab::down::down("kl-", Some(&run_dir));
            for (pid, cmdline) in &report.killed {
                println!("stopped {pid}: {cmdline}");
            }
            for ns in &report.namespaces {
                println!("deleted netns {ns}");
            }
            if report.killed.is_empty() && report.namespaces.is_empty() {
                println!("nothing to clean up");
            }
            Ok(())
        }
        Command::Payload { out, kernel } => {
            let mut inputs = PayloadInputs::host_defaults()?;
            if let Some(k) = kernel {
                inputs.kernel = kindling_lab::kernel::KernelInfo::from_image(&k)?;
            }
            let built = payload::build(&inputs, &out)?;
            println!(
                "kernel  {} ({})",
                built.kernel.display(),
                inputs.kernel.version
            );
            println!(
                "initrd  {} ({} bytes)",
                built.initrd.display(),
                std::fs::metadata(&built.initrd)?.len()
            );
            println!("modules {}", built.modules.join(" "));
            Ok(())
        }
        Command::Demo {
            appliance,
            appliance_timeout,
            node_timeout,
            run_dir,
        } => {
            // Ctrl-C makes the demo return early; its lab guard tears down.
            let interrupted = interrupt_flag()?;
            let options = kindling_lab::demo::DemoOptions {
                appliance: appliance.spec(),
                boot_name: appliance.boot_name().to_string(),
                run_dir,
                appliance_timeout: Duration::from_secs(appliance_timeout),
                node_timeout: Duration::from_secs(node_timeout),
                interrupted,
            };
            let outcome = kindling_lab::demo::run(&options)?;
            print!("{}", kindling_lab::demo::summary(&outcome));
            if !outcome.node_booted_from_appliance() {
                bail!(
                    "the node did not boot from the appliance ({})",
                    outcome.stopped_at.as_deref().unwrap_or("see the summary")
                );
            }
            Ok(())
        }
        Command::Bench {
            appliance,
            runs,
            timeout,
            run_dir,
        } => bench_cmd(&appliance, runs, timeout, run_dir),
    }
}

fn interrupt_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    ctrlc::set_handler(move || f.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    Ok(flag)
}

fn print_new_lines(lab: &mut Lab, id: kindling_lab::VmId, printed: &mut usize) {
    let lines = lab.vm(id).lines();
    for l in &lines[*printed..] {
        println!("  | {}", l.line);
    }
    *printed = lines.len();
}

fn up(
    args: &ApplianceArgs,
    nodes: &[Fw],
    follow: bool,
    run_for: Option<u64>,
    run_dir: PathBuf,
) -> anyhow::Result<()> {
    let stop = interrupt_flag()?;
    let spec = args.spec();
    spec.check_files()?;
    let mut lab = Lab::up(LabOptions::standard(run_dir))?;
    println!(
        "lab up: netns {} (upstream 10.0.2.1) and {} (br-up, br-lan 192.168.100.2); accel {}; logs in {}",
        lab.names().upstream,
        lab.names().lan,
        lab.accel().as_str(),
        lab.run_dir().display()
    );
    let app = lab.boot_appliance(&spec)?;
    println!(
        "appliance booting ({} boot), serial log {}",
        args.boot_name(),
        lab.vm(app).serial_log().display()
    );
    let mut printed = 0;
    if !nodes.is_empty() {
        let ready = loop {
            if follow {
                print_new_lines(&mut lab, app, &mut printed);
            }
            if let Some(line) = lab.vm(app).find_seen(bench::READY_PATTERN) {
                break line;
            }
            if let Some(line) = lab.vm(app).find_seen(bench::DEGRADED_PATTERN) {
                bail!("the appliance came up degraded: {}", line.line.trim());
            }
            if let Some(status) = lab.vm(app).exited() {
                bail!("the appliance VM exited ({status}) before it was ready");
            }
            if stop.load(Ordering::SeqCst) {
                println!("interrupted; tearing the lab down");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        println!(
            "appliance ready after {:.1} s: {}",
            ready.elapsed.as_secs_f64(),
            ready.line
        );
        for (i, fw) in nodes.iter().enumerate() {
            let mac = format!("52:54:00:6b:00:{:02x}", 0x10 + i);
            let mut spec = NodeSpec::pxe(&format!("node-{}", i + 1), &mac, node_firmware(*fw));
            spec.nic_model = nic_model(args.nic);
            let id = lab.boot_node(&spec)?;
            println!(
                "node {mac} PXE-booting, serial log {}",
                lab.vm(id).serial_log().display()
            );
        }
    }
    let started = Instant::now();
    println!("running; Ctrl-C tears the lab down");
    while !stop.load(Ordering::SeqCst) {
        if run_for.is_some_and(|s| started.elapsed() >= Duration::from_secs(s)) {
            break;
        }
        if follow {
            print_new_lines(&mut lab, app, &mut printed);
        }
        if let Some(status) = lab.vm(app).exited() {
            println!("appliance VM exited ({status})");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("tearing the lab down");
    lab.succeeded();
    Ok(())
}

fn node(
    firmware: NodeFirmware,
    mac: &str,
    nic: NicModel,
    timeout: u64,
    run_dir: &Path,
) -> anyhow::Result<()> {
    kindling_lab::cmd::require_root("kindling-lab node")?;
    let stop = interrupt_flag()?;
    let names = LabNames::default();
    let net = kindling_lab::network::LabNetwork::attach(&names)?;
    let running = qemu_count(&names.lan);
    if running >= kindling_lab::lab::MAX_VMS {
        bail!(
            "{running} VMs already run in the lab (at most {} at once)",
            kindling_lab::lab::MAX_VMS
        );
    }
    // The `up` process holds the QEMU lock for its lab; a node joins that lab
    // within its VM budget (checked above) instead of taking the lock again.
    let mut spec = NodeSpec::pxe(&format!("node-{}", mac.replace(':', "")), mac, firmware);
    spec.nic_model = nic;
    let mut vm = kindling_lab::lab::start_node_in(&net, &spec, run_dir)?;
    println!(
        "node {mac} booting; serial log {}",
        vm.serial_log().display()
    );
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut printed = 0;
    loop {
        let lines = vm.lines();
        for l in lines[printed..]
            .iter()
            .filter(|l| l.line.contains("kindling-node:"))
        {
            println!("  {:>6.1}s {}", l.elapsed.as_secs_f64(), l.line.trim());
        }
        printed = lines.len();
        if let Some(status) = vm.exited() {
            println!("node powered off ({status})");
            break;
        }
        if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
            println!("stopping the node (timeout or Ctrl-C)");
            vm.stop();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for tap in vm.taps() {
        net.remove_tap(tap);
    }
    Ok(())
}

fn qemu_count(ns: &str) -> usize {
    kindling_lab::cmd::ip(&["netns", "pids", ns])
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).starts_with("qemu-system"))
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}

fn status(run_dir: &Path) -> anyhow::Result<()> {
    let namespaces = kindling_lab::down::lab_namespaces("kl-");
    if namespaces.is_empty() {
        println!("no lab namespaces (kl-*): the lab is down");
    }
    for ns in &namespaces {
        println!("netns {ns}");
        if let Ok(out) = kindling_lab::cmd::ip(&["netns", "pids", ns]) {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                    .unwrap_or_default();
                let short: String = cmdline.chars().take(100).collect();
                println!("  pid {pid:>7}  {short}");
            }
        }
    }
    let leases = run_dir.join("upstream-dhcp.leases");
    if let Ok(text) = std::fs::read_to_string(&leases) {
        println!("upstream DHCP leases ({}):", leases.display());
        for l in text.lines() {
            println!("  {l}");
        }
    }
    if let Ok(rd) = std::fs::read_dir(run_dir) {
        let mut logs: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        if !logs.is_empty() {
            println!("logs in {}:", run_dir.display());
            for l in logs {
                println!("  {}", l.display());
            }
        }
    }
    Ok(())
}

fn bench_cmd(
    args: &ApplianceArgs,
    runs: u32,
    timeout: u64,
    run_dir: PathBuf,
) -> anyhow::Result<()> {
    let spec = args.spec();
    spec.check_files()?;
    let mut results = Vec::new();
    let mut accel = "tcg";
    for run in 1..=runs {
        let mut lab = Lab::up(LabOptions::standard(run_dir.clone()))?;
        accel = lab.accel().as_str();
        let app = lab.boot_appliance(&spec)?;
        lab.vm(app).wait_for_unless(
            bench::READY_PATTERN,
            Some(bench::DEGRADED_PATTERN),
            Duration::from_secs(timeout),
        )?;
        let lines = lab.vm(app).lines();
        let times = bench::boot_times(&lines).with_context(|| {
            format!("run {run}: no `Run /init` or ready line with a [time] stamp")
        })?;
        lab.succeeded();
        eprintln!(
            "run {run}: kernel {:.2} s, ready {:.2} s",
            times.kernel_s, times.ready_s
        );
        results.push(times);
    }
    print!("{}", bench::table(args.boot_name(), accel, &results));
    if let Some(path) = std::env::var_os("BENCH_RECORD") {
        bench::record(Path::new(&path), accel, &results)
            .with_context(|| format!("appending to BENCH_RECORD={}", Path::new(&path).display()))?;
    }
    Ok(())
}
