#!/usr/bin/env bash
# Data-parallel against threads on one machine: one epoch of a model trained by 2 ranks under
# mpirun (one thread each) and by one process with 2 threads. Prints each epoch's seconds (the
# --log row's last column), the ratio 2-rank / 2-thread, and rank 0's gradient-averaging time per
# step, overlapped with backward (the default) and blocking after backward (--no-overlap).
# Runs alternate, ROUNDS times (default 1), so that load drifting over the runs hits both sides.
#
# Usage: bench/dist_epoch.sh [BUILD_DIR] [MODEL.yaml]
#   (defaults: build, graphs/imdb_attention.yaml; data: NNGRAPH_DATA or /work/shared/data's archive)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
model=${2:-$root/graphs/imdb_attention.yaml}
rounds=${ROUNDS:-1}
data=${NNGRAPH_DATA:-/work/shared/data/aclImdb_labeled.tar.gz}
nngraph=$build/bin/nngraph
[[ -x $nngraph ]] || { echo "no $nngraph: build the nngraph target first" >&2; exit 2; }
if ((EUID == 0)); then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

train=(train "$model" --epochs 1 --data "$data")
# The epoch's seconds: the last field of the log's one row.
epoch_seconds() { tail -n 1 "$1" | awk -F, '{print $NF}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

printf '%-6s %14s %14s %8s   %s\n' round "2 threads (s)" "2 ranks (s)" ratio "2 ranks: gradient averaging per step"
for ((r = 1; r <= rounds; r++)); do
  OMP_NUM_THREADS=2 "$nngraph" "${train[@]}" --threads 2 --log "$work/threads.csv" >/dev/null 2>"$work/threads.err"
  mpirun -np 2 -x OMP_NUM_THREADS=1 "$nngraph" "${train[@]}" --threads 1 --log "$work/ranks.csv" \
    >/dev/null 2>"$work/ranks.err"
  mpirun -np 2 -x OMP_NUM_THREADS=1 "$nngraph" "${train[@]}" --threads 1 --no-overlap --log "$work/blocking.csv" \
    >/dev/null 2>"$work/blocking.err"
  threads=$(epoch_seconds "$work/threads.csv")
  ranks=$(epoch_seconds "$work/ranks.csv")
  blocking=$(epoch_seconds "$work/blocking.csv")
  printf '%-6s %14s %14s %8s   %s\n' "$r" "$threads" "$ranks" "$(ratio "$ranks" "$threads")" \
    "$(grep -o 'gradient averaging.*' "$work/ranks.err")"
  printf '%-6s %14s %14s %8s   %s\n' "" "" "$blocking" "$(ratio "$blocking" "$threads")" \
    "$(grep -o 'gradient averaging.*' "$work/blocking.err")"
done
echo "load average while measuring: $(cut -d' ' -f1-3 /proc/loadavg)"
