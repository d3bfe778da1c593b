#!/usr/bin/env bash
# Boots the release kindling-init as the real PID 1 of a Debian kernel under
# QEMU (TCG, ~15 s) with a minimal initramfs: busybox children, modules.list
# (crc32c_generic, nf_tables) plus virtio drivers found by modalias, no data
# partition. A one-shot child prints PID 1's memory with 8 supervised children
# and sends SIGUSR2; the VM must power off by itself.
#
#   init/vm-smoke.sh            (run from the repository root, as root)
#
# Not part of `cargo test` (the crate's tests need no QEMU); the image
# builder's end-to-end tests boot the real image.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KERNEL=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1)
KVER=${KERNEL#/boot/vmlinuz-}
MODS=/lib/modules/$KVER
WORK=$(mktemp -d /tmp/ki-vm-smoke.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root

cargo build --release -p kindling-init --manifest-path "$ROOT/Cargo.toml"
mkdir -p "$R/bin" "$R/etc/kindling" "$R/dev" "$R/lib/modules/$KVER"
cp "$ROOT/target/x86_64-unknown-linux-gnu/release/kindling-init" "$R/init"
cp /bin/busybox "$R/bin/"
for a in sh sleep kill cat grep; do ln -s busybox "$R/bin/$a"; done
mknod "$R/dev/console" c 5 1
cp "$MODS/modules.dep" "$MODS/modules.alias" "$MODS/modules.builtin" "$R/lib/modules/$KVER/"
for m in crc32c_generic nf_tables virtio_pci virtio_net; do
  for f in $(grep -E "/$m\.ko[^:]*:" "$MODS/modules.dep" | tr -d ':'); do
    mkdir -p "$R/lib/modules/$KVER/$(dirname "$f")"
    cp "$MODS/$f" "$R/lib/modules/$KVER/$f"
  done
done
printf 'crc32c_generic\nnf_tables\n' > "$R/etc/kindling/modules.list"
python3 - "$R/etc/kindling/services.json" <<'PY'
import json, sys
children = [{"name": f"child{i}", "argv": ["/bin/sh", "-c", "echo ready >&3; exec sleep 1000"],
             "readiness": {"kind": "notify"}} for i in range(8)]
report = {"name": "report", "oneshot": True, "readiness": {"kind": "exited"}, "required": False,
          "depends_on": [c["name"] for c in children],
          "argv": ["/bin/sh", "-c", "sleep 1; grep -E 'VmRSS|VmHWM' /proc/1/status; kill -USR2 1"]}
json.dump({"hostname": "ki-vm-smoke", "services": children + [report]}, open(sys.argv[1], "w"))
PY
(cd "$R" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$WORK/initrd.gz"

# At most 2 VMs machine-wide; user networking is restricted (no host access).
flock /tmp/kindling-qemu.lock timeout 180 qemu-system-x86_64 -machine q35 -m 512 \
  -kernel "$KERNEL" -initrd "$WORK/initrd.gz" -append "console=ttyS0 quiet" \
  -nographic -no-reboot -nic user,model=virtio-net-pci,restrict=on \
  | tr -d '\r' > "$WORK/serial.log" || true
grep -E 'kindling: (early|state|config|network|services|ready|degraded|shutdown)|report\||reboot: Power down' "$WORK/serial.log"
grep -q 'reboot: Power down' "$WORK/serial.log" || { echo "FAIL: the VM did not power off"; exit 1; }
grep -q 'kindling: ready (9 services' "$WORK/serial.log" || echo "note: no ready line (see above)"
echo "OK: booted as PID 1, supervised 8 children, powered off on SIGUSR2"
