#!/usr/bin/env bash
# Measure fleet against OpenClaw releases and write docs/compatibility.md (see tests/interop/compat_matrix.py).
#   scripts/compat-matrix.sh                 every stable release since 2026.2 (npm view openclaw versions)
#   scripts/compat-matrix.sh --missing       every stable release not yet in docs/compatibility.md
#   scripts/compat-matrix.sh 2026.8.2 ...    only these
# Rows of releases not measured in this run stay as they were (each row has its own date).
# Each release is installed into ~/.cache/fleet-interop and writes its own genuine data (minutes per
# release: real agent turns against a local mock model). FLEET_COMPAT_MAIN_TURNS sets main's turns (26).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=0
if [ "${1:-}" = "--missing" ]; then missing=1; shift; fi
versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
  mapfile -t versions < <(npm view openclaw versions --json | python3 -c '
import json, sys
for v in json.load(sys.stdin):
    if "-" not in v and tuple(int(x) for x in v.split(".")[:2]) >= (2026, 2):
        print(v)')
  if [ $missing = 1 ] && [ -f docs/compatibility.md ]; then
    mapfile -t versions < <(for v in "${versions[@]}"; do grep -q "^| $v |" docs/compatibility.md || echo "$v"; done)
  fi
fi
[ ${#versions[@]} -gt 0 ] || { echo "compat-matrix: nothing to measure"; exit 0; }
scripts/install-openclaw.sh "${versions[@]}" >/dev/null
exec .venv/bin/python tests/interop/compat_matrix.py docs/compatibility.md "${versions[@]}"
