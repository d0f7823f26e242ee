#!/usr/bin/env bash
# Ring attention against blockwise attention on one machine: one MultiHeadAttention layer (4 heads
# of 16, batch 1), forward + backward, at each length: one process with 2 threads (blockwise)
# and 2 ranks under mpirun with 1 thread each (ring). Prints each rank's seconds per step, peak
# resident memory and the share of the step spent waiting on the ring.
#
# Usage: bench/ring_attention.sh [BUILD_DIR] [STEPS...]   (default lengths: 16384 65536 131072)
#   REPEATS=R timed steps per run (default 2, after one warm-up step; 0: time the warm-up step alone,
#   for peak memory at lengths where a step takes many minutes)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
lengths=("$@")
((${#lengths[@]})) || lengths=(16384 65536 131072)
repeats=${REPEATS:-2}
bench=$build/bin/bench_ring_attention
[[ -x $bench ]] || { echo "no $bench: build the bench_ring_attention target first" >&2; exit 2; }
if ((EUID == 0)); then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OPENBLAS_NUM_THREADS=1

for steps in "${lengths[@]}"; do
  "$bench" --steps "$steps" --implementation blockwise --threads 2 --repeats "$repeats"
  mpirun --oversubscribe --bind-to none -np 2 "$bench" --steps "$steps" --implementation ring --threads 1 \
    --repeats "$repeats"
done
