//! The lab node payload: a tiny initramfs (busybox-static, an /init script,
//! the NIC drivers with their dependency closure) that the lab's dev/prod
//! profiles boot. Its /init fetches NoCloud data from the appliance, phones
//! home, probes the upstream through NAT and powers off (see `payload/init`).
//! This module only builds files in the output directory; it never touches the
//! host's own /boot or /lib/modules.

use crate::error::{LabError, Result};
use crate::kernel::KernelInfo;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

const INIT_SCRIPT: &str = include_str!("../payload/init");
const UDHCPC_SCRIPT: &str = include_str!("../payload/udhcpc.script");
const SYSTEMCTL_SCRIPT: &str = include_str!("../payload/systemctl");

/// The C runtime a Debian node has, from the host's multiarch directory:
/// with the first boot, the payload stands in for such a node, and the
/// Consul client the appliance hands it (Debian's build) links against it.
const NODE_LIBC: &[&str] = &[
    "ld-linux-x86-64.so.2",
    "libc.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "libm.so.6",
    "libresolv.so.2",
    "libnss_files.so.2",
    "libnss_dns.so.2",
];
const LIBC_DIR: &str = "lib/x86_64-linux-gnu";

/// Where the payload keeps the first-boot double (`PayloadInputs::first_boot`).
pub const FIRST_BOOT_PATH: &str = "bin/kindling-nocloud-double";

/// The artifact names the lab overlay's profiles use (`overlays/lab/profiles`).
pub const PAYLOAD_INITRD_NAME: &str = "lab-node.cpio.zst";
pub const PAYLOAD_KERNEL_NAME: &str = "vmlinuz";

/// NIC drivers the lab's node VMs need (virtio-net and e1000), by module name.
pub const NODE_MODULES: &[&str] = &["virtio_pci", "virtio_net", "e1000"];

/// Fixed mtime for every entry, so two builds from the same inputs are equal.
const MTIME: u32 = 0;

#[derive(Debug, Clone)]
pub struct PayloadInputs {
    pub kernel: KernelInfo,
    pub busybox: PathBuf,
    pub modules: Vec<String>,
    /// A static `kindling-nocloud-double` (tests/nocloud-double): with it a
    /// node whose user-data carries an enrollment grant runs its first boot
    /// (write_files, runcmd: the node agent) and keeps its services up.
    /// Without it every node phones home and powers off.
    pub first_boot: Option<PathBuf>,
}

impl PayloadInputs {
    /// The host's newest Debian kernel and `/bin/busybox` (busybox-static).
    pub fn host_defaults() -> Result<Self> {
        Ok(Self {
            kernel: KernelInfo::newest_installed()?,
            busybox: PathBuf::from("/bin/busybox"),
            modules: NODE_MODULES.iter().map(|m| m.to_string()).collect(),
            first_boot: None,
        })
    }
}

/// What `build` wrote.
#[derive(Debug, Clone)]
pub struct Payload {
    pub initrd: PathBuf,
    pub kernel: PathBuf,
    /// Module files in load order (paths relative to the kernel's module dir).
    pub modules: Vec<String>,
}

/// Writes `vmlinuz` and `lab-node.cpio.zst` into `out` (via temporary names,
/// renamed at the end, so a failed build leaves nothing that looks valid).
pub fn build(inputs: &PayloadInputs, out: &Path) -> Result<Payload> {
    std::fs::create_dir_all(out).map_err(|e| LabError::io("creating payload dir", out, e))?;
    check_static_busybox(&inputs.busybox)?;
    let deps = read_modules_dep(&inputs.kernel.modules_dir)?;
    let order = load_order(&deps, &inputs.modules)?;

    let mut cpio = CpioWriter::default();
    for dir in [
        "bin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "proc",
        "run",
        "sys",
        "tmp",
    ] {
        cpio.dir(dir);
    }
    cpio.char_device("dev/console", 5, 1);
    cpio.file("init", INIT_SCRIPT.as_bytes(), 0o755);
    cpio.file("etc/udhcpc.script", UDHCPC_SCRIPT.as_bytes(), 0o755);
    let busybox =
        std::fs::read(&inputs.busybox).map_err(|e| LabError::io("reading", &inputs.busybox, e))?;
    cpio.file("bin/busybox", &busybox, 0o755);
    cpio.symlink("bin/sh", "busybox");
    if let Some(double) = &inputs.first_boot {
        let data = read_static("the first-boot double", double)?;
        cpio.file(FIRST_BOOT_PATH, &data, 0o755);
        cpio.file("bin/systemctl", SYSTEMCTL_SCRIPT.as_bytes(), 0o755);
        cpio.dir("lib/x86_64-linux-gnu");
        cpio.dir("lib64");
        for lib in NODE_LIBC {
            let src = Path::new("/").join(LIBC_DIR).join(lib);
            let data = std::fs::read(&src).map_err(|e| LabError::io("reading", &src, e))?;
            cpio.file(&format!("{LIBC_DIR}/{lib}"), &data, 0o755);
        }
        cpio.symlink(
            "lib64/ld-linux-x86-64.so.2",
            "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        );
    }
    let mut order_file = String::new();
    for rel in &order {
        let src = inputs.kernel.modules_dir.join(rel);
        let data = std::fs::read(&src).map_err(|e| LabError::io("reading module", &src, e))?;
        let name = file_name(rel);
        cpio.file(&format!("lib/modules/{name}"), &data, 0o644);
        order_file.push_str(&name);
        order_file.push('\n');
    }
    cpio.file("etc/modules.order", order_file.as_bytes(), 0o644);
    let archive = cpio.finish()?;

    let compressed = zstd::encode_all(archive.as_slice(), 19)
        .map_err(|e| LabError::Payload(format!("zstd compression failed: {e}")))?;
    let initrd = out.join(PAYLOAD_INITRD_NAME);
    write_atomically(&initrd, &compressed)?;
    let kernel = out.join(PAYLOAD_KERNEL_NAME);
    let image = std::fs::read(&inputs.kernel.image)
        .map_err(|e| LabError::io("reading", &inputs.kernel.image, e))?;
    write_atomically(&kernel, &image)?;
    Ok(Payload {
        initrd,
        kernel,
        modules: order,
    })
}

fn file_name(rel: &str) -> String {
    rel.rsplit('/').next().unwrap_or(rel).to_string()
}

/// A binary the payload carries: it has no libc, so only a static one runs.
fn read_static(what: &'static str, path: &Path) -> Result<Vec<u8>> {
    let data = std::fs::read(path).map_err(|_| LabError::ArtifactMissing {
        what,
        path: path.to_path_buf(),
        fix: "build it with `cargo build --release --workspace --bins` (tests/e2e does)".into(),
    })?;
    if has_elf_interpreter(&data) {
        return Err(LabError::Payload(format!(
            "{what} {} is dynamically linked; the payload has no libc",
            path.display()
        )));
    }
    Ok(data)
}

fn check_static_busybox(path: &Path) -> Result<()> {
    let data = std::fs::read(path).map_err(|_| LabError::ArtifactMissing {
        what: "busybox",
        path: path.to_path_buf(),
        fix: "install busybox-static (`tests/install-deps`)".into(),
    })?;
    // The payload has no libc, so it needs the static build.
    if has_elf_interpreter(&data) {
        return Err(LabError::Payload(format!(
            "{} is dynamically linked; install busybox-static (`apt-get install busybox-static`)",
            path.display()
        )));
    }
    Ok(())
}

/// Whether a 64-bit ELF file has a PT_INTERP program header (is dynamically linked).
fn has_elf_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    // `get(o..o + n)` yields exactly n bytes, so the fixed indexes below are in range.
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(|a| u64::from_le_bytes(a) as usize)
    };
    if elf.get(..5) != Some(b"\x7fELF\x02".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..count).any(|i| u32_at(phoff + i * size) == Some(PT_INTERP))
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    kindling_atomic_write::write_atomic(path, data, true)
        .map_err(|e| LabError::io("writing into place", path, e))
}

/// `modules.dep`: module path → its dependencies (all relative to the module dir).
pub fn read_modules_dep(modules_dir: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let path = modules_dir.join("modules.dep");
    let text = std::fs::read_to_string(&path).map_err(|e| LabError::io("reading", &path, e))?;
    Ok(parse_modules_dep(&text))
}

pub fn parse_modules_dep(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(|line| {
            let (module, deps) = line.split_once(':')?;
            Some((
                module.trim().to_string(),
                deps.split_whitespace().map(str::to_string).collect(),
            ))
        })
        .collect()
}

/// Module name as modprobe sees it: file stem with `-` and `_` equivalent.
fn module_name(path: &str) -> String {
    let file = file_name(path);
    let stem = file.split(".ko").next().unwrap_or(&file);
    stem.replace('-', "_")
}

/// The modules named in `wanted` plus their dependency closure, each after
/// everything it depends on.
pub fn load_order(deps: &BTreeMap<String, Vec<String>>, wanted: &[String]) -> Result<Vec<String>> {
    let by_name: BTreeMap<String, &String> = deps.keys().map(|p| (module_name(p), p)).collect();
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    for name in wanted {
        let path = by_name.get(&name.replace('-', "_")).ok_or_else(|| {
            LabError::Payload(format!(
                "kernel module `{name}` is not in modules.dep (built into the kernel or missing)"
            ))
        })?;
        visit(deps, path, &mut done, &mut order, 0)?;
    }
    Ok(order)
}

fn visit(
    deps: &BTreeMap<String, Vec<String>>,
    module: &str,
    done: &mut BTreeSet<String>,
    order: &mut Vec<String>,
    depth: usize,
) -> Result<()> {
    if done.contains(module) {
        return Ok(());
    }
    if depth > 64 {
        return Err(LabError::Payload(format!(
            "modules.dep has a dependency cycle through {module}"
        )));
    }
    for dep in deps.get(module).map(Vec::as_slice).unwrap_or_default() {
        visit(deps, dep, done, order, depth + 1)?;
    }
    done.insert(module.to_string());
    order.push(module.to_string());
    Ok(())
}

/// A newc cpio archive built in memory with fixed metadata.
#[derive(Default)]
struct CpioWriter {
    entries: Vec<(cpio::newc::Builder, Vec<u8>)>,
    next_ino: u32,
}

impl CpioWriter {
    fn header(&mut self, name: &str, mode: u32) -> cpio::newc::Builder {
        self.next_ino += 1;
        cpio::newc::Builder::new(name)
            .ino(self.next_ino)
            .mode(mode)
            .uid(0)
            .gid(0)
            .nlink(1)
            .mtime(MTIME)
    }

    fn dir(&mut self, name: &str) {
        let b = self.header(name, 0o040_755).nlink(2);
        self.entries.push((b, Vec::new()));
    }

    fn file(&mut self, name: &str, data: &[u8], perm: u32) {
        let b = self.header(name, 0o100_000 | perm);
        self.entries.push((b, data.to_vec()));
    }

    fn symlink(&mut self, name: &str, target: &str) {
        let b = self.header(name, 0o120_777);
        self.entries.push((b, target.as_bytes().to_vec()));
    }

    fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        let b = self
            .header(name, 0o020_600)
            .rdev_major(major)
            .rdev_minor(minor);
        self.entries.push((b, Vec::new()));
    }

    fn finish(self) -> Result<Vec<u8>> {
        let io = |e: std::io::Error| LabError::Payload(format!("writing cpio archive: {e}"));
        let mut out = Vec::new();
        for (builder, data) in self.entries {
            let size = u32::try_from(data.len())
                .map_err(|_| LabError::Payload("a payload file is larger than 4 GiB".into()))?;
            let mut w = builder.write(&mut out, size);
            w.write_all(&data).map_err(io)?;
            w.finish().map_err(io)?;
        }
        cpio::newc::trailer(&mut out).map_err(io)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const DEP: &str = "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/virtio/virtio_ring.ko:\n\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
kernel/net/core/failover.ko:\n";

    #[test]
    fn load_order_puts_every_dependency_first_and_once() {
        let deps = parse_modules_dep(DEP);
        let order = load_order(&deps, &["virtio_pci".into(), "virtio-net".into()]).unwrap();
        let pos = |m: &str| {
            order
                .iter()
                .position(|p| p.ends_with(&format!("/{m}.ko")))
                .unwrap()
        };
        assert_eq!(order.len(), 7);
        assert!(pos("virtio_ring") < pos("virtio"));
        assert!(pos("virtio") < pos("virtio_pci"));
        assert!(pos("failover") < pos("net_failover"));
        assert!(pos("net_failover") < pos("virtio_net"));
    }

    #[test]
    fn dynamic_and_static_elf_files_are_told_apart() {
        let dynamic = std::fs::read("/bin/sh").unwrap();
        assert!(
            has_elf_interpreter(&dynamic),
            "/bin/sh is dynamically linked on Debian"
        );
        assert!(!has_elf_interpreter(b"#!/bin/sh\n"));
    }

    #[test]
    fn an_unknown_module_is_a_clear_error() {
        let deps = parse_modules_dep(DEP);
        let err = load_order(&deps, &["e1000e".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("e1000e") && err.contains("modules.dep"),
            "{err}"
        );
    }

    #[test]
    fn builds_a_payload_from_the_host_kernel_with_drivers_and_init() {
        let Ok(inputs) = PayloadInputs::host_defaults() else {
            eprintln!("skipped: no Debian kernel in /boot (install linux-image-amd64)");
            return;
        };
        if !inputs.busybox.exists() {
            eprintln!("skipped: /bin/busybox missing (install busybox-static)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let payload = build(&inputs, dir.path()).unwrap();
        let archive = zstd::decode_all(std::fs::File::open(&payload.initrd).unwrap()).unwrap();
        let mut names = Vec::new();
        let mut reader = std::io::Cursor::new(archive);
        loop {
            let entry = cpio::NewcReader::new(reader).unwrap();
            if entry.entry().is_trailer() {
                break;
            }
            names.push(entry.entry().name().to_string());
            reader = entry.finish().unwrap();
        }
        for want in [
            "init",
            "bin/busybox",
            "dev/console",
            "lib/modules/virtio_net.ko",
            "lib/modules/e1000.ko",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        assert!(payload.kernel.exists());
        // Nothing half-written is left behind.
        assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .path()
            .to_string_lossy()
            .ends_with(".partial")));
    }
}
