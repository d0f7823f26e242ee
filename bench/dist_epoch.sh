#!/usr/bin/env bash
# Data-parallel against threads on one machine: one epoch of a model trained by 2 ranks under
# mpirun (one thread each) and by one process with 2 threads. Prints each epoch's time (its step
# count times the epoch line's time a step, as Keras prints it), the ratio 2-rank / 2-thread, and
# rank 0's gradient-averaging time per step, overlapped with backward (the default) and blocking
# after backward (--no-overlap).
# Runs alternate, ROUNDS times (default 1), so that load drifting over the runs hits both sides.
#
# Usage: bench/dist_epoch.sh [BUILD_DIR] [MODEL.yaml]
#   (defaults: build, graphs/imdb_attention.yaml; data: NNGRAPH_DATA, else nngraph's own search)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
model=${2:-$root/graphs/imdb_attention.yaml}
rounds=${ROUNDS:-1}
nngraph=$build/bin/nngraph
[[ -x $nngraph ]] || { echo "no $nngraph: build the nngraph target first" >&2; exit 2; }
if ((EUID == 0)); then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

train=(train "$model" --epochs 1)
[[ -n ${NNGRAPH_DATA:-} ]] && train+=(--data "$NNGRAPH_DATA")
# The epoch's seconds from its line "391/391 - 4s - 10.2ms/step - ...": steps times the time a step.
epoch_seconds() {
  grep -oE '^[0-9]+/[0-9]+ - [0-9]+s - [0-9.]+(us|ms|s)/step' "$1" | tail -n 1 | awk '{
    split($1, steps, "/"); t = $5; unit = t; sub(/[0-9.]+/, "", unit); sub(/\/step/, "", unit); sub(/[a-z]+\/step/, "", t)
    scale = unit == "us" ? 1e-6 : unit == "ms" ? 1e-3 : 1; printf "%.2f", steps[2] * t * scale }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

printf '%-6s %14s %14s %8s   %s\n' round "2 threads (s)" "2 ranks (s)" ratio "2 ranks: gradient averaging per step"
for ((r = 1; r <= rounds; r++)); do
  OMP_NUM_THREADS=2 "$nngraph" "${train[@]}" --threads 2 >"$work/threads.out" 2>"$work/threads.err"
  mpirun -np 2 -x OMP_NUM_THREADS=1 "$nngraph" "${train[@]}" --threads 1 \
    >"$work/ranks.out" 2>"$work/ranks.err"
  mpirun -np 2 -x OMP_NUM_THREADS=1 "$nngraph" "${train[@]}" --threads 1 --no-overlap \
    >"$work/blocking.out" 2>"$work/blocking.err"
  threads=$(epoch_seconds "$work/threads.out")
  ranks=$(epoch_seconds "$work/ranks.out")
  blocking=$(epoch_seconds "$work/blocking.out")
  printf '%-6s %14s %14s %8s   %s\n' "$r" "$threads" "$ranks" "$(ratio "$ranks" "$threads")" \
    "$(grep -o 'gradient averaging.*' "$work/ranks.err")"
  printf '%-6s %14s %14s %8s   %s\n' "" "" "$blocking" "$(ratio "$blocking" "$threads")" \
    "$(grep -o 'gradient averaging.*' "$work/blocking.err")"
done
echo "load average while measuring: $(cut -d' ' -f1-3 /proc/loadavg)"
