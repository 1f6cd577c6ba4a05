#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against real hosts, sandboxes and
# cgroups. Builds what it needs first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
# The AWS SDK for Python, for the Lambda API tests, and statsmodels, the forecasters'
# reference (into the tools venv functions/build.sh made).
venv="${SURGE_TOOLS_DIR:-$HOME/.cache/surge-tools}/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import boto3' 2>/dev/null || "$venv/bin/pip" install -q boto3==1.35.99
# The AWS CLI (v1, on the same botocore as boto3), for the control plane's CLI test.
"$venv/bin/python" -c 'import awscli' 2>/dev/null || "$venv/bin/pip" install -q awscli==1.36.40
"$venv/bin/python" -c 'import statsmodels' 2>/dev/null || "$venv/bin/pip" install -q statsmodels==0.14.4
# Debian's Chromium and playwright-core (pinned by tests/browser/package-lock.json), for the
# dashboard's browser test (tests/dashboard.rs).
if [ ! -x /usr/bin/chromium ]; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi
# A real etcd (Debian's etcd-server, v3 API), iproute2 and nsenter, for the cluster tests
# (tests/cluster.rs: three etcd members and three nodes in network namespaces), and curl,
# which reaches a node inside its namespace.
cluster_missing=()
[ -x /usr/bin/etcd ] || cluster_missing+=(etcd-server)
command -v ip >/dev/null || cluster_missing+=(iproute2)
command -v nsenter >/dev/null || cluster_missing+=(util-linux)
command -v curl >/dev/null || cluster_missing+=(curl)
if [ ${#cluster_missing[@]} -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${cluster_missing[@]}" >/dev/null
fi
[ -d tests/browser/node_modules/playwright-core ] ||
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
# --all-targets: the criterion benches run too, once each, as tests (they must not rot).
cargo test --release --locked --workspace --all-targets 2>&1 | tee /tmp/surge-test.log
# Make skipped cgroup tests visible at the end of the log.
grep -h '^skipped:' /tmp/surge-test.log || true
# The side-by-side benchmark harness, one short round of each scenario: it must complete and
# write a well-formed results file (checked by the harness itself; it exits non-zero if not).
# Numbers from this run are not results: see BENCHMARKS.md for how to take real ones.
bash benches/run.sh --smoke
