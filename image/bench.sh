#!/usr/bin/env bash
# Benchmarks `kindling image build` and prints one table:
#   - full build time (initramfs, ISO, UKI + raw disk, PXE) from a warm cargo cache
#   - initramfs size without and with the HashiCorp binaries (bao as vault, consul)
#   - baseline, measured in the same run: Debian's mkinitramfs for the same
#     kernel (time and size), the tool an operator would otherwise use.
#
#   - the shipped sizes: ISO, and the /init (PID 1, the musl build) inside the
#     initramfs, read back from the image itself
#
#   image/bench.sh [--runs N] [--quick]   (default 2 runs per row; the median is shown;
#                                          --quick: initramfs+ISO only, no baseline)
# With BENCH_RECORD=FILE every measurement is also appended to FILE as
# "scenario<TAB>side<TAB>value" lines (tests/bench collects them).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=2 QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "usage: $0 [--runs N] [--quick]" >&2; exit 2 ;;
  esac
done
record() { if [ -n "${BENCH_RECORD:-}" ]; then printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$BENCH_RECORD"; fi; }
TOOLS="${KINDLING_TOOLS:-$ROOT/build/tools}"
BIN="$ROOT/target/x86_64-unknown-linux-gnu/release"
WORK=$(mktemp -d /tmp/kindling-image-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

say() { printf 'bench: %s\n' "$*" >&2; }

say "building release binaries (warm cache: only changed crates rebuild)"
cargo build --release -q --workspace --bins
# PID 1 as it ships: the musl build (what `kindling image build` takes by default).
cargo build --release -q -p kindling-init --target x86_64-unknown-linux-musl
INIT_MUSL="$ROOT/target/x86_64-unknown-linux-musl/release/kindling-init"

# A signing key and a signed overlay. `kindling overlay build` packs
# overlays/lab when it exists; otherwise a stand-in payload is signed (the
# image builder copies .kovl files as they are, so size and time are the same
# to within the overlay's few KiB).
minisign -G -W -f -p "$WORK/bench.pub" -s "$WORK/bench.key" >/dev/null
if "$BIN/kindling" overlay build --help >/dev/null 2>&1 &&
   "$BIN/kindling" overlay build overlays/lab --name lab --version 1 --key "$WORK/bench.key" \
     --out "$WORK/lab.kovl" >/dev/null 2>"$WORK/overlay.err"; then
  OVERLAY_NOTE="overlays/lab via kindling overlay build"
else
  tar -C overlays/lab -c . | zstd -q -19 > "$WORK/lab.kovl"
  minisign -S -s "$WORK/bench.key" -m "$WORK/lab.kovl" >/dev/null
  OVERLAY_NOTE="stand-in: tar.zst of overlays/lab signed with minisign ($(head -1 "$WORK/overlay.err" 2>/dev/null))"
fi
[ -f "$WORK/lab.kovl.minisig" ] || minisign -S -s "$WORK/bench.key" -m "$WORK/lab.kovl" >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# build NAME FORMATS EXTRA... → prints "seconds bytes"; records each run's time
build() {
  local name=$1 formats=$2; shift 2
  local times=() out="$WORK/out-$name"
  for _ in $(seq "$RUNS"); do
    local t0 t1
    t0=$(date +%s.%N)
    "$BIN/kindling" image build --site "$WORK/lab.kovl" --trust-key "$WORK/bench.pub" \
      --out "$out" --bin-dir "$BIN" --init-bin "$INIT_MUSL" --formats "$formats" "$@" >/dev/null 2>"$WORK/err" ||
      { cat "$WORK/err" >&2; exit 1; }
    t1=$(date +%s.%N)
    times+=("$(echo "$t1 - $t0" | bc)")
    record "image_build_$name" kindling "${times[-1]}"
  done
  printf '%s %s\n' "$(printf '%s\n' "${times[@]}" | median)" "$(stat -c %s "$out/initramfs.cpio.zst")"
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

if [ "$QUICK" = 1 ]; then
  say "base image, initramfs + ISO ($RUNS runs)"
  read -r t_full s_base < <(build iso initramfs,iso)
  t_initrd=$t_full
else
  say "base image, all formats ($RUNS runs)"
  read -r t_full s_base < <(build full initramfs,iso,disk,pxe)
  say "base image, initramfs only"
  read -r t_initrd _ < <(build initrd initramfs)
fi
# What ships: the ISO and the /init inside the initramfs, read back.
BASE_OUT="$WORK/out-full"; [ "$QUICK" = 1 ] && BASE_OUT="$WORK/out-iso"
s_iso=$(stat -c %s "$(ls "$BASE_OUT"/*.iso | head -1)")
s_init=$(zstd -dc "$BASE_OUT/initramfs.cpio.zst" | (cd "$WORK" && cpio -i --quiet --to-stdout init) | wc -c)
record initramfs_bytes kindling "$s_base"
record iso_bytes kindling "$s_iso"
record init_shipped_bytes kindling "$s_init"
HASHI=()
if [ "$QUICK" = 0 ]; then
  [ -x "$TOOLS/bao" ] && HASHI+=(--extra-bin "vault=$TOOLS/bao")
  [ -x "$TOOLS/consul" ] && HASHI+=(--extra-bin "consul=$TOOLS/consul")
fi
if [ ${#HASHI[@]} -gt 0 ]; then
  say "with ${HASHI[*]}"
  read -r t_hashi s_hashi < <(build hashi initramfs,iso,disk,pxe "${HASHI[@]}")
fi

# The lab image for tests/bench's boot benchmark: the base image plus
# ntp-daemon (the lab site serves time), kernel + initramfs only.
if [ -n "${BENCH_IMAGE_KEEP:-}" ]; then
  say "lab image for the boot benchmark -> $BENCH_IMAGE_KEEP"
  rm -rf "$BENCH_IMAGE_KEEP"
  "$BIN/kindling" image build --site "$WORK/lab.kovl" --trust-key "$WORK/bench.pub" \
    --out "$BENCH_IMAGE_KEEP" --bin-dir "$BIN" --init-bin "$INIT_MUSL" --formats initramfs \
    --extra-bin "ntp-daemon=${KINDLING_TOOLS:-$ROOT/build/tools}/ntp-daemon" >/dev/null 2>"$WORK/err" ||
    { cat "$WORK/err" >&2; exit 1; }
fi

KVER=$(basename "$(ls -1 /boot/vmlinuz-*-amd64 | sort -V | tail -1)" | sed 's/^vmlinuz-//')
if [ "$QUICK" = 0 ] && command -v mkinitramfs >/dev/null; then
  say "baseline: Debian mkinitramfs for $KVER"
  t0=$(date +%s.%N)
  mkinitramfs -o "$WORK/debian-initrd.img" "$KVER" 2>/dev/null
  t1=$(date +%s.%N)
  t_deb=$(echo "$t1 - $t0" | bc); s_deb=$(stat -c %s "$WORK/debian-initrd.img")
  record image_build_initrd baseline "$t_deb"
  record initramfs_bytes baseline "$s_deb"
fi

printf '\n%-58s %10s %12s\n' "kindling image build (kernel $KVER)" "time" "initramfs"
printf '%-58s %9.1fs %12s\n' "initramfs only, base image" "$t_initrd" "$(mib "$s_base")"
printf '%-58s %9.1fs %12s\n' "all formats (initramfs, ISO, UKI+disk, PXE), base image" "$t_full" "$(mib "$s_base")"
[ -n "${t_hashi:-}" ] && printf '%-58s %9.1fs %12s\n' "all formats, + bao (vault) + consul" "$t_hashi" "$(mib "$s_hashi")"
[ -n "${t_deb:-}" ] && printf '%-58s %9.1fs %12s\n' "baseline: Debian mkinitramfs (same kernel, MODULES=most)" "$t_deb" "$(mib "$s_deb")"
printf '%-58s %10s %12s\n' "shipped: ISO (base image)" "" "$(mib "$s_iso")"
printf '%-58s %10s %12s\n' "shipped: /init inside the initramfs (musl)" "" "$(mib "$s_init")"
printf '\nmedian of %s runs; base-image goal: initramfs < 20 MiB compressed; overlay: %s\n' "$RUNS" "$OVERLAY_NOTE"
