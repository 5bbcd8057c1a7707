"""`fleet scan` and `fleet run`: validate everything, reach every host in parallel, return the result.

Order of work (the same for both): load and validate the playbook and the inventory — any problem
is a ConfigError, exit 2, nothing contacted — select hosts, run one plan per host through
`fleet.control.progress.run_hosts`, and return one `RunResult`. Recording, printing and the exit
status are `fleet.control.finish.finish`'s: a result is a value, usable by a schedule or a test
as it is.
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from fleet.config.fleetconf import load_fleet_config
from fleet.config.inventory import Host, load_inventory
from fleet.config.playbook import Playbook, load_playbook
from fleet.config.selection import select_hosts
from fleet.control.plan import build_plan, new_run_id, now_ms
from fleet.control.journal import absorb, known_runs, with_journals
from fleet.control.progress import run_hosts
from fleet.errors import UsageError
from fleet.report.history import fleet_key
from fleet.report.results import RunResult


def iso(moment: datetime) -> str:
    """UTC, to the second, with a Z: how runs record their start and end."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _warn(message: str) -> None:
    print(f"fleet: warning: {message}", file=sys.stderr)


def _execute(kind: str, inventory: Path, limit: Optional[str], forks: Optional[int], dry_run: bool,
             accept_new_host_keys: bool, playbook: Optional[Playbook] = None) -> RunResult:
    """Everything between a validated config and a RunResult (shared by scan and run)."""
    inv = load_inventory(Path(inventory))
    hosts = select_hosts(inv, limit)
    for warning in inv.warnings:
        _warn(warning)
    if forks is not None and forks < 1:
        raise UsageError(f"--forks must be at least 1, got {forks}")
    health = load_fleet_config(Path(inventory)).thresholds.plan_health()   # a bad fleet.toml: exit 2 here
    started = datetime.now(timezone.utc)
    run_id = new_run_id(started)
    clock = now_ms()

    known = known_runs(h.name for h in hosts)

    def plan_for(host: Host) -> dict:
        plan = build_plan(host, kind, run_id, clock, dry_run=dry_run, playbook=playbook, health=health)
        return with_journals(plan, known[host.name], playbook.name if playbook is not None else None)

    results = run_hosts(hosts, plan_for, forks, accept_new_host_keys)
    absorb(results)     # runs the hosts' journals know and this history does not (yet)
    return RunResult(run_id=run_id, kind=kind, playbook=playbook.name if playbook is not None else None,
                     dry_run=dry_run, started_at=iso(started), finished_at=iso(datetime.now(timezone.utc)),
                     hosts=tuple(results), extra={"inventory": fleet_key(inventory)})   # its fleet's history


def scan(inventory: Path, limit: Optional[str] = None, forks: Optional[int] = None,
         accept_new_host_keys: bool = False) -> RunResult:
    """Read-only sizes, records and health on every selected host."""
    return _execute("scan", inventory, limit, forks, False, accept_new_host_keys)


def run(playbook: str, inventory: Path, limit: Optional[str] = None, forks: Optional[int] = None,
        dry_run: bool = False, accept_new_host_keys: bool = False) -> RunResult:
    """Back up, then trim/prune per `playbook` on every selected host (`dry_run`: write nothing)."""
    book = load_playbook(playbook)        # validated before the inventory's hosts are contacted
    for warning in book.warnings:
        _warn(warning)
    return _execute("run", inventory, limit, forks, dry_run, accept_new_host_keys, playbook=book)
