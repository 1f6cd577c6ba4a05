#!/usr/bin/env bash
# Build the example functions: functions/<name>/<name>.wasm next to each manifest.
# Installs what is missing (clang + wasi-libc from Debian, componentize-py in a venv) and
# skips a function whose .wasm is newer than its sources. Usage: functions/build.sh [name...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tools="${SURGE_TOOLS_DIR:-$HOME/.cache/surge-tools}"
venv="$tools/venv"
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

need_c() {
  if ! command -v clang >/dev/null || [ ! -f /usr/lib/wasm32-wasi/libc.a ] || ! ls /usr/lib/llvm-*/lib/clang/*/lib/wasi* >/dev/null 2>&1; then
    echo "installing clang + wasi-libc (apt)"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq clang lld wasi-libc libclang-rt-dev-wasm32 >/dev/null
  fi
}

need_py() {
  if [ ! -x "$venv/bin/componentize-py" ]; then
    echo "installing componentize-py (pip, into $venv)"
    mkdir -p "$tools"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q componentize-py==0.25.1 spin-sdk==5.0.0
  fi
}

# numpy and scikit-learn, to train classify's network at build time.
need_sklearn() {
  [ -x "$venv/bin/python" ] || { mkdir -p "$tools"; python3 -m venv "$venv"; }
  if ! "$venv/bin/python" -c 'import sklearn' 2>/dev/null; then
    echo "installing scikit-learn (pip, into $venv)"
    "$venv/bin/pip" install -q scikit-learn==1.7.2
  fi
}

# newer OUT SRC... : true when OUT exists and is newer than every SRC.
newer() {
  local out="$1"; shift
  [ -f "$out" ] || return 1
  for s in "$@"; do [ "$s" -nt "$out" ] && return 1; done
  return 0
}

build_c() {
  local name="$1" dir="$here/$1"
  if newer "$dir/$name.wasm" "$dir/$name.c"; then echo "$name: up to date"; return; fi
  need_c
  clang --target=wasm32-wasi -O2 -Wl,--strip-all -o "$dir/$name.wasm.tmp" "$dir/$name.c"
  mv "$dir/$name.wasm.tmp" "$dir/$name.wasm"
  echo "$name: built ($(stat -c %s "$dir/$name.wasm") bytes)"
}

# classify: train the network (build/weights.h, build/test.json), then compile with it.
build_classify() {
  local dir="$here/classify"
  if newer "$dir/classify.wasm" "$dir/classify.c" "$dir/train.py" &&
     [ -f "$dir/build/test.json" ]; then
    echo "classify: up to date"; return
  fi
  need_c
  need_sklearn
  "$venv/bin/python" "$dir/train.py" "$dir/build"
  clang --target=wasm32-wasi -O2 -Wl,--strip-all -I "$dir/build" -o "$dir/classify.wasm.tmp" "$dir/classify.c" -lm
  mv "$dir/classify.wasm.tmp" "$dir/classify.wasm"
  echo "classify: built ($(stat -c %s "$dir/classify.wasm") bytes)"
}

build_py() {
  local name="$1" dir="$here/$1"
  if newer "$dir/$name.wasm" "$dir/app.py" "$dir/wit/world.wit"; then echo "$name: up to date"; return; fi
  need_py
  # componentize-py needs the WASI WIT packages on disk; spin-sdk ships them.
  local deps
  deps="$("$venv/bin/python" -c 'import spin_sdk, os; print(os.path.join(os.path.dirname(spin_sdk.__file__), "wit", "deps"))')"
  mkdir -p "$dir/wit/deps"
  for pkg in cli clocks filesystem http io random sockets; do
    rm -rf "$dir/wit/deps/$pkg@0.2.0"
    cp -r "$deps/$pkg@0.2.0" "$dir/wit/deps/"
  done
  (cd "$dir" && "$venv/bin/componentize-py" -d wit -w "$name" componentize app -o "$name.wasm.tmp" >/dev/null)
  mv "$dir/$name.wasm.tmp" "$dir/$name.wasm"
  echo "$name: built ($(stat -c %s "$dir/$name.wasm") bytes)"
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(hello echo spin memhog loop flaky classify)
for n in "${names[@]}"; do
  case "$n" in
    hello) build_py hello ;;
    echo|spin|memhog|loop|flaky) build_c "$n" ;;
    classify) build_classify ;;
    *) echo "unknown function: $n (known: hello echo spin memhog loop flaky classify)" >&2; exit 2 ;;
  esac
done
