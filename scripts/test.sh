#!/usr/bin/env bash
# Set up fleet with its test extras and system packages, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
exec .venv/bin/python -m pytest -n 2 -q "$@"
