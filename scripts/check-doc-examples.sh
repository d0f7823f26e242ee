#!/usr/bin/env bash
# Runs the examples of docs/*.md as written: every complete model file in a ```yaml block is loaded
# (nngraph summary), every `training:` block trains two epochs on the XOR model of graphs/, and every
# `$ nngraph ...` command (and every nngraph line of a ```sh block) runs from a scratch directory that
# holds graphs/; a summary's output must be the table shown after it. Commands that need the IMDB
# or translation data or trained runs/, and benchmarks unless CHECK_BENCH=1, are listed as skipped,
# not run.
# Usage: scripts/check-doc-examples.sh [path/to/nngraph]   (default build/bin/nngraph)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nngraph=$(realpath "${1:-$root/build/bin/nngraph}")
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
ln -s "$root/graphs" "$scratch/graphs"
# The Keras import example's files: a .keras file in Keras's layout and inputs for it.
cp "$root/tests/keras/fixtures/sequential_current.keras" "$scratch/model.keras"
cp "$root/tests/keras/fixtures/sequential_inputs.safetensors" "$scratch/x.safetensors"
mkdir -p "$scratch/bin"
ln -s "$nngraph" "$scratch/bin/nngraph"
export PATH="$scratch/bin:$PATH"
failures=0 ran=0 skipped=0

fail() {
  echo "FAIL $1" >&2
  sed 's/^/    /' "$scratch/out" >&2
  failures=$((failures + 1))
}

# The XOR model of graphs/ without its training section, with little data.
xor_model() {
  sed '/^training:/,$d' "$root/graphs/mlp_xor.yaml"
  echo "data: {format: synthetic, task: xor, samples: 200, validation_samples: 100}"
}

block=0
for doc in "$root"/docs/*.md; do
  # Each ```yaml block into its own file: <doc>.<line>.yaml
  awk -v out="$scratch/block" -v doc="$(basename "$doc")" '
    /^```yaml/ { inside = 1; file = out "." doc "." NR ".yaml"; next }
    /^```/ { inside = 0; next }
    inside { print > file }' "$doc"
done
for file in "$scratch"/block.*.yaml; do
  [[ -e $file ]] || continue
  where=$(basename "$file" .yaml | sed 's/^block\.//; s/\.\([0-9]*\)$/:\1/')
  if grep -qE '^(layers|nodes):' "$file"; then
    ran=$((ran + 1))
    (cd "$scratch" && nngraph summary "$file") >"$scratch/out" 2>&1 || fail "$where: the model file does not load"
  elif grep -qE '^training:' "$file"; then
    ran=$((ran + 1))
    { xor_model; cat "$file"; } >"$scratch/model.yaml"
    (cd "$scratch" && nngraph train model.yaml --epochs 2) >"$scratch/out" 2>&1 ||
      fail "$where: the training section does not train"
  elif grep -qE '^  optimizer:' "$file"; then
    ran=$((ran + 1))
    { xor_model; printf 'training:\n  loss: binary_crossentropy\n'; cat "$file"; } >"$scratch/model.yaml"
    (cd "$scratch" && nngraph train model.yaml --epochs 2) >"$scratch/out" 2>&1 ||
      fail "$where: the optimizer does not train"
  else
    skipped=$((skipped + 1))
    echo "skip $where: a fragment of a file"
  fi
done

while IFS= read -r entry; do
  where=${entry%%	*}
  command=${entry#*	}
  if [[ $command =~ (runs/|aclImdb|tatoeba|translate_small|reviews\.txt|mpirun) ]]; then
    skipped=$((skipped + 1))
    echo "skip $where: needs data or trained weights: $command"
    continue
  fi
  if [[ $command =~ nngraph\ bench && -z ${CHECK_BENCH:-} ]]; then
    skipped=$((skipped + 1))
    echo "skip $where: a benchmark (CHECK_BENCH=1 runs it): $command"
    continue
  fi
  ran=$((ran + 1))
  (cd "$scratch" && COLUMNS=80 bash -c "$command") >"$scratch/out" 2>"$scratch/err" || {
    cat "$scratch/err" >>"$scratch/out"
    fail "$where: $command"
    continue
  }
  # A summary's table is deterministic: the lines shown after the command must be its output.
  if [[ $command =~ ^nngraph\ summary ]]; then
    awk -v from="${where##*:}" 'NR > from && (/^\$ / || /^```/) { exit } NR > from' "$root/${where%:*}" >"$scratch/shown"
    diff "$scratch/shown" "$scratch/out" >"$scratch/diff" || {
      mv "$scratch/diff" "$scratch/out"
      fail "$where: the output differs from the one shown"
    }
  fi
done < <(
  cd "$root" || exit 1
  # `$ nngraph ...` lines, and the lines of ```sh blocks that run the command line tool.
  grep -n '^\$ nngraph' docs/*.md | sed -E 's/^([^:]*:[0-9]+):\$ /\1\t/'
  awk '/^```sh/ { inside = 1; next } /^```/ { inside = 0; next }
       inside && /^(build\/bin\/)?nngraph / { sub(/^build\/bin\//, ""); sub(/ +#.*$/, ""); print FILENAME ":" FNR "\t" $0 }' docs/*.md
)

echo "$ran examples run, $skipped skipped, $failures failed"
((failures == 0))
