#!/usr/bin/env bash
# The main job: install, build the nngraph command and its plugins (not the tests and benchmarks),
# and train the seed's attention model on IMDB (10 epochs, batch 64, validated on the test split
# after every epoch). The data set is found from NNGRAPH_DATA (set here to the development copy
# beside the repository when there is one); without it nngraph says where to download it. Extra
# arguments go to `nngraph train` (e.g. --epochs 2).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh" "$root/build" -- nngraph nngraph_plugins
dev_copy="$root/../shared/data/aclImdb_labeled.tar.gz"
if [[ -z "${NNGRAPH_DATA:-}" && -f "$dev_copy" ]]; then
  export NNGRAPH_DATA="$dev_copy"
fi
mkdir -p "$root/runs"
exec "$root/build/bin/nngraph" train "$root/graphs/imdb_attention.yaml" \
  --save "$root/runs/imdb_attention.safetensors" --log "$root/runs/imdb_attention.csv" "$@"
