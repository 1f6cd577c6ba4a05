#!/usr/bin/env bash
# The side-by-side benchmarks: surge against `wasmtime serve` and `wasmtime run` on the same
# .wasm files. Installs what it lacks, builds surge and the functions, runs benches/harness.py.
#
#   bash benches/run.sh            # full: 3 rounds × 10 s, 20 cold starts, 100 functions
#   bash benches/run.sh --smoke    # one short round of each scenario (CI)
#   bash benches/run.sh --rounds 5 --seconds 20 --only warm_http
#
# Results: target/bench/results.{json,md} (smoke.{json,md} with --smoke).
# Tools go to ~/.cache/surge-tools (SURGE_TOOLS_DIR), outside the repo, reused when present:
# wrk and etcd (Debian), oha and wasmtime-cli (cargo install --locked, pinned versions).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tools="${SURGE_TOOLS_DIR:-$HOME/.cache/surge-tools}"
wasmtime_version=48.0.8
oha_version=1.16.0
sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

command -v wrk >/dev/null || {
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq wrk >/dev/null
}
# etcd, for the cluster scenario's three members.
[ -x /usr/bin/etcd ] || {
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq etcd-server >/dev/null
}
wasmtime="$tools/wasmtime-$wasmtime_version/bin/wasmtime"
[ -x "$wasmtime" ] || cargo install -q wasmtime-cli --version "$wasmtime_version" --locked --root "$tools/wasmtime-$wasmtime_version"
oha="$tools/oha-$oha_version/bin/oha"
[ -x "$oha" ] || cargo install -q oha --version "$oha_version" --locked --root "$tools/oha-$oha_version"
bash scripts/setup.sh

exec python3 benches/harness.py --wasmtime "$wasmtime" --oha "$oha" --wrk "$(command -v wrk)" "$@"
