#!/usr/bin/env bash
# Installs nngraph to a temporary prefix, builds the example Swish plugin (examples/swish_plugin,
# outside the engine's targets) against the installed SDK with find_package(nngraph), loads it with
# --plugins and trains a small graph through it. Then builds examples/embed against the installed
# C++ API and classifies sentences with graphs/imdb_attention.yaml trained on a small made-up
# aclImdb tree.
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
test -f "$work/prefix/include/nngraph/nngraph.hpp"

# The public API's headers include only standard headers and each other.
api_headers=(nngraph error imdb safetensors tensor)
for header in "${api_headers[@]}"; do
  if bad=$(grep -E '^#include' "$work/prefix/include/nngraph/$header.hpp" | grep -vE '^#include (<[a-z_]+>|"nngraph/[a-z_]+\.hp?p?")$'); then
    echo "FAIL: include/nngraph/$header.hpp includes $bad"; exit 1
  fi
done

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
# Keras's CSVLogger columns, found by name: the loss falls and XOR is learned.
awk -F, 'NR == 1 { for (i = 1; i <= NF; ++i) column[$i] = i; next }
  NR == 2 { first = $column["loss"] }
  { loss = $column["loss"]; accuracy = $column["val_accuracy"] }
  END {
  if (!(loss < first / 2)) { print "FAIL: loss " first " -> " loss; exit 1 }
  if (!(accuracy > 0.9)) { print "FAIL: val_accuracy " accuracy; exit 1 }
  print "loss " first " -> " loss ", val_accuracy " accuracy }' "$work/history.csv"

# The embedding example: imdb_attention trained on made-up reviews (sentiment words among neutral
# ones), the vocabulary beside its weights; the example then classifies two held-out reviews
# through the installed C++ API.
for split in train test; do for label in pos neg; do mkdir -p "$work/aclImdb/$split/$label"; done; done
awk -v top="$work/aclImdb" 'BEGIN {
  srand(12); split("great wonderful superb moving brilliant", good); split("awful boring dull terrible waste", bad)
  split("the film plot actor scene story music ending", plain)
  for (s = 1; s <= 2; s++) for (i = 0; i < 200; i++) for (label = 0; label < 2; label++) {
    file = sprintf("%s/%s/%s/%d_%d.txt", top, s == 1 ? "train" : "test", label ? "pos" : "neg", i, label ? 9 : 2)
    text = ""
    for (w = 0; w < 120; w++) text = text " " (w % 3 ? plain[int(rand() * 8) + 1] : (label ? good[int(rand() * 5) + 1] : bad[int(rand() * 5) + 1]))
    print text > file; close(file)
  } }'
NNGRAPH_CACHE_DIR="$work/cache" "$nngraph" train "$source/graphs/imdb_attention.yaml" --data "$work/aclImdb" --epochs 3 \
  --save "$work/imdb.safetensors" >"$work/imdb_out"
test -f "$work/imdb.vocab.json"

cmake -S "$source/examples/embed" -B "$work/embed" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/embed" >/dev/null
"$work/embed/classify" "$source/graphs/imdb_attention.yaml" "$work/imdb.safetensors" \
  "$(cat "$work/aclImdb/test/pos/7_9.txt")" "$(cat "$work/aclImdb/test/neg/7_2.txt")" >"$work/classified"
cut -c1-60 "$work/classified"
awk 'NR == 1 { good = $1 } NR == 2 { bad = $1 } END {
  if (NR != 2) { print "FAIL: expected two lines"; exit 1 }
  if (!(good > 0.5 && bad < 0.5)) { print "FAIL: positive review " good ", negative review " bad; exit 1 } }' "$work/classified"
if "$work/embed/classify" "$source/graphs/imdb_attention.yaml" "$work/absent.safetensors" "text" 2>"$work/err"; then
  echo "FAIL: classify ran without weights"; exit 1
fi
grep -q "absent.safetensors" "$work/err"
