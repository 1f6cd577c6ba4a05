#!/usr/bin/env bash
# Install what is missing and build everything: the example functions and surge (release).
# Idempotent: what is present is skipped. Sourced by run.sh and test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v cargo >/dev/null; then
  echo "surge needs a Rust toolchain (cargo) on PATH" >&2
  exit 1
fi
# A C compiler for the bundled SQLite, python3 with venv for componentize-py.
missing=()
command -v cc >/dev/null || missing+=(gcc)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# protoc, for etcd-client's gRPC code (the cluster's etcd client) at build time.
command -v protoc >/dev/null || missing+=(protobuf-compiler)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Node.js and npm, for the dashboard's chart library (uPlot, pinned by its package-lock.json;
# build.rs embeds it in the binary).
if ! command -v npm >/dev/null; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq nodejs npm >/dev/null
fi
[ -f src/gateway/dashboard/node_modules/uplot/dist/uPlot.iife.min.js ] ||
  npm ci --prefix src/gateway/dashboard --no-audit --no-fund --loglevel=error

bash functions/build.sh
cargo build --release --locked
