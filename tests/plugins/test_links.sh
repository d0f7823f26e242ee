#!/usr/bin/env bash
# The nngraph command and the core library link no plugin, no oneDNN and no MPI library: ops and the
# MPI module (loaded only under mpirun) arrive only through dlopen. Usage: test_links.sh NNGRAPH_BINARY CORE_LIBRARY
set -euo pipefail
status=0
for file in "$@"; do
  needed=$(readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  if [[ -z "$needed" ]]; then
    echo "FAIL: no NEEDED entries read from $file"
    status=1
    continue
  fi
  if bad=$(grep -E 'dnnl|libmpi|nngraph_(attention|dense|dropout|embedding|glue|lstm|normalization|pooling|position)' <<<"$needed"); then
    echo "FAIL: $file links $bad"
    status=1
  else
    echo "ok: $file links only: $(tr '\n' ' ' <<<"$needed")"
  fi
done
exit $status
