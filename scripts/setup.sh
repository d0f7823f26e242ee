#!/usr/bin/env bash
# Installs the Debian 12 packages nngraph builds against. Idempotent: installs only what is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libdnnl-dev          # oneDNN 2.6: the plugins' arithmetic
  libboost-graph-dev   # the graph container and topological sort
  libyaml-cpp-dev      # model files
  nlohmann-json3-dev   # safetensors headers, benchmark JSON
  libcli11-dev         # the command line
  libarchive-dev       # reading aclImdb straight from its .tar.gz, and .keras zips
  libhdf5-dev          # the weights inside .keras files (nngraph import)
  python3-h5py python3-numpy  # tests/keras: writing .keras fixtures in Keras's layout
  libicu-dev           # Unicode normalisation and character classes of translation tokens
  libbenchmark-dev     # bench/
  doctest-dev          # tests/
  clang                # the fuzz build (scripts/fuzz.sh): libFuzzer comes with clang only
  libclang-rt-14-dev   # clang's libFuzzer, ASan and UBSan runtimes
  libomp-dev           # clang's OpenMP runtime
  libopenmpi-dev openmpi-bin  # data-parallel training under mpirun
  clang-format         # scripts/check-format.sh
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
