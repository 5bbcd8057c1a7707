"""`fleet inventory init`, and its read-only look at each host for OpenClaw state dirs (`--probe`).

One short POSIX shell command per host, over the same strict SSH connection a run uses (host
keys checked, ssh_config honoured). It only tests for directories and lists `agents/`: nothing is
written, no agent is uploaded. Hosts are probed in parallel; a host that cannot be reached is a
ProbeResult with `error`, never an exception.

Where it looks, in the agent's own order: $OPENCLAW_STATE_DIR, $OPENCLAW_HOME, ~/.openclaw, the
profiles ~/.openclaw-*, and the legacy ~/.clawdbot. A directory counts when it has `agents/`,
`openclaw.json` or `clawdbot.json`.
"""
from __future__ import annotations

import logging
import os
import shlex
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

log = logging.getLogger("fleet.probe")

PROBE_SCRIPT = r"""
for d in "${OPENCLAW_STATE_DIR:-}" "${OPENCLAW_HOME:-}" "$HOME/.openclaw" "$HOME"/.openclaw-* "$HOME/.clawdbot"; do
  [ -n "$d" ] && [ -d "$d" ] || continue
  if [ -d "$d/agents" ] || [ -f "$d/openclaw.json" ] || [ -f "$d/clawdbot.json" ]; then
    printf 'state\t%s\t' "$d"
    if [ -d "$d/agents" ]; then for a in "$d"/agents/*/; do [ -d "$a" ] && printf '%s ' "$(basename "$a")"; done; fi
    printf '\n'
  fi
done
printf 'home\t%s\n' "$HOME"
if command -v python3 >/dev/null 2>&1; then printf 'python3\tyes\n'; else printf 'python3\tno\n'; fi
"""


@dataclass
class ProbeResult:
    """What one host has: (state dir, agents) found, python3 present, or why it could not be looked at."""

    host: str
    state_dirs: list[tuple[str, list[str]]] = field(default_factory=list)
    python: Optional[bool] = None
    home: Optional[str] = None
    error: Optional[str] = None

    def is_default(self, state_dir: str) -> bool:
        """True for ~/.openclaw, which the agent uses when the inventory names no state_dir."""
        return bool(self.home) and state_dir.rstrip("/") == f"{self.home.rstrip('/')}/.openclaw"


def parse_probe_output(host: str, text: str) -> ProbeResult:
    """Read the probe script's tab-separated lines (pure)."""
    result = ProbeResult(host)
    for line in text.splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "state":
            path, _, agents = rest.partition("\t")
            if path and all(path != p for p, _ in result.state_dirs):
                result.state_dirs.append((path, agents.split()))
        elif kind == "python3":
            result.python = rest.strip() == "yes"
        elif kind == "home":
            result.home = rest.strip() or None
    return result


def probe_host(host: Any, accept_new_host_keys: bool = False) -> ProbeResult:
    """Probe one inventory Host (read-only); never raises for the host's own failure."""
    from fleet.control.transport import _connect, _connection
    from fleet.errors import ConnectionFailed

    if host.is_local:
        import subprocess

        done = subprocess.run(["sh", "-c", PROBE_SCRIPT], capture_output=True, text=True, timeout=60)
        return parse_probe_output(host.name, done.stdout)
    conn = None
    try:
        conn, hops = _connection(host, accept_new_host_keys, host.connect_timeout)
        log.info("%s: probing %s@%s:%s (read-only)", host.name, conn.user, conn.host, conn.port)
        _connect(conn, hops, host, host.connect_timeout)
        # /bin/sh whatever the login shell is (fish, tcsh), as the agent's bootstrap does.
        # With become_user, look where the agent will run: that user's home.
        command = f"exec /bin/sh -c {shlex.quote(PROBE_SCRIPT)}"
        if host.become_user:
            command = f"exec sudo -n -u {shlex.quote(host.become_user)} -H -- /bin/sh -c {shlex.quote(PROBE_SCRIPT)}"
        _, stdout, _ = conn.client.exec_command(command, timeout=host.connect_timeout + 20)
        text = stdout.read().decode("utf-8", "replace")
        log.debug("%s: probe said: %s", host.name, text.strip().replace("\n", " | "))
        return parse_probe_output(host.name, text)
    except ConnectionFailed as exc:
        return ProbeResult(host.name, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one host's surprise must not stop the others
        return ProbeResult(host.name, error=f"{type(exc).__name__}: {exc}")
    finally:
        if conn is not None:
            conn.close()


def probe_hosts(hosts: Sequence[Any], accept_new_host_keys: bool = False, forks: int = 20) -> dict[str, ProbeResult]:
    """Probe every host in parallel; host name → ProbeResult, in the order given."""
    if not hosts:
        return {}
    lock = threading.Lock()
    out: dict[str, ProbeResult] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts)))) as pool:
        for result in pool.map(lambda h: probe_host(h, accept_new_host_keys), hosts):
            with lock:
                out[result.host] = result
    return {h.name: out[h.name] for h in hosts}


def _draft_hosts(text: str, output: Path) -> list:
    """The inventory Hosts of a rendered draft, validated as `fleet inventory check` would.

    The text is loaded from a temp file beside `output`, so relative paths mean what they will
    mean there; a problem is reported against `output` (nothing has been written yet).
    """
    from fleet.config.inventory import load_inventory
    from fleet.errors import InventoryError

    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".toml", dir=output.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        try:
            return list(load_inventory(Path(tmp)).hosts.values())
        except InventoryError as exc:
            raise InventoryError([p.replace(tmp, f"{output} (not written)") for p in exc.problems]) from None
    finally:
        os.unlink(tmp)


def init_command(from_ssh_config: Optional[Path], from_ansible: Optional[Path], output: Path, probe: bool,
                 force: bool, accept_new_host_keys: bool) -> int:
    """`fleet inventory init`: draft, validate, optionally probe, then write; the exit status (0 or 2)."""
    from fleet.config.inventory_init import DEFAULT_SSH_CONFIG, apply_probe, from_ansible as ansible_draft
    from fleet.config.inventory_init import from_ssh_config as ssh_draft, render, write_inventory_file
    from fleet.errors import UsageError

    if from_ssh_config and from_ansible:
        raise UsageError("give --from-ssh-config or --from-ansible, not both")
    output = Path(output)
    if output.exists() and not force:
        write_inventory_file(output, "", force=False)       # raises the one "already exists" message
    draft = ansible_draft(Path(from_ansible)) if from_ansible else ssh_draft(Path(from_ssh_config or DEFAULT_SSH_CONFIG))
    hosts = _draft_hosts(render(draft), output)
    said = ""
    if probe and hosts:
        found = probe_hosts(hosts, accept_new_host_keys)
        apply_probe(draft, found)
        failed = [r.host for r in found.values() if r.error]
        empty = [r.host for r in found.values() if not r.error and not r.state_dirs]
        said = f"; probe: {len(found) - len(failed) - len(empty)} with an OpenClaw state dir"
        if failed:
            said += f"; {len(failed)} host{' could' if len(failed) == 1 else 's could'} not be probed " \
                    f"({', '.join(failed)})"
        if empty:
            said += f"; none found on {', '.join(empty)}"
        if failed or empty:
            said += ": written commented out, with the reason"
    kept = write_inventory_file(output, render(draft), force)
    n = sum(1 for h in draft.hosts if not h.left_out)
    print(f"fleet: wrote {output}: {n} host{'s' if n != 1 else ''} from {draft.source}{said}", file=sys.stderr)
    if kept is not None:
        print(f"fleet: the earlier file is kept as {kept}", file=sys.stderr)
    for line in draft.notes + [f"skipped {s}" for s in draft.skipped]:
        print(f"fleet: note: {line}", file=sys.stderr)
    flag = "" if output == Path("inventory.toml") else f" -i {output}"
    print(f"Next: fleet inventory check{flag}, then fleet run weekly --dry-run{flag} (neither changes anything)",
          file=sys.stderr)
    return 0
