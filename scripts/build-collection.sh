#!/bin/sh
# Build the fleet.openclaw Ansible collection from this checkout into dist/ (or $1):
# ansible_collections/fleet/openclaw plus the exact bytes of `fleet agent export`, embedded.
#   scripts/build-collection.sh            # -> dist/fleet-openclaw-<fleet version>.tar.gz
#   ansible-galaxy collection install dist/fleet-openclaw-*.tar.gz
# ansible-galaxy: $ANSIBLE_GALAXY, else .venv-ansible's (scripts/setup-ansible.sh), else from PATH.
set -eu
cd "$(dirname "$0")/.."
galaxy=${ANSIBLE_GALAXY:-}
if [ -z "$galaxy" ]; then
    if [ -x .venv-ansible/bin/ansible-galaxy ]; then galaxy=.venv-ansible/bin/ansible-galaxy; else galaxy=ansible-galaxy; fi
fi
python=.venv/bin/python
[ -x "$python" ] || python=python3
exec "$python" -m fleet.control.collection build --out "${1:-dist}" --ansible-galaxy "$galaxy"
