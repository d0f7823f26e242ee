#!/usr/bin/env bash
# Configures and builds nngraph. Usage: scripts/build.sh BUILD_DIR [extra cmake arguments...] [-- targets...]
# Without targets it builds everything (tests and benchmarks included).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build"}
shift || true
configure=()
while (($#)) && [[ $1 != -- ]]; do
  configure+=("$1")
  shift
done
shift || true
targets=()
if (($#)); then targets=(--target "$@"); fi
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${configure[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)" "${targets[@]}"
