#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against real hosts, sandboxes and
# cgroups. Builds what it needs first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
cargo test --release --locked --workspace 2>&1 | tee /tmp/surge-test.log
# Make skipped cgroup tests visible at the end of the log.
grep -h '^skipped:' /tmp/surge-test.log || true
