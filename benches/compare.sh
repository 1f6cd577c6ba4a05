#!/usr/bin/env bash
# Side-by-side warm throughput: surge vs `wasmtime serve` on the same hello.wasm, alternating,
# in one run. Prints a Markdown table and writes target/bench/compare.json.
#
#   bash benches/compare.sh [rounds=3] [seconds=10]
#
# Installs what it lacks: wrk (apt) and wasmtime-cli 48.0.8 (cargo install, into
# ~/.cache/surge-tools, reused when present).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rounds="${1:-3}"
secs="${2:-10}"
tools="${SURGE_TOOLS_DIR:-$HOME/.cache/surge-tools}"
wt_root="$tools/wasmtime-48.0.8"
wasmtime="$wt_root/bin/wasmtime"
sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

command -v wrk >/dev/null || { $sudo_cmd apt-get update -qq; DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq wrk >/dev/null; }
[ -x "$wasmtime" ] || cargo install wasmtime-cli --version 48.0.8 --locked --root "$wt_root"
bash scripts/setup.sh >/dev/null

out="$root/target/bench"; mkdir -p "$out"
work="$(mktemp -d)"; trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/functions/hello"
cp functions/hello/hello.wasm "$work/functions/hello/"
# Two instances of one core each: the cgroup lets surge use both cores, as wasmtime serve
# (which has no limits) does. The sandbox, its cgroup and its limits stay on.
sed -e 's/^min_instances = 1/min_instances = 2/' -e 's/^cpu = .*/cpu = "1000m"/' functions/hello/function.toml > "$work/functions/hello/function.toml"

port_surge=18181; port_wt=18182
./target/release/surge serve --listen 127.0.0.1:$port_surge --state-dir "$work/state" --functions-dir "$work/functions" > "$work/surge.log" 2>&1 &
until grep -q '^ready:' "$work/surge.log" 2>/dev/null; do sleep 0.2; done
"$wasmtime" serve -S cli=y --max-instance-reuse-count 1000 --addr 127.0.0.1:$port_wt functions/hello/hello.wasm > "$work/wt.log" 2>&1 &
"$wasmtime" serve -S cli=y --addr 127.0.0.1:$((port_wt+1)) functions/hello/hello.wasm > "$work/wt1.log" 2>&1 &
for p in $port_surge $port_wt $((port_wt+1)); do
  until curl -sf "http://127.0.0.1:$p/hello" >/dev/null; do sleep 0.3; done
done

# wrk → "rps p50_ms p99_ms"
run() {
  wrk -t2 -c16 -d"${secs}s" --latency "$1" 2>/dev/null | awk '
    /Requests\/sec/ {rps=$2}
    /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    END {printf "%.0f %.3f %.3f\n", rps, ms(p50), ms(p99)}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A rps p99
for r in $(seq "$rounds"); do
  for who in surge wasmtime_reuse1000 wasmtime_default; do
    case $who in
      surge) url="http://127.0.0.1:$port_surge/hello" ;;
      wasmtime_reuse1000) url="http://127.0.0.1:$port_wt/hello" ;;
      wasmtime_default) url="http://127.0.0.1:$((port_wt+1))/hello" ;;
    esac
    read -r a _ c < <(run "$url")
    rps[$who]+="$a "; p99[$who]+="$c "
    echo "round $r $who: $a req/s, p99 $c ms" >&2
  done
done
m() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
s_rps=$(m "${rps[surge]}"); w_rps=$(m "${rps[wasmtime_reuse1000]}"); d_rps=$(m "${rps[wasmtime_default]}")
s_p99=$(m "${p99[surge]}"); w_p99=$(m "${p99[wasmtime_reuse1000]}"); d_p99=$(m "${p99[wasmtime_default]}")
ratio=$(awk -v a="$s_rps" -v b="$w_rps" 'BEGIN {printf "%.2f", a/b}')
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
cat > "$out/compare.json" <<JSON
{"machine": {"cores": $(nproc), "cpu": "$cpu", "kernel": "$(uname -r)"},
 "scenario": "warm hello (componentize-py wasi:http), wrk -t2 -c16 -d${secs}s, median of $rounds",
 "surge": {"rps": $s_rps, "p99_ms": $s_p99},
 "wasmtime_serve_reuse1000": {"rps": $w_rps, "p99_ms": $w_p99},
 "wasmtime_serve_default": {"rps": $d_rps, "p99_ms": $d_p99},
 "ratio_surge_over_reuse1000": $ratio}
JSON
echo "| scenario | surge req/s | wasmtime serve reuse=1000 req/s | wasmtime serve default req/s | surge / reuse=1000 | p99 ms surge / reuse / default |"
echo "| --- | --- | --- | --- | --- | --- |"
echo "| warm hello, wrk -t2 -c16 | $s_rps | $w_rps | $d_rps | $ratio | $s_p99 / $w_p99 / $d_p99 |"
