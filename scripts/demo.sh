#!/usr/bin/env bash
# Set up fleet, build the local demo fleet (real sshd on 127.0.0.1) and run the weekly playbook on it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
exec .venv/bin/fleet demo "$@"
