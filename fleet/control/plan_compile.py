"""`fleet playbook compile NAME`: the plan `fleet run NAME` sends, for another engine to run.

The Ansible collection's module (ansible_collections/fleet/openclaw) takes this plan and adds only
what belongs to the host (state dir, agents, the host's OpenClaw CLI) and the dry-run flag (check
mode), as `fleet.control.plan.build_plan` adds them from the inventory: the policy stays in
fleet's playbook, never in a second copy on the Ansible side.

The plan carries a fresh run id and clock (as `fleet run` makes them), so compile it once per run
and give every host the same plan; `--run-id` / `--now-ms` fix them (to repeat a run's decisions).
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Optional

from fleet.config.playbook import load_playbook
from fleet.control.plan import build_plan, new_run_id, now_ms
from fleet.errors import UsageError

# The agent's rule for run ids (docs/agent-protocol.md): they name a backup folder on every host.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class AnyHost:
    """No inventory: the host's values are left to whoever runs the plan (agent defaults otherwise)."""

    state_dir: Optional[str] = None
    agents: Optional[tuple] = None
    openclaw_cmd: Optional[tuple] = None
    backup_to: Optional[str] = None     # the playbook's [backup] to, else the host folder


def compile_plan(playbook: str, run_id: Optional[str] = None, clock_ms: Optional[int] = None) -> dict:
    """The run plan of `playbook` (name or path) with no host values, plus `"playbook": NAME`."""
    if run_id is not None and not SAFE_ID.fullmatch(run_id):
        raise UsageError(f"--run-id {run_id!r}: letters, digits, '.', '_' and '-' only")
    if clock_ms is not None and clock_ms <= 0:
        raise UsageError(f"--now-ms must be epoch milliseconds, got {clock_ms}")
    book = load_playbook(playbook)
    for warning in book.warnings:
        print(f"fleet: warning: {warning}", file=sys.stderr)
    plan = build_plan(AnyHost(), "run", run_id or new_run_id(), now_ms() if clock_ms is None else clock_ms,
                      dry_run=False, playbook=book)
    plan["playbook"] = book.name
    return plan


def compile_command(playbook: str, run_id: Optional[str], clock_ms: Optional[int]) -> int:
    """Print the compiled plan as one JSON document; the exit status (2 on a bad playbook)."""
    print(json.dumps(compile_plan(playbook, run_id, clock_ms), indent=2))
    return 0
