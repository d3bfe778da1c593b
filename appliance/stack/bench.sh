#!/usr/bin/env bash
# Stack bootstrap benchmark: cold bootstrap (empty data) and warm restart
# (unseal + checks), each step's duration, on loopback with the real bao and
# consul (tests/install-deps puts them in build/tools) and the Nomad test
# double; the baseline (stock CLIs: bao operator init/unseal, consul acl
# bootstrap) is measured in the same run.
#
#   appliance/stack/bench.sh [ROUNDS]     (default 3)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
ROUNDS=${1:-3}
export KINDLING_TOOLS="${KINDLING_TOOLS:-$ROOT/build/tools}"
# A debug build is enough: the time is spent in Vault and Consul, not in kindling.
cargo build -q -p kindling-stack --example stack_bench
exec "$ROOT/target/x86_64-unknown-linux-gnu/debug/examples/stack_bench" "$ROUNDS"
