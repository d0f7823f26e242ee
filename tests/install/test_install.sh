#!/usr/bin/env bash
# Installs nngraph to a temporary prefix, builds the example Swish plugin (examples/swish_plugin,
# outside the engine's targets) against the installed SDK with find_package(nngraph), loads it with
# --plugins and trains a small graph through it.
# Usage: test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/include/nngraph/sdk.hpp"
test -f "$work/prefix/include/nngraph/onednn.hpp"
test -f "$work/prefix/lib/cmake/nngraph/nngraphConfig.cmake"

cmake -S "$source/examples/swish_plugin" -B "$work/swish" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/swish" >/dev/null
test -f "$work/swish/libswish.so"

nngraph="$work/prefix/bin/nngraph"
"$nngraph" plugins --plugins "$work/swish" | grep -q "^Swish .*libswish.so"

# Without the plugin, the graph's op is missing and named.
if "$nngraph" summary "$source/examples/swish_plugin/model.yaml" 2>"$work/err"; then
  echo "FAIL: the model loaded without the Swish plugin"; exit 1
fi
grep -q "unknown op 'Swish'" "$work/err"

"$nngraph" train "$source/examples/swish_plugin/model.yaml" --plugins "$work/swish" --log "$work/history.csv" >"$work/out"
cat "$work/out"
# epoch,accuracy,loss,val_accuracy,val_loss,seconds: the loss falls and XOR is learned.
awk -F, 'NR == 2 { first = $3 } END {
  if (!($3 < first / 2)) { print "FAIL: loss " first " -> " $3; exit 1 }
  if (!($4 > 0.9)) { print "FAIL: val_accuracy " $4; exit 1 }
  print "loss " first " -> " $3 ", val_accuracy " $4 }' "$work/history.csv"
