#!/usr/bin/env bash
# Installs what the build needs, builds, and runs every test: once in a Release build, once
# more under AddressSanitizer and UndefinedBehaviorSanitizer, then every fuzz target for a while.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"

echo "== Source layout (.clang-format)"
bash "$root/scripts/check-format.sh"

echo "== Release build and tests"
bash "$root/scripts/build.sh" "$root/build"
ctest --test-dir "$root/build" --output-on-failure -j 2

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
# -O1, as ASan's documentation advises, and line tables only (-g1), enough for the reports' stack
# traces: the instrumented build compiles in under half the time it takes at -O2 with full -g.
bash "$root/scripts/build.sh" "$root/build-sanitize" -DNNGRAPH_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DNNGRAPH_BUILD_BENCH=OFF
# oneDNN's JIT and OpenMP runtime keep allocations for the life of the process: leaks are not ours to report.
# An allocation too large to satisfy returns null, as the real allocator does, so the tests of how the
# engine reports it run under ASan too (ASan would otherwise abort the process).
ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir "$root/build-sanitize" --output-on-failure -j 2

echo "== Fuzzing: every parser's libFuzzer target for 30 s (clang, ASan + UBSan)"
bash "$root/scripts/fuzz.sh" all 30
echo "== all tests passed"
