#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for a bounded time.
# Usage: scripts/fuzz.sh TARGET|all SECONDS   (TARGET: model_file, safetensors, checkpoint, vocabulary,
# imdb_archive, tsv_pairs, keras_file, or the full name fuzz_<...>). Exits 1 if any target crashed, hung,
# leaked past the memory limit or tripped a sanitizer; the input that did so is kept in
# <build>/fuzz-artifacts/<target>/.
# Environment: NNGRAPH_FUZZ_BUILD (build folder, default build-fuzz), NNGRAPH_FUZZ_JOBS (parallel
# compile jobs), NNGRAPH_FUZZ_ARGS (extra libFuzzer flags, e.g. -seed=1; "-fork=1 -ignore_crashes=1"
# goes on fuzzing past a known crash, keeping every crashing input).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
all_targets=(model_file safetensors checkpoint vocabulary imdb_archive tsv_pairs keras_file)

if (($# != 2)) || ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < 1)); then
  echo "usage: scripts/fuzz.sh TARGET|all SECONDS; TARGET is one of: ${all_targets[*]}" >&2
  exit 2
fi
if [[ $1 == all ]]; then
  targets=("${all_targets[@]}")
else
  name=${1#fuzz_}
  [[ " ${all_targets[*]} " == *" $name "* ]] || { echo "fuzz.sh: unknown target '$1'; expected one of: all ${all_targets[*]}" >&2; exit 2; }
  targets=("$name")
fi
seconds=$2
build=${NNGRAPH_FUZZ_BUILD:-"$root/build-fuzz"}

# The targets alone, not the tests or benchmarks: the fuzz build is its own folder.
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DNNGRAPH_FUZZ=ON -DNNGRAPH_BUILD_TESTS=OFF -DNNGRAPH_BUILD_BENCH=OFF >/dev/null
fi
cmake --build "$build" -j "${NNGRAPH_FUZZ_JOBS:-$(nproc)}" --target $(printf 'fuzz_%s ' "${targets[@]}")

# What each parser reads in practice, with room to spare; a longer input only slows the search.
declare -A max_len=([model_file]=8192 [safetensors]=4096 [checkpoint]=4096 [vocabulary]=4096 [imdb_archive]=16384 [tsv_pairs]=4096 [keras_file]=65536)
declare -A dictionary=([model_file]=model_file [safetensors]=json [checkpoint]=json [vocabulary]=json [imdb_archive]=archive [tsv_pairs]=archive [keras_file]=archive)

# oneDNN's JIT and OpenMP runtime keep allocations for the life of the process: leaks are not ours
# to report (as in the sanitizer build). A malloc beyond the RSS limit counts as a crash: every
# size a file gives must be checked before it is allocated.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:allocator_may_return_null=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export NNGRAPH_PLUGIN_PATH=

failed=()
for name in "${targets[@]}"; do
  target=fuzz_$name
  corpus=$build/fuzz-corpus/$target          # what the fuzzer finds; the seeds stay read-only
  artifacts=$build/fuzz-artifacts/$target/
  log=$build/fuzz-logs/$target.log
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  echo "== $target for ${seconds}s (log: $log)"
  started=$(mktemp)  # artifacts newer than this are this run's (-fork with -ignore_crashes exits 0)
  status=0
  # -timeout: one input taking longer is a hang; -rss_limit_mb also bounds a single malloc.
  # shellcheck disable=SC2086
  "$build/fuzz/$target" "$corpus" "$root/tests/fuzz/corpus/$target" \
    -max_total_time="$seconds" -max_len="${max_len[$name]}" -timeout=10 -rss_limit_mb=2048 \
    -dict="$root/tests/fuzz/dictionaries/${dictionary[$name]}.dict" -artifact_prefix="$artifacts" \
    -print_final_stats=1 ${NNGRAPH_FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
  grep -E '^#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb' "$log" || grep -E '^#[0-9]+: cov' "$log" | tail -1 || true
  found=$(find "$artifacts" -type f -newer "$started" | wc -l)
  rm -f "$started"
  if ((status != 0 || found > 0)); then
    echo "   $target FAILED (status $status, $found new inputs kept in $artifacts):"
    grep -E '^==[0-9]+==ERROR|runtime error|^SUMMARY|uncaught exception|Test unit written' "$log" | head -5 | sed 's/^/   /'
    failed+=("$target")
  fi
done

if ((${#failed[@]})); then
  echo "fuzz.sh: ${failed[*]} failed; each crashing input is in $build/fuzz-artifacts/<target>/" >&2
  exit 1
fi
echo "fuzz.sh: ${targets[*]}: nothing found in ${seconds}s each"
