#!/bin/sh
# ansible-core for the Ansible collection's tests (tests/control/test_ansible_collection.py) and
# for building the collection (scripts/build-collection.sh), in its own virtualenv `.venv-ansible`,
# never in fleet's .venv (as bench/setup-peers.sh keeps the bench's peers apart). Idempotent: once
# installed it only checks. ansible-core >= 2.20 needs Python >= 3.12 on the controller; with an
# older Python it is pinned to 2.19 (2.19 still manages hosts with Python >= 3.8, fleet's floor).
#
# Where ansible-core cannot be installed (no package index), the reason is written to
# .venv-ansible/UNAVAILABLE and the tests that need it skip, naming it; setup goes on (exit 0).
#   sh scripts/setup-ansible.sh                     # ANSIBLE_PYTHON=/path/python3.12 to choose
set -eu
cd "$(dirname "$0")/.."
venv=.venv-ansible
stamp="$venv/.installed"
python=${ANSIBLE_PYTHON:-python3}
[ -f "$stamp" ] && [ -x "$venv/bin/ansible-playbook" ] && exit 0
if "$python" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
    ansible='ansible-core>=2.20,<2.22'
else
    ansible='ansible-core>=2.19,<2.20'
fi
rm -f "$venv/UNAVAILABLE"
if ! { [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"; } >"$venv.log" 2>&1 ||
   ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "$ansible" >>"$venv.log" 2>&1; then
    mkdir -p "$venv"
    { echo "pip install '$ansible' with $python failed:"; tail -n 5 "$venv.log"; } >"$venv/UNAVAILABLE"
    echo "setup-ansible: ansible-core could not be installed; its tests will skip (see $venv/UNAVAILABLE)" >&2
    exit 0
fi
rm -f "$venv.log"
touch "$stamp"
"$venv/bin/python" -c 'from importlib.metadata import version; print("setup-ansible: ansible-core", version("ansible-core"))' >&2
