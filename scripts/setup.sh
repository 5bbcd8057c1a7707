#!/usr/bin/env bash
# Set up fleet on a fresh Debian machine: system packages, a virtualenv, fleet itself.
#   scripts/setup.sh          # for the demo: openssh-server + fleet
#   scripts/setup.sh test     # for the tests: also the test extras, cron, sudo, an unprivileged user
# Idempotent: a second run only checks. Runs as root, or uses sudo for the system part.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-demo}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pkgs=()
[ -x /usr/sbin/sshd ] || pkgs+=(openssh-server)
if [ "$mode" = test ]; then
  command -v crontab >/dev/null || pkgs+=(cron)
  command -v sudo >/dev/null || pkgs+=(sudo)
  command -v systemd-analyze >/dev/null || pkgs+=(systemd)
  command -v chromium >/dev/null || pkgs+=(chromium)
  # A real Python older than 3.8 (Jython 2.7; Debian 12 has no CPython < 3.11): the bootstrap must
  # tell a too-old host interpreter apart and say so (tests/pythons.py finds what a machine has).
  command -v jython >/dev/null || pkgs+=(jython)
fi
python3 -c 'import venv, ensurepip' 2>/dev/null || pkgs+=(python3-venv)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${pkgs[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

# sshd refuses to start without its privilege-separation directory.
[ -d /run/sshd ] || as_root install -d -m 0755 /run/sshd

if [ "$mode" = test ]; then
  # An unprivileged user, so permission tests are real (root ignores file modes).
  id fleet-test >/dev/null 2>&1 || as_root useradd --create-home --shell /bin/bash fleet-test
  # useradd leaves the password locked ('!'); without PAM, sshd then refuses even key logins.
  if as_root grep -q '^fleet-test:!' /etc/shadow; then as_root usermod -p '*' fleet-test; fi
fi

if [ "$mode" = test ]; then
  # OpenClaw's own loader judges our trims (tests/interop): Node 24 + openclaw from the npm registry, cached.
  command -v npm >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  scripts/install-openclaw.sh 2026.7.1 2026.8.2 2026.9.5 2026.9.6 >/dev/null
fi

if [ "$mode" = test ]; then
  # ansible-core in its own venv (.venv-ansible) for the Ansible collection's tests, cached.
  scripts/setup-ansible.sh
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
if [ "$mode" = test ]; then spec=".[test]"; else spec="."; fi
stamp=".venv/.fleet-installed-$mode"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
  touch "$stamp"
fi
