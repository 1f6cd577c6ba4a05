#!/usr/bin/env bash
# Host memory per function at zero: N copies of echo at min_instances = 0, all idled to zero
# (no sandbox process, no cgroup), compile cache warm after the first run. Prints the host's
# PSS, RSS and anonymous PSS in KiB; the cost of one function at zero is the difference
# between two runs over the difference of their N (fixed costs cancel):
#
#   bash benches/memory_at_zero.sh 10 a; bash benches/memory_at_zero.sh 100 b
set -euo pipefail
N=${1:?usage: memory_at_zero.sh N tag}
TAG=${2:?usage: memory_at_zero.sh N tag}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SURGE=${SURGE:-$ROOT/target/release/surge}
WORK=${TMPDIR:-/tmp}/surge-memory-at-zero
D=$WORK/$TAG
rm -rf "$D"
mkdir -p "$D/functions"
for i in $(seq 1 "$N"); do
  mkdir -p "$D/functions/e$i"
  cp "$ROOT/functions/echo/echo.wasm" "$D/functions/e$i/"
  sed -e "s/^name = .*/name = \"e$i\"/" -e "s|^route = .*|route = \"/e$i\"|" \
      -e 's/^min_instances = .*/min_instances = 0/' \
      "$ROOT/functions/echo/function.toml" > "$D/functions/e$i/function.toml"
done
cat > "$D/surge.toml" <<EOF
cache_dir = "$WORK/cache"
[defaults.scaling]
scale_to_zero_after = "1s"
[cgroup]
subtree = "surge-memory-at-zero-$TAG"
EOF
"$SURGE" serve --config "$D/surge.toml" --listen 127.0.0.1:0 --state-dir "$D/state" \
  --functions-dir "$D/functions" > "$D/log" 2>&1 &
P=$!
trap 'kill $P 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  sleep 1
  grep -q "ready:" "$D/log" && break
done
# Past scale_to_zero_after and a few control ticks: every copy is at zero.
sleep 8
field() { awk -v k="$1" '$1 == k {print $2}' "/proc/$P/smaps_rollup"; }
echo "$N functions ($TAG): $(grep 'ready:' "$D/log") host PSS $(field Pss:) KiB, RSS $(field Rss:) KiB, anon PSS $(field Pss_Anon:) KiB"
