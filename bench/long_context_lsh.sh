#!/usr/bin/env bash
# Reformer's LSH attention beside blockwise attention: forward and backward, batch 1, on 2 threads,
# as one head of 64 (Attention) and as 4 heads of 16 (MultiHeadAttention, projections included),
# chunks of 64, over 4k to 64k steps. Each (variant, length) runs in a process of its own, so that
# its peak memory is its own (the plugin's per-thread tiles only grow within a process).
# Prints a Markdown table; each cell: wall time a step, the main thread's CPU time (about half the
# work of the two threads; the figure to read when the machine is loaded), the peak memory growth.
# The last line names, for each head layout, the first length at which LSH with 4 rounds is faster.
#
# Usage: bench/long_context_lsh.sh [BUILD_DIR]
#   STEPS="4096 8192" to choose the lengths (default 4096 to 65536).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
bench=$build/bin/bench_long_context
[[ -x $bench ]] || { echo "no $bench: build the bench_long_context target first" >&2; exit 2; }
steps=(${STEPS:-4096 8192 16384 32768 65536})
variants=(lsh_1x64 lsh_4x64 blockwise heads_4x16_lsh_4x64 heads_4x16_blockwise)
declare -A label=(
  [lsh_1x64]='one head of 64: `lsh: {num_hashes: 1, bucket_size: 64}`'
  [lsh_4x64]='one head of 64: `lsh: {num_hashes: 4, bucket_size: 64}`'
  [blockwise]='one head of 64: `implementation: blockwise`'
  [heads_4x16_lsh_4x64]='4 heads of 16: `lsh: {num_hashes: 4, bucket_size: 64}`'
  [heads_4x16_blockwise]='4 heads of 16: `implementation: blockwise`'
)

# measure VARIANT STEPS: prints "wall_ms cpu_ms peak_MB" from the benchmark's CSV line.
measure() {
  local line
  if ! line=$("$bench" --benchmark_filter="long_context/$1/steps:$2/" --benchmark_format=csv 2>/dev/null |
    grep '^"long_context/'); then
    echo "long_context_lsh: $1 at $2 steps failed" >&2
    exit 1
  fi
  # Columns: name, iterations, real_time, cpu_time, time_unit, 5 empty, io_MB, op_MB, peak/io, peak_MB, steps/s.
  awk -F, '{ printf "%.0f %.0f %.0f\n", $3, $4, $14 }' <<<"$line"
}

declare -A cpu
header="| variant |"
rule="|---|"
for n in "${steps[@]}"; do
  header+=" $((n / 1024))k |"
  rule+="---|"
done
echo "$header"
echo "$rule"
for v in "${variants[@]}"; do
  row="| ${label[$v]} |"
  for n in "${steps[@]}"; do
    result=$(measure "$v" "$n")
    read -r wall main peak <<<"$result"
    cpu[$v/$n]=$main
    row+=" $wall ms (CPU $main ms), $peak MB |"
  done
  echo "$row"
done

# first_faster LSH BLOCKWISE: the first length at which LSH's main-thread CPU time is the lower.
first_faster() {
  for n in "${steps[@]}"; do
    if ((cpu[$1/$n] < cpu[$2/$n])); then
      echo "$((n / 1024))k"
      return
    fi
  done
  echo "none of these lengths"
}
echo
echo "LSH with 4 rounds ahead of blockwise (CPU time) from: one head of 64, $(first_faster lsh_4x64 blockwise);" \
  "4 heads of 16, $(first_faster heads_4x16_lsh_4x64 heads_4x16_blockwise)"
