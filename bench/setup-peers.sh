#!/bin/sh
# The peer tools bench/peers.py compares fleet against, in their own venv (never the project's):
# ansible-core, pyinfra, asyncssh (+ py-spy to profile). ansible-core >= 2.20 needs Python >= 3.12
# on the controller; without one, ansible-core is pinned to 2.19.
#
#   sh bench/setup-peers.sh            # creates bench/.venv-peers
#   PEERS_PYTHON=/path/python3.12 sh bench/setup-peers.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv-peers"
python=${PEERS_PYTHON:-}
if [ -z "$python" ]; then
    for candidate in "$HOME"/.pyenv/versions/3.13*/bin/python3.13 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 \
                     python3.13 python3.12 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
    done
fi
if [ -z "$python" ]; then
    echo "setup-peers: no python3 found; set PEERS_PYTHON" >&2
    exit 1
fi
if "$python" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
    ansible='ansible-core>=2.20'
else
    ansible='ansible-core>=2.19,<2.20'
    echo "setup-peers: $python is older than 3.12: pinning $ansible" >&2
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$ansible" pyinfra asyncssh py-spy
"$venv/bin/python" - <<'PY'
from importlib.metadata import version
import sys
print("peers venv:", sys.executable, sys.version.split()[0])
for name in ("ansible-core", "pyinfra", "asyncssh", "py-spy"):
    print(f"  {name} {version(name)}")
PY
