#!/usr/bin/env bash
# Benchmarks the network service (`kindlingd net`) in network namespaces this
# script creates (prefix kn-bench-) and prints one table:
#   1. network phase start -> LAN ready (uplink lease not included):
#      kindlingd net vs. a shell script doing the same with `ip`, `sysctl`
#      and `nft -f` (same addresses, same ruleset), measured in the same run.
#   2. NAT throughput (iperf3, TCP) from a node behind the LAN to the upstream
#      namespace through the appliance namespace with kindling's ruleset, vs.
#      the same namespaces plainly routed (no nftables, no conntrack).
#
#   appliance/net/bench.sh [--runs N] [--seconds S]   (defaults: 10 runs, 5 s iperf3)
# Needs root. Everything it creates is removed on exit, also on failure.
# With BENCH_RECORD=FILE every sample is also appended to FILE as
# "scenario<TAB>side<TAB>value" lines (tests/bench collects them).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
RUNS=10
SECS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --seconds) SECS="$2"; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--seconds S]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench: needs root (network namespaces)" >&2; exit 1; }
for tool in ip iperf3 nft; do
  command -v "$tool" >/dev/null || { echo "bench: $tool missing (tests/install-deps installs it)" >&2; exit 1; }
done

BIN="$ROOT/target/x86_64-unknown-linux-gnu/release/kindlingd"
WORK=$(mktemp -d /tmp/kindling-net-bench.XXXXXX)
NS_APP=kn-bench-app NS_UP=kn-bench-up NS_NODE=kn-bench-node
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  for ns in $NS_APP $NS_UP $NS_NODE; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { printf 'bench: %s\n' "$*" >&2; }
now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
minmax() { sort -n | awk 'NR==1{min=$1} {max=$1} END {printf "%s %s", min, max}'; }

# The workspace build, as tests/bench and the image use: `-p kindlingd` alone
# unifies other features, relinks a different kindlingd over the shipped one
# and took most of this part's time.
say "building kindlingd (release, workspace features)"
cargo build --release -q --workspace --bins

# Static uplink, so "LAN ready" never depends on a DHCP server; same for both.
cat > "$WORK/site.json" <<'JSON'
{"site": {"id": "bench"},
 "network": {"uplink": {"match": {"mac": "52:54:00:6b:00:01"}, "mode": "static",
                        "address": "10.99.2.2/24", "gateway": "10.99.2.1"},
             "lan": {"match": {"mac": "52:54:00:6b:00:02"}, "address": "192.168.100.1/24"}}}
JSON

# The ruleset kindlingd installs (table inet kindling), written for nft -f.
cat > "$WORK/ruleset.nft" <<'NFT'
table inet kindling {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iifname "lo" accept
    meta l4proto icmp accept
    meta l4proto ipv6-icmp accept
    iifname "lan0" udp dport 67 accept
    iifname "lan0" udp dport 69 accept
    iifname "lan0" tcp dport 80 accept
    iifname "lan0" udp dport 53 accept
    iifname "lan0" tcp dport 53 accept
    iifname "lan0" tcp dport 9000 accept
    iifname "lan0" counter drop
    iifname "up0" udp sport 67 udp dport 68 accept
    iifname "up0" counter drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related counter accept
    iifname "lan0" oifname "up0" counter accept
    iifname "up0" oifname "lan0" counter drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 192.168.100.0/24 oifname "up0" counter masquerade
  }
}
NFT

# Three namespaces: upstream 10.99.2.1 -- appliance (up0, lan0) -- node 192.168.100.50.
topology() {
  for ns in $NS_APP $NS_UP $NS_NODE; do ip netns del "$ns" 2>/dev/null || true; ip netns add "$ns"; ip -n "$ns" link set lo up; done
  ip -n $NS_APP link add up0 address 52:54:00:6b:00:01 type veth peer name up0p netns $NS_UP
  ip -n $NS_APP link add lan0 address 52:54:00:6b:00:02 type veth peer name eth0 netns $NS_NODE
  ip -n $NS_UP link set up0p up
  ip -n $NS_UP addr add 10.99.2.1/24 dev up0p
  ip -n $NS_NODE link set eth0 up
  ip -n $NS_NODE addr add 192.168.100.50/24 dev eth0
  ip -n $NS_NODE route add default via 192.168.100.1
}

# What a shell script does for the same "LAN ready" point: LAN link and
# address, forwarding, the ruleset (the DNS forwarder has no equivalent here).
ip_bringup() {
  ip -n $NS_APP link set lan0 up
  ip -n $NS_APP addr add 192.168.100.1/24 dev lan0
  ip netns exec $NS_APP sysctl -qw net.ipv4.ip_forward=1
  ip netns exec $NS_APP nft -f "$WORK/ruleset.nft"
}

# Starts kindlingd net in the appliance namespace; sets READY_US to the
# wall-clock µs from spawn to its "ready" line and leaves it running (PID in
# KINDLINGD_PID). Runs in the main shell: a command substitution would wait
# for the daemon's stdout to close.
start_kindlingd() {
  local fifo="$WORK/notify" start end
  rm -f "$fifo"; mkfifo "$fifo"
  start=$(now_ns)
  KINDLING_NOTIFY_FD=3 ip netns exec $NS_APP "$BIN" net --site "$WORK/site.json" \
    --status "$WORK/net.json" --status-interval-ms 200 --include-virtual-nics 3>"$fifo" >/dev/null 2>>"$WORK/kindlingd.log" &
  KINDLINGD_PID=$!
  PIDS+=("$KINDLINGD_PID")
  local line=""
  read -r -t 10 line < "$fifo" || true
  end=$(now_ns)
  [ "$line" = ready ] || { say "kindlingd did not signal ready; log:"; cat "$WORK/kindlingd.log" >&2; exit 1; }
  READY_US=$(( (end - start) / 1000 ))
}
stop_kindlingd() { kill "$KINDLINGD_PID"; wait "$KINDLINGD_PID" 2>/dev/null || true; }

say "phase timing: $RUNS runs each"
: > "$WORK/k_wall"; : > "$WORK/k_inproc"; : > "$WORK/ip_wall"
for _ in $(seq "$RUNS"); do
  topology
  start_kindlingd
  echo "$READY_US" >> "$WORK/k_wall"
  # The service's own measurement: from its start to LAN configured.
  for _ in $(seq 50); do [ -s "$WORK/net.json" ] && break; sleep 0.05; done
  grep -o '"lan_ready_us": [0-9]*' "$WORK/net.json" | awk '{print $2}' >> "$WORK/k_inproc"
  stop_kindlingd
  rm -f "$WORK/net.json"
  topology
  start=$(now_ns); ip_bringup; end=$(now_ns)
  echo $(( (end - start) / 1000 )) >> "$WORK/ip_wall"
done

iperf() { # prints receiver Mbit/s of one TCP run node -> upstream
  ip netns exec $NS_NODE iperf3 -c 10.99.2.1 -t "$SECS" -J 2>/dev/null |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6))'
}
start_iperf_server() {
  ip netns exec $NS_UP iperf3 -s -1 -B 10.99.2.1 >/dev/null 2>&1 &
  PIDS+=("$!")
  sleep 0.3
}

say "NAT throughput: kindlingd net ruleset, ${SECS}s iperf3, 2 runs"
topology
start_kindlingd
start_iperf_server; nat1=$(iperf)
start_iperf_server; nat2=$(iperf)
masq=$(grep -A2 '"nat_masquerade"' "$WORK/net.json" | grep -o '"packets": [0-9]*' | awk '{print $2}' || true)
stop_kindlingd

say "plain routing (no nftables, no NAT), same namespaces, 2 runs"
topology
ip -n $NS_APP link set lan0 up; ip -n $NS_APP addr add 192.168.100.1/24 dev lan0
ip -n $NS_APP link set up0 up;  ip -n $NS_APP addr add 10.99.2.2/24 dev up0
ip netns exec $NS_APP sysctl -qw net.ipv4.ip_forward=1
ip -n $NS_UP route add 192.168.100.0/24 via 10.99.2.2
start_iperf_server; plain1=$(iperf)
start_iperf_server; plain2=$(iperf)

if [ -n "${BENCH_RECORD:-}" ]; then
  awk '{printf "net_lan_ready\tkindling\t%.3f\n", $1 / 1000}' "$WORK/k_wall" >> "$BENCH_RECORD"
  awk '{printf "net_lan_ready\tbaseline\t%.3f\n", $1 / 1000}' "$WORK/ip_wall" >> "$BENCH_RECORD"
  printf 'net_nat_mbits\tkindling\t%s\n' "$nat1" "$nat2" >> "$BENCH_RECORD"
  printf 'net_nat_mbits\tbaseline\t%s\n' "$plain1" "$plain2" >> "$BENCH_RECORD"
fi
k_med=$(median < "$WORK/k_wall"); k_in=$(median < "$WORK/k_inproc"); ip_med=$(median < "$WORK/ip_wall")
nat_best=$(( nat1 > nat2 ? nat1 : nat2 )); plain_best=$(( plain1 > plain2 ? plain1 : plain2 ))
ms() { awk -v us="$1" 'BEGIN {printf "%.1f", us / 1000}'; }
range_ms() { awk '{printf "%.1f..%.1f", $1/1000, $2/1000}'; }

printf '\n%-58s %12s %16s\n' "measurement ($RUNS runs, $(nproc) cores)" "median" "min..max"
printf '%-58s %9s ms %16s\n' "kindlingd net: service start -> LAN ready (in-process)" "$(ms "$k_in")" "$(minmax < "$WORK/k_inproc" | range_ms)"
printf '%-58s %9s ms %16s\n' "kindlingd net: spawn -> \"ready\" on notify fd (wall)" "$(ms "$k_med")" "$(minmax < "$WORK/k_wall" | range_ms)"
printf '%-58s %9s ms %16s\n' "baseline: ip/sysctl/nft -f, same config (wall)" "$(ms "$ip_med")" "$(minmax < "$WORK/ip_wall" | range_ms)"
printf '%-58s %9s Mbit/s %12s\n' "iperf3 node -> upstream through kindling NAT (best of 2)" "$nat_best" "$nat1, $nat2"
printf '%-58s %9s Mbit/s %12s\n' "iperf3 node -> upstream, plain routing (best of 2)" "$plain_best" "$plain1, $plain2"
printf '%-58s %12s\n' "NAT / plain throughput ratio" "$(awk -v a="$nat_best" -v b="$plain_best" 'BEGIN {printf "%.2f", a / b}')"
printf '%-58s %12s\n' "connections masqueraded (NAT rule hits; 2 per iperf3 run)" "${masq:-?}"
printf '\nkindlingd "LAN ready" includes NIC discovery, link up, address, forwarding sysctl,\n'
printf 'the nftables ruleset and the DNS forwarder; the uplink is configured after it.\n'
printf 'The baseline runs the same steps (minus the DNS forwarder) as ip/sysctl/nft commands.\n'
