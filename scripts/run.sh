#!/usr/bin/env bash
# The main job: build everything, then serve the example functions on the embedded defaults
# (or config/surge.toml). Extra arguments go to `surge serve`, e.g. --listen 0.0.0.0:8080.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec ./target/release/surge serve "$@"
