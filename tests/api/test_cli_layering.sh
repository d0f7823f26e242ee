#!/usr/bin/env bash
# The nngraph command is a client of the public API: no file in engine/tools includes a header of
# engine/src, and no engine/tools compile command has an include path into engine/src.
# Usage: test_cli_layering.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
source=$1
build=$2
status=0
areas=$(find "$source/engine/src" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | paste -sd'|')
if hits=$(grep -nE "^#include [\"<]($areas)/" "$source"/engine/tools/*.cpp "$source"/engine/tools/*.hpp); then
  echo "FAIL: engine/tools includes engine/src headers:"; echo "$hits"; status=1
fi
if [[ ! -f "$build/compile_commands.json" ]]; then echo "FAIL: no $build/compile_commands.json"; exit 1; fi
tools_commands=$(awk -v tools="$source/engine/tools/" '
  /"command":/ { command = $0 } /"file":/ && index($0, tools) { print command }' "$build/compile_commands.json")
if [[ -z "$tools_commands" ]]; then echo "FAIL: no compile command for engine/tools in $build/compile_commands.json"; exit 1; fi
if grep -qE -- "-I *$source/engine/src( |\"|/)" <<<"$tools_commands"; then
  echo "FAIL: an engine/tools compile command has an include path into engine/src"; status=1
fi
[[ $status == 0 ]] && echo "ok: engine/tools uses the public API only"
exit $status
