"""Agent plans and run ids: what the controller sends each host (docs/agent-protocol.md).

Pure functions: the same host, mode, clock and playbook always give the same plan, so a dry run
and a real run with the same `now_ms` make the same decisions on the same files.
"""
from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone
from typing import Optional

from fleet.config.inventory import Host
from fleet.config.playbook import Playbook
from fleet.hostside.protocol import BACKUP_DEFAULTS, MODES, PROTOCOL_VERSION


def new_run_id(now: Optional[datetime] = None) -> str:
    """A run id like "20261121T101500Z-3fa2c1": UTC time of the run plus 6 random hex digits."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def now_ms() -> int:
    """The run's clock in epoch milliseconds (every age decision on every host uses it)."""
    return int(time.time() * 1000)


def backup_target(to: Optional[str], playbook_dir: Optional[str]) -> dict:
    """The plan's backup.to and backup.dir for a backup_to value (the playbook's `[backup] to`,
    else the host's `backup_to`): a folder on the host becomes to = "host" with that dir."""
    if to in (None, "host", "controller", "auto"):
        return {"to": to or "host", "dir": playbook_dir}
    return {"to": "host", "dir": to}


def build_plan(host: Host, mode: str, run_id: str, now_ms: int, dry_run: bool = False,
               playbook: Optional[Playbook] = None, restore: Optional[dict] = None) -> dict:
    """The plan for `host`: state dir and agents from the inventory, operations from the playbook.

    A scan carries no operations; a run needs a playbook (its `operations` and `backup` sections,
    already in bytes and seconds); a restore carries the `restore` section.
    """
    if mode not in MODES:
        raise ValueError(f"unknown plan mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "run" and playbook is None:
        raise ValueError("a run plan needs a playbook")
    agents = host.agents
    backup = dict(BACKUP_DEFAULTS)
    if playbook is not None:
        backup.update(playbook.backup or {})
    # The playbook's [backup] to when it has one, else the host's backup_to.
    to = playbook.backup.get("to") if playbook is not None else None
    backup.update(backup_target(to or host.backup_to, backup.get("dir")))
    operations = dict(playbook.operations) if (playbook is not None and mode == "run") else {}
    if "sqlite" in operations:
        # The host's own OpenClaw CLI makes the SQLite-era changes; without one, none are made.
        cmd = host.openclaw_cmd
        operations["sqlite"] = {**operations["sqlite"], "openclaw_cmd": list(cmd) if cmd else None}
    return {
        "protocol": PROTOCOL_VERSION,
        "mode": mode,
        "run_id": run_id,
        "now_ms": int(now_ms),
        "dry_run": bool(dry_run),
        "state_dir": host.state_dir,
        "agents": list(agents) if agents is not None else None,
        "backup": backup,
        "operations": operations,
        "restore": restore if mode == "restore" else None,
    }
