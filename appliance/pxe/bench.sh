#!/usr/bin/env bash
# PXE service benchmarks, each side by side with the tool people use today,
# measured in the same run on the same namespace setup:
#   DHCP  leases/s at ≤ 1 % loss with kea's perfdhcp: kindlingd pxe vs dnsmasq
#         --no-ping, 30000 distinct clients and 100 clients (a LAN-sized pool),
#         leases persisted (dnsmasq rewrites its lease file per lease; kindling
#         writes it, fsynced, before the ACKs it covers leave, one write per
#         batch); a bounded rate sweep per server finds the highest
#         perfdhcp -r that keeps the loss ≤ 1 % (see "DHCP" below)
#   HTTP  64 MiB file to 50 concurrent clients with wrk: kindlingd pxe vs nginx (+ RSS),
#         BENCH_HTTP_ROUNDS (3) alternating rounds, mean MB/s
#   TFTP  10 MiB file, blksize 1428, examples/tftp_get: kindlingd pxe vs tftpd-hpa,
#         lock-step on the bare veth, and windowsize 16 with 1 ms added RTT
#   FLOOD a legitimate client's (busybox udhcpc, 1 s retransmit) time to lease
#         during and after a DISCOVER flood from 2,000 random MACs sent by one
#         LAN host (perfdhcp -i -R 2000 -r BENCH_FLOOD_RATE for 8 s) against a
#         lab-sized pool of 101 addresses: kindlingd pxe vs dnsmasq --no-ping
#   PXE   time-to-kernel of a SeaBIOS+iPXE QEMU node (VM start → the payload's
#         first console line): kindlingd pxe vs dnsmasq + nginx serving the
#         same files to the same VM (BENCH_QEMU=0 skips; holds the QEMU lock)
#
#   appliance/pxe/bench.sh            (needs root; builds kindlingd --release if missing)
#   BENCH_SECS=10 appliance/pxe/bench.sh
#   BENCH_ONLY=http BENCH_QEMU=0 appliance/pxe/bench.sh   (one section: dhcp, flood, http, tftp or pxe)
#   BENCH_BIN=/path/to/kindlingd appliance/pxe/bench.sh   (another build, e.g. for an A/B)
#   BENCH_ONLY=dhcp BENCH_DHCP_STEP_SECS=1 BENCH_DHCP_CONFIRM=0 appliance/pxe/bench.sh   (a shorter sweep)
#
# With BENCH_RECORD=FILE every sample is also appended to FILE as
# "scenario<TAB>side<TAB>value" lines (tests/bench collects them).
#
# All traffic stays in two network namespaces this script creates (kp-b-srv,
# kp-b-cli, joined by a veth); everything it starts is stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SECS="${BENCH_SECS:-10}"
ONLY="${BENCH_ONLY:-}"
want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }
record() { if [ -n "${BENCH_RECORD:-}" ] && [[ "$3" =~ ^[0-9.]+$ ]]; then printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$BENCH_RECORD"; fi; }
BIN="${BENCH_BIN:-$ROOT/target/x86_64-unknown-linux-gnu/release/kindlingd}"
SRV=kp-b-srv CLI=kp-b-cli SIF=kpbs CIF=kpbc
LAN=10.10.0.1 CLIENT=10.10.0.2
[ "$(id -u)" = 0 ] || { echo "bench.sh: needs root (network namespaces)" >&2; exit 1; }
for tool in perfdhcp dnsmasq nginx wrk in.tftpd busybox; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool missing (tests/install-deps installs it)" >&2; exit 1; }
done
if [ ! -x "$BIN" ] || [ -n "${BENCH_REBUILD:-}" ]; then
  (cd "$ROOT" && cargo build --release --workspace --bins)
fi

WORK=$(mktemp -d /tmp/kp-bench.XXXXXX)
# nginx workers, dnsmasq and tftpd-hpa drop privileges: let them read (and
# dnsmasq write its lease file) here.
chmod 0755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  ip netns del "$SRV" 2>/dev/null || true
  ip netns del "$CLI" 2>/dev/null || true
  ip netns del kp-b-q 2>/dev/null || true
  for n in kp-b-f kp-b-fa kp-b-fc; do ip netns del "$n" 2>/dev/null || true; done
  [ -n "${BENCH_KEEP:-}" ] && echo "bench.sh: kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
in_srv() { ip netns exec "$SRV" "$@"; }
in_cli() { ip netns exec "$CLI" "$@"; }
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

ip netns add "$SRV"; ip netns add "$CLI"
ip link add "$SIF" netns "$SRV" type veth peer name "$CIF" netns "$CLI"
in_srv ip addr add "$LAN/16" dev "$SIF"; in_srv ip link set "$SIF" up; in_srv ip link set lo up
in_cli ip addr add "$CLIENT/16" dev "$CIF"; in_cli ip link set "$CIF" up; in_cli ip link set lo up

mkdir -p "$WORK"/{boot,artifacts,state,status,nginx,tftp}
head -c $((64 * 1024 * 1024)) /dev/urandom > "$WORK/artifacts/big64"
head -c $((10 * 1024 * 1024)) /dev/urandom > "$WORK/boot/big10"
cp "$WORK/artifacts/big64" "$WORK/nginx/big64"
cp "$WORK/boot/big10" "$WORK/tftp/big10"
chmod -R a+rX "$WORK"
cat > "$WORK/site.json" <<JSON
{"site": {"id": "bench"},
 "network": {"lan": {"address": "$LAN/16"}},
 "pxe": {"range": {"start": "10.10.1.0", "end": "10.10.254.254"}, "lease_secs": 3600,
         "router_advertisements": false, "http_port": 80}}
JSON

start_kindling() {
  rm -f "$WORK/status/pxe.json"
  # Started without a shell function in between, so $! is kindlingd itself
  # (ip netns exec execs it) and its RSS can be read from /proc.
  RUST_LOG=warn ip netns exec "$SRV" "$BIN" pxe --site "$WORK/site.json" --interface "$SIF" --boot-dir "$WORK/boot" \
    --artifacts-dir "$WORK/artifacts" --state-dir "$WORK/state" --status-file "$WORK/status/pxe.json" \
    >"$WORK/kindling.log" 2>&1 &
  KPID=$!; PIDS+=("$KPID")
  for _ in $(seq 50); do [ -s "$WORK/status/pxe.json" ] && return 0; sleep 0.1; done
  echo "bench.sh: kindlingd pxe did not start:"; cat "$WORK/kindling.log"; exit 1
}
rss_kb() { awk '/VmHWM/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# --- DHCP -------------------------------------------------------------------
# The scenario of issue 18: leases/s at ≤ 1 % loss. For each server and client
# count a bounded sweep finds the highest offered rate (perfdhcp -r) at which
# perfdhcp loses at most BENCH_DHCP_LOSS_PCT of its packets (DISCOVER and
# REQUEST drops over DISCOVERs and REQUESTs sent), and reports the leases/s
# (ACKs received per second) at that rate. Every step is one perfdhcp run of
# BENCH_DHCP_STEP_SECS against a freshly started server with an empty lease
# file, so a step does not inherit the previous step's leases, backlog or
# per-MAC rate-limit state; perfdhcp then waits as long as its drop time
# (1 s) for the last replies, so the end of a run is not counted as loss.
#   coarse: from BENCH_DHCP_START_RATE, double while the loss holds; on loss,
#           come down (halve, or to 90 % of the leases/s achieved if lower)
#           until it holds; at most BENCH_DHCP_COARSE runs
#   bisect: BENCH_DHCP_BISECT runs between the highest passing and the lowest
#           failing rate, at their geometric mean (the bracket can span a
#           factor of 4; the leases/s achieved above the limit is no bound:
#           an overloaded server can deliver fewer than at its limit); stops
#           early once they are within 5 %
#   repeat: BENCH_DHCP_CONFIRM more runs at the rate found; it must hold in
#           most of its runs (the sweep's and these), else the next lower
#           rate that held in the sweep is repeated instead (once). The runs
#           at the rate kept are the leases/s samples; the loss recorded is
#           their worst run's (a run over 1 % among them shows there)
DHCP_STEP_SECS="${BENCH_DHCP_STEP_SECS:-3}"
DHCP_LOSS_PCT="${BENCH_DHCP_LOSS_PCT:-1}"
DHCP_START_RATE="${BENCH_DHCP_START_RATE:-1000}"
DHCP_MAX_RATE="${BENCH_DHCP_MAX_RATE:-32000}"
DHCP_COARSE="${BENCH_DHCP_COARSE:-5}"
DHCP_BISECT="${BENCH_DHCP_BISECT:-3}"
DHCP_CONFIRM="${BENCH_DHCP_CONFIRM:-2}"
DHCP_DROP_SECS=1
udp67_bound() { in_srv ss -Hlun 'sport = :67' | grep -q .; }
forget() { local keep=() p; for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }
dhcp_start() { # SERVER: start it with no leases; sets DHCP_PID
  case $1 in
    kindling)
      rm -rf "$WORK/state"; mkdir -p "$WORK/state"
      start_kindling; DHCP_PID=$KPID ;;
    dnsmasq)
      rm -f "$WORK/dnsmasq.leases"
      ip netns exec "$SRV" dnsmasq --user=root --keep-in-foreground --port=0 --no-resolv --no-hosts --no-ping \
        --dhcp-authoritative --interface="$SIF" --bind-interfaces --dhcp-range=10.10.1.0,10.10.254.254,1h \
        --dhcp-lease-max=70000 --dhcp-leasefile="$WORK/dnsmasq.leases" --pid-file="$WORK/dnsmasq.pid" \
        --log-facility=/dev/null &
      DHCP_PID=$!; PIDS+=("$DHCP_PID")
      for _ in $(seq 50); do udp67_bound && return 0; sleep 0.1; done
      echo "bench.sh: dnsmasq did not bind port 67" >&2; exit 1 ;;
  esac
}
dhcp_step() { # SERVER CLIENTS RATE: one run; sets STEP_LEASES (per s) and STEP_LOSS (%), logs a line
  local log="$WORK/perfdhcp.$1-$2-$3.log"
  dhcp_start "$1"
  in_cli perfdhcp -4 -l "$CIF" -r "$3" -R "$2" -p "$DHCP_STEP_SECS" -d "$DHCP_DROP_SECS" \
    -W "$((DHCP_DROP_SECS * 1000000))" >"$log" 2>&1 || true   # exit 3: some packet was dropped
  stop "$DHCP_PID"; forget "$DHCP_PID"
  # No statistics (perfdhcp failed) counts as 100 % loss; its log says why.
  read -r STEP_LEASES STEP_LOSS < <(awk -v secs="$DHCP_STEP_SECS" '
    /Statistics for: REQUEST-ACK/ { ra = 1 }
    /^sent packets:/ { sent += $3 }
    /^drops:/ { drops += $2 }
    ra && /^received packets:/ { acks = $3 }
    END { if (sent) printf "%.0f %.2f\n", acks / secs, 100 * drops / sent; else print "0 100" }' "$log")
  printf '  %-8s %5s clients  -r %-6s %6s leases/s  loss %6s %%\n' "$1" "$2" "$3" "$STEP_LEASES" "$STEP_LOSS" \
    | tee -a "$WORK/dhcp-sweep.log" >&2
}
loss_ok() { awk -v l="$1" -v max="$DHCP_LOSS_PCT" 'BEGIN { exit !(l <= max) }'; }
dhcp_sweep() { # SERVER CLIENTS KEY SIDE: records KEY (per run) and KEY_loss_pct (worst run); sets SWEEP ("RATE LEASES_PER_S", rate 0: none held)
  local server=$1 clients=$2 key=$3 side=$4 r=$DHCP_START_RATE lo=0 hi=0 n=0 down last
  local -A pass_leases=() pass_loss=()   # the sweep's run at each rate that held
  held() { pass_leases[$r]=$STEP_LEASES; pass_loss[$r]=$STEP_LOSS; lo=$r; }
  while [ "$n" -lt "$DHCP_COARSE" ]; do
    dhcp_step "$server" "$clients" "$r"; n=$((n + 1)); last=$r
    if loss_ok "$STEP_LOSS"; then
      held
      [ "$hi" -gt 0 ] && break
      r=$((r * 2)); [ "$r" -le "$DHCP_MAX_RATE" ] || break
    else
      hi=$r
      [ "$lo" -gt 0 ] && break
      down=$(awk -v r="$r" -v l="$STEP_LEASES" 'BEGIN { d = r / 2; if (0.9 * l < d) d = 0.9 * l; if (d < r / 4) d = r / 4; printf "%d", d }')
      [ "$down" -ge 1 ] || break
      r=$down
    fi
  done
  n=0
  while [ "$n" -lt "$DHCP_BISECT" ] && [ "$lo" -gt 0 ] && [ "$hi" -gt 0 ] && [ $((hi - lo)) -gt $((lo / 20)) ]; do
    r=$(awk -v lo="$lo" -v hi="$hi" 'BEGIN { printf "%d", sqrt(lo * hi) }')
    dhcp_step "$server" "$clients" "$r"; n=$((n + 1))
    if loss_ok "$STEP_LOSS"; then held; else hi=$r; fi
  done
  if [ "$lo" = 0 ]; then
    printf '  %-8s %5s clients  no rate held ≤ %s %% loss (lowest tried: -r %s)\n' "$server" "$clients" "$DHCP_LOSS_PCT" "$last" \
      | tee -a "$WORK/dhcp-sweep.log" >&2
    record "$key" "$side" 0
    SWEEP="0 0"; return
  fi
  # The rate found must hold in most of its runs (the sweep's and the
  # repeats); if not, the next lower rate that held gets the same test, once.
  local tries=0 leases losses ok sum i
  while :; do
    leases=("${pass_leases[$lo]}") losses=("${pass_loss[$lo]}") ok=1
    for _ in $(seq "$DHCP_CONFIRM"); do
      dhcp_step "$server" "$clients" "$lo"
      leases+=("$STEP_LEASES"); losses+=("$STEP_LOSS"); loss_ok "$STEP_LOSS" && ok=$((ok + 1))
    done
    tries=$((tries + 1))
    [ $((ok * 2)) -gt "${#losses[@]}" ] && break
    down=0
    for r in "${!pass_leases[@]}"; do [ "$r" -lt "$lo" ] && [ "$r" -gt "$down" ] && down=$r; done
    if [ "$tries" -ge 2 ] || [ "$down" = 0 ]; then break; fi
    printf '  %-8s %5s clients  -r %s held in %s of %s runs: down to -r %s\n' "$server" "$clients" "$lo" "$ok" \
      "${#losses[@]}" "$down" | tee -a "$WORK/dhcp-sweep.log" >&2
    lo=$down
  done
  sum=0
  for i in "${!leases[@]}"; do record "$key" "$side" "${leases[$i]}"; sum=$((sum + leases[i])); done
  # The worst run's loss: a median would hide the one run that did not hold.
  record "${key}_loss_pct" "$side" "$(printf '%s\n' "${losses[@]}" | sort -g | tail -1)"
  SWEEP="$lo $((sum / ${#leases[@]}))"
  printf '  %-8s %5s clients  → -r %s: %s leases/s (mean of %s runs at that rate, %s of them ≤ %s %% loss)\n' "$server" "$clients" \
    "$lo" "$((sum / ${#leases[@]}))" "${#leases[@]}" "$ok" "$DHCP_LOSS_PCT" | tee -a "$WORK/dhcp-sweep.log" >&2
}
k_dhcp="skipped -" k_dhcp_small="skipped -" d_dhcp="skipped -" d_dhcp_small="skipped -"
if want dhcp; then
  : > "$WORK/dhcp-sweep.log"
  dhcp_sweep kindling 30000 dhcp_30k kindling; k_dhcp=$SWEEP
  dhcp_sweep dnsmasq 30000 dhcp_30k baseline; d_dhcp=$SWEEP
  dhcp_sweep kindling 100 dhcp_100 kindling; k_dhcp_small=$SWEEP
  dhcp_sweep dnsmasq 100 dhcp_100 baseline; d_dhcp_small=$SWEEP
fi

# --- DISCOVER flood -----------------------------------------------------------
# Server, attacker and client each in their own namespace on one bridge.
k_fd=skipped k_fa=skipped d_fd=skipped d_fa=skipped
FLOOD_RATE="${BENCH_FLOOD_RATE:-2000}"
if want flood; then
  F=kp-b-f FA=kp-b-fa FC=kp-b-fc
  for n in $F $FA $FC; do ip netns add $n; ip -n $n link set lo up; done
  ip -n $F link add kpbfbr type bridge; ip -n $F addr add 192.168.100.1/24 dev kpbfbr; ip -n $F link set kpbfbr up
  for h in a c; do ns=$FA; [ $h = c ] && ns=$FC
    ip link add kpbf$h netns $F type veth peer name eth0 netns $ns
    ip -n $F link set kpbf$h master kpbfbr up; ip -n $ns link set eth0 up
  done
  ip -n $FA addr add 192.168.100.250/24 dev eth0
  mkdir -p "$WORK/f/state" "$WORK/f/boot" "$WORK/f/art"
  cat > "$WORK/f/site.json" <<JSON
{"site": {"id": "bench"}, "pxe": {"range": {"start": "192.168.100.100", "end": "192.168.100.200"},
 "router_advertisements": false}}
JSON
  lease_secs() { # MAC → seconds until udhcpc has a lease ("fail" after 30 tries)
    ip -n $FC link set eth0 address "$1"
    local t0 t1; t0=$(date +%s.%N)
    if in_ns $FC busybox udhcpc -i eth0 -n -q -f -t 30 -T 1 -s /bin/true >/dev/null 2>&1; then
      t1=$(date +%s.%N); awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.2f", a - b }'
    else echo fail; fi
  }
  flood_run() { # → "during after" lease times with a flood running against the started server
    in_ns $FA perfdhcp -4 -l eth0 -i -R 2000 -r "$FLOOD_RATE" -p 8 >"$WORK/f/perfdhcp.$1.log" 2>&1 &
    local fp=$!; PIDS+=("$fp"); sleep 2
    local during; during=$(lease_secs 52:54:00:6b:0f:01)
    wait "$fp" 2>/dev/null || true
    echo "$during $(lease_secs 52:54:00:6b:0f:02)"
  }
  in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
  RUST_LOG=warn ip netns exec $F "$BIN" pxe --site "$WORK/f/site.json" --interface kpbfbr --boot-dir "$WORK/f/boot" \
    --artifacts-dir "$WORK/f/art" --state-dir "$WORK/f/state" --status-file "$WORK/f/pxe.json" >"$WORK/f/kindling.log" 2>&1 &
  FK=$!; PIDS+=("$FK"); sleep 1
  read -r k_fd k_fa <<<"$(flood_run kindling)"
  record dhcp_flood_lease_s kindling "$k_fd"
  stop "$FK"
  ip netns exec $F dnsmasq --user=root --keep-in-foreground --port=0 --no-resolv --no-hosts --no-ping --dhcp-authoritative \
    --interface=kpbfbr --bind-interfaces --dhcp-range=192.168.100.100,192.168.100.200,1h \
    --dhcp-leasefile="$WORK/f/dnsmasq.leases" --log-facility=/dev/null &
  FD=$!; PIDS+=("$FD"); sleep 0.5
  read -r d_fd d_fa <<<"$(flood_run dnsmasq)"
  record dhcp_flood_lease_s baseline "$d_fd"
  stop "$FD"
  for n in $F $FA $FC; do ip netns del $n; done
fi

# --- HTTP -------------------------------------------------------------------
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 1024; }
http {
  access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  server { listen $LAN:8080; root $WORK/nginx; }
}
NGINX
k_http=0 n_http=0 k_rss=0 n_rss=0 k_cpu=skipped n_cpu=skipped
HTTP_ROUNDS="${BENCH_HTTP_ROUNDS:-3}"
CONNS="${BENCH_HTTP_CONNS:-50}"
if want http; then
wrk_rate() { in_cli wrk -t 2 -c "$CONNS" -d "${SECS}s" --timeout 60s --latency "$1" > "$WORK/wrk.last" 2>&1
  cat "$WORK/wrk.last" >> "$WORK/wrk.log"; awk '/Transfer\/sec/{print $2}' "$WORK/wrk.last"; }
p99_ms() { # wrk --latency's "99%  1.23s" → milliseconds
  awk '$1 == "99%" { v = $2; n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000; printf "%.1f", n }' "$WORK/wrk.last"; }
mb() { # wrk's "123.45MB" / "1.2GB" → MB
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /GB/) n *= 1024; if (v ~ /KB/) n /= 1024; printf "%.1f", n }'
}
# The servers take turns, round after round, so load from other work on the
# host lands on both; the table shows the mean of the rounds.
# CPU seconds (user + system) a process and its children have used so far.
cpu_secs() {
  local t=0 p
  for p in $(pgrep -P "$1" 2>/dev/null) "$1"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}
k_sum=0 n_sum=0 k_cpu=0 n_cpu=0 HTTP_ROUND_LINES=""
for round in $(seq "$HTTP_ROUNDS"); do
  start_kindling
  c0=$(cpu_secs "$KPID")
  k=$(mb "$(wrk_rate "http://$LAN/artifacts/big64")"); record http_p99_ms kindling "$(p99_ms)"
  kc=$(awk -v a="$(cpu_secs "$KPID")" -v b="$c0" 'BEGIN { printf "%.2f", a - b }')
  r=$(rss_kb "$KPID"); [ "$r" -gt "$k_rss" ] && k_rss=$r
  stop "$KPID"   # each server is measured alone
  ip netns exec "$SRV" nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
  NPID=$!; PIDS+=("$NPID"); sleep 0.5
  c0=$(cpu_secs "$NPID")
  n=$(mb "$(wrk_rate "http://$LAN:8080/big64")"); record http_p99_ms baseline "$(p99_ms)"
  nc=$(awk -v a="$(cpu_secs "$NPID")" -v b="$c0" 'BEGIN { printf "%.2f", a - b }')
  r=0
  for p in $(pgrep -P "$NPID" 2>/dev/null) "$NPID"; do r=$((r + $(rss_kb "$p"))); done
  [ "$r" -gt "$n_rss" ] && n_rss=$r
  stop "$NPID"
  record http_mbs kindling "$k"; record http_mbs baseline "$n"
  record http_cpu_s_per_gb kindling "$(awk -v c="$kc" -v r="$k" -v s="$SECS" 'BEGIN { if (r > 0) printf "%.4f", c / (r * s / 1024) }')"
  record http_cpu_s_per_gb baseline "$(awk -v c="$nc" -v r="$n" -v s="$SECS" 'BEGIN { if (r > 0) printf "%.4f", c / (r * s / 1024) }')"
  k_sum=$(awk -v a="$k_sum" -v b="$k" 'BEGIN { print a + b }')
  n_sum=$(awk -v a="$n_sum" -v b="$n" 'BEGIN { print a + b }')
  # Server CPU per GB sent: what each byte costs the box, beside the rate.
  k_cpu=$(awk -v a="$k_cpu" -v c="$kc" -v r="$k" -v s="$SECS" 'BEGIN { print a + c / (r * s / 1024) }')
  n_cpu=$(awk -v a="$n_cpu" -v c="$nc" -v r="$n" -v s="$SECS" 'BEGIN { print a + c / (r * s / 1024) }')
  HTTP_ROUND_LINES+=$(printf '  HTTP round %s: kindlingd %s MB/s (%s CPU s), nginx %s MB/s (%s CPU s), ratio %s' "$round" "$k" "$kc" "$n" "$nc" \
    "$(awk -v a="$k" -v b="$n" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }')")$'\n'
done
k_cpu=$(awk -v s="$k_cpu" -v n="$HTTP_ROUNDS" 'BEGIN { printf "%.2f", s / n }')
n_cpu=$(awk -v s="$n_cpu" -v n="$HTTP_ROUNDS" 'BEGIN { printf "%.2f", s / n }')
k_http=$(awk -v s="$k_sum" -v n="$HTTP_ROUNDS" 'BEGIN { printf "%.1f", s / n }')
n_http=$(awk -v s="$n_sum" -v n="$HTTP_ROUNDS" 'BEGIN { printf "%.1f", s / n }')
record http_rss_mib kindling "$(awk -v k="$k_rss" 'BEGIN { printf "%.1f", k / 1024 }')"
record http_rss_mib baseline "$(awk -v k="$n_rss" 'BEGIN { printf "%.1f", k / 1024 }')"
fi

# --- TFTP -------------------------------------------------------------------
# One client for every row (examples/tftp_get: it can ask for an RFC 7440
# window, busybox and curl cannot), blksize 1428 throughout. Lock-step on the
# bare veth (CPU-bound), then with 1 ms added to the round trip (RTT-bound, as
# on a real LAN): windowsize 16 against lock-step and against tftpd-hpa asked
# for the same window (it does not support the option and answers
# lock-step). The client holds each ACK for the added delay: the same effect
# on the transfer as `tc netem delay` on its link, and it works on kernels
# without sch_netem.
k_tftp=skipped t_tftp=skipped k_tftp_w=skipped t_tftp_w=skipped k_tftp_d=skipped
TFTP_REPEATS="${BENCH_TFTP_REPEATS:-3}"
TFTP_DELAY_MS="${BENCH_TFTP_DELAY_MS:-1}"
if want tftp; then
# With the workspace's features: `-p kindling-pxe` alone would rebuild its
# dependencies with a different feature set on every benchmark run.
(cd "$ROOT" && cargo build --release -q --workspace --examples)
TFTP_GET="$ROOT/target/x86_64-unknown-linux-gnu/release/examples/tftp_get"
start_kindling
ip netns exec "$SRV" in.tftpd -L -a "$LAN:6969" -s "$WORK/tftp" &
TPID=$!; PIDS+=("$TPID"); sleep 0.3
tftp_mbs() { # NAME PORT WINDOW|- DELAY_MS → MB/s of each repeat recorded; prints the best
  local name=$1 port=$2 best=0 line secs bytes
  for _ in $(seq "$TFTP_REPEATS"); do
    line=$(in_cli "$TFTP_GET" "$LAN:$port" big10 1428 "$3" "$4") || { echo "bench.sh: tftp $name failed" >&2; echo 0; return; }
    read -r secs bytes _ <<<"$line"
    [ "$bytes" = $((10 * 1024 * 1024)) ] || { echo "bench.sh: tftp $name got $bytes bytes" >&2; echo 0; return; }
    local mbs; mbs=$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.2f", b / 1048576 / s }')
    echo "$line" >> "$WORK/tftp.$name.log"
    case $name in
      k-lock) record tftp_lockstep kindling "$mbs" ;;
      t-lock) record tftp_lockstep baseline "$mbs" ;;
      k-win) record tftp_window16 kindling "$mbs"; record tftp_window16_vs_lockstep kindling "$mbs" ;;
      t-win) record tftp_window16 baseline "$mbs" ;;
      k-delay) record tftp_window16_vs_lockstep baseline "$mbs" ;;
    esac
    best=$(awk -v a="$mbs" -v b="$best" 'BEGIN { print (a > b) ? a : b }')
  done
  echo "$best"
}
k_tftp=$(tftp_mbs k-lock 69 - 0)
t_tftp=$(tftp_mbs t-lock 6969 - 0)
k_tftp_w=$(tftp_mbs k-win 69 16 "$TFTP_DELAY_MS")
t_tftp_w=$(tftp_mbs t-win 6969 16 "$TFTP_DELAY_MS")
k_tftp_d=$(tftp_mbs k-delay 69 - "$TFTP_DELAY_MS")
stop "$KPID"
stop "$TPID"
fi

# --- PXE time-to-kernel in QEMU ----------------------------------------------
k_ttk="skipped" b_ttk="skipped"
if [ "${BENCH_QEMU:-1}" != 0 ] && want pxe && command -v qemu-system-x86_64 >/dev/null; then
  LAB="$ROOT/target/x86_64-unknown-linux-gnu/release/kindling-lab"
  [ -x "$LAB" ] || LAB="$ROOT/target/x86_64-unknown-linux-gnu/debug/kindling-lab"
  [ -x "$LAB" ] || { (cd "$ROOT" && cargo build -p kindling-lab); }
  mkdir -p "$WORK/q/art" "$WORK/q/state" "$WORK/q/www"
  "$LAB" payload --out "$WORK/q/art" >/dev/null
  cp "$WORK/q/art/vmlinuz" "$WORK/q/art/lab-node.cpio.zst" "$WORK/q/www/"
  chmod -R a+rX "$WORK/q"
  Q=kp-b-q BR=kpbqbr TAP=kpbqtap MAC=52:54:00:6b:00:10
  ip netns add "$Q"
  ip netns exec "$Q" sh -ec "ip link set lo up; ip link add $BR type bridge; sysctl -qw net.ipv6.conf.$BR.accept_dad=0
    ip addr add 192.168.100.1/24 dev $BR; ip tuntap add $TAP mode tap; ip link set $TAP master $BR; ip link set $TAP up; ip link set $BR up"
  CMDLINE="console=ttyS0 quiet kindling.nat_probe=off"
  cat > "$WORK/q/site.json" <<JSON
{"site": {"id": "bench"}, "pxe": {"default_profile": "dev"},
 "profiles": {"dev": {"name": "dev", "boot": {"kind": "linux", "kernel": "vmlinuz",
   "initrd": ["lab-node.cpio.zst"], "cmdline": "$CMDLINE"}}}}
JSON
  # The same script kindling renders, served by nginx for the baseline.
  printf '#!ipxe\nkernel http://192.168.100.1:8080/vmlinuz initrd=lab-node.cpio.zst %s kindling.url=http://192.168.100.1:8080/ kindling.mac=%s\ninitrd http://192.168.100.1:8080/lab-node.cpio.zst\nboot\n' \
    "$CMDLINE" "$MAC" > "$WORK/q/www/boot.ipxe"
  boot_vm() { # → seconds from VM start to the payload's first line
    local serial="$WORK/q/serial.$1" t0 t
    : > "$serial"
    t0=$(date +%s.%N)
    rm -f "$WORK/q/qemu.pid"
    timeout 180 ip netns exec "$Q" qemu-system-x86_64 -machine pc,accel=tcg -m 256 \
      -nographic -no-reboot -boot n -monitor none -serial "file:$serial" -pidfile "$WORK/q/qemu.pid" \
      -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" -device "e1000,netdev=n0,mac=$MAC" >/dev/null 2>&1 &
    local vm=$! result=timeout
    for _ in $(seq 1800); do
      if grep -aq "kindling-node: booted" "$serial"; then
        t=$(date +%s.%N); result=$(awk -v a="$t" -v b="$t0" 'BEGIN { printf "%.1f", a - b }'); break
      fi
      sleep 0.1
    done
    # Stop QEMU itself (by its pidfile), then its flock/timeout wrappers.
    [ -s "$WORK/q/qemu.pid" ] && kill "$(cat "$WORK/q/qemu.pid")" 2>/dev/null
    wait "$vm" 2>/dev/null || true
    echo "$result"
  }
  RUST_LOG=warn ip netns exec "$Q" "$BIN" pxe --site "$WORK/q/site.json" --interface "$BR" --boot-dir /usr/lib/ipxe \
    --artifacts-dir "$WORK/q/art" --state-dir "$WORK/q/state" --status-file "$WORK/q/pxe.json" >"$WORK/q/kindling.log" 2>&1 &
  QK=$!; PIDS+=("$QK"); sleep 1
  # One VM at a time, under the machine-wide QEMU lock (taken before the
  # clock starts, so waiting for other users' VMs is not measured).
  exec 9>/tmp/kindling-qemu.lock
  flock 9
  k_ttk=$(boot_vm kindling); record pxe_ttk_bios kindling "$k_ttk"
  stop "$QK"
  cat > "$WORK/q/nginx.conf" <<NGINX
worker_processes 2;
pid $WORK/q/nginx.pid;
error_log $WORK/q/nginx.err;
events { worker_connections 64; }
http {
  access_log off; sendfile on;
  client_body_temp_path $WORK/q; proxy_temp_path $WORK/q; fastcgi_temp_path $WORK/q;
  uwsgi_temp_path $WORK/q; scgi_temp_path $WORK/q;
  server { listen 192.168.100.1:8080; root $WORK/q/www; }
}
NGINX
  ip netns exec "$Q" nginx -c "$WORK/q/nginx.conf" -g 'daemon off;' &
  QN=$!; PIDS+=("$QN")
  # dnsmasq as commonly configured for iPXE chainloading (defaults otherwise).
  ip netns exec "$Q" dnsmasq --user=root --keep-in-foreground --port=0 --no-resolv --no-hosts --interface="$BR" --bind-interfaces \
    --dhcp-range=192.168.100.100,192.168.100.200,1h --dhcp-userclass=set:ipxe,iPXE \
    --dhcp-boot=tag:ipxe,http://192.168.100.1:8080/boot.ipxe --dhcp-boot=tag:!ipxe,undionly.kpxe \
    --enable-tftp --tftp-root=/usr/lib/ipxe --dhcp-leasefile="$WORK/q/dnsmasq.leases" --log-facility=/dev/null &
  QD=$!; PIDS+=("$QD"); sleep 1
  b_ttk=$(boot_vm baseline); record pxe_ttk_bios baseline "$b_ttk"
  flock -u 9
  stop "$QD"; stop "$QN"
  ip netns del "$Q" 2>/dev/null || true
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
to_mb() { # wrk's "123.45MB" / "1.2GB" → MB
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /GB/) n *= 1024; if (v ~ /KB/) n /= 1024; printf "%.1f", n }'
}
k_mb=$(to_mb "$k_http"); n_mb=$(to_mb "$n_http")
echo
echo "kindling PXE benchmarks ($SECS s per run, netns veth, $(nproc) cores)"
printf '%-38s %14s %14s %8s %s\n' "measure" "kindlingd pxe" "baseline" "ratio" "baseline tool"
dhcp_row() { # TITLE "RATE LEASES" (kindling) "RATE LEASES" (dnsmasq)
  local kr kl dr dl; read -r kr kl <<<"$2"; read -r dr dl <<<"$3"
  printf '%-38s %14s %14s %8s %s\n' "$1" "$kl" "$dl" "$(ratio "$kl" "$dl")" "dnsmasq (--no-ping); -r $kr vs $dr"
}
dhcp_row "DHCP leases/s ≤${DHCP_LOSS_PCT}% loss, 30000 clients" "$k_dhcp" "$d_dhcp"
dhcp_row "DHCP leases/s ≤${DHCP_LOSS_PCT}% loss, 100 clients" "$k_dhcp_small" "$d_dhcp_small"
printf '%-38s %14s %14s %8s %s\n' "lease during 2000-MAC flood, s" "$k_fd" "$d_fd" "$(ratio "$k_fd" "$d_fd")" "dnsmasq (--no-ping), same flood"
printf '%-38s %14s %14s %8s %s\n' "lease after 2000-MAC flood, s" "$k_fa" "$d_fa" "$(ratio "$k_fa" "$d_fa")" "dnsmasq (--no-ping), same flood"
printf '%-38s %14s %14s %8s %s\n' "HTTP 64 MiB x ${CONNS:-50} clients, MB/s (mean)" "$k_mb" "$n_mb" "$(ratio "$k_mb" "$n_mb")" "nginx sendfile, 2 workers"
printf '%-38s %14s %14s %8s %s\n' "HTTP server CPU s per GB sent (mean)" "$k_cpu" "$n_cpu" "$(ratio "$k_cpu" "$n_cpu")" "(lower is better)"
printf '%-38s %14s %14s %8s %s\n' "HTTP peak RSS, MiB" "$((k_rss / 1024))" "$((n_rss / 1024))" "" "(nginx: master+workers)"
printf '%-38s %14s %14s %8s %s\n' "PXE time-to-kernel (QEMU TCG), s" "$k_ttk" "$b_ttk" "$(ratio "$k_ttk" "$b_ttk")" "dnsmasq + nginx, no RA"
printf '%-38s %14s %14s %8s %s\n' "TFTP 10 MiB lock-step, MB/s (best)" "$k_tftp" "$t_tftp" "$(ratio "$k_tftp" "$t_tftp")" "tftpd-hpa, blksize 1428"
printf '%-38s %14s %14s %8s %s\n' "TFTP windowsize 16, +${TFTP_DELAY_MS} ms RTT, MB/s" "$k_tftp_w" "$t_tftp_w" "$(ratio "$k_tftp_w" "$t_tftp_w")" "tftpd-hpa asked for the same window"
printf '%-38s %14s %14s %8s %s\n' "TFTP windowsize 16 vs lock-step, MB/s" "$k_tftp_w" "$k_tftp_d" "$(ratio "$k_tftp_w" "$k_tftp_d")" "kindlingd lock-step, same delay"
printf '%s' "${HTTP_ROUND_LINES:-}"
