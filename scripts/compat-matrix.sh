#!/usr/bin/env bash
# Measure fleet against OpenClaw releases and write docs/compatibility.md (see tests/interop/compat_matrix.py).
#   scripts/compat-matrix.sh                 every stable release since 2026.2 (npm view openclaw versions)
#   scripts/compat-matrix.sh 2026.8.2 ...    only these, in this order
# Resumable: releases that already have a row in docs/compatibility.md are kept and skipped; the file
# is rewritten after each release, and what is not measured yet is listed there with this command.
# Stable = exactly YEAR.MONTH.PATCH (no -beta.N, no -N rebuild). Order: the SQLite era (2026.8+)
# first, then the newest release of each JSON-era month (newest month first), then the rest, newest first.
# Each release writes its own genuine data (real agent turns against a local mock model: about 1 min
# for a JSON-era release, 3 min for a SQLite-era one on a quiet machine). The next 2 releases are
# installed while one is measured (install-openclaw.sh locks per release); a release is ~650 MB
# installed, so the installs this run added are removed once measured (FLEET_COMPAT_KEEP_INSTALLS=1 keeps them).
# Runs at nice 10; FLEET_COMPAT_LOCK=FILE holds flock(FILE) around each release's measurement (a shared
# machine's bench lock).
set -euo pipefail
cd "$(dirname "$0")/.."
versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
  mapfile -t versions < <(npm view openclaw versions --json | python3 -c '
import json, re, sys
stable = [v for v in json.load(sys.stdin) if re.match(r"^\d+\.\d+\.\d+$", v)]
key = lambda v: tuple(int(x) for x in v.split("."))
stable = sorted((v for v in stable if key(v)[:2] >= (2026, 2)), key=key, reverse=True)
sqlite = [v for v in stable if key(v)[:2] >= (2026, 8)]
months = {}
for v in stable:
    if key(v)[:2] < (2026, 8):
        months.setdefault(key(v)[:2], v)  # sorted newest first: the first one seen is the newest of its month
newest = list(months.values())
rest = [v for v in stable if v not in sqlite and v not in newest]
print("\n".join(sqlite + newest + rest))')
fi
nice -n 10 .venv/bin/python tests/interop/compat_matrix.py docs/compatibility.md "${versions[@]}"
