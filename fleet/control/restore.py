"""`fleet restore RUN_ID`: put a recorded run's backups back on its hosts, through the agent.

Order of work: load the run from the history (unknown id → exit 2), build one restore plan per
host from the run's file records (only files that have a backup; `--host` / `--agent` narrow
it; `-l/--limit` selects hosts from the inventory as every command does; nothing to restore
is an error), check every host is still in the inventory, run the plans in parallel (plan mode
"restore") and return the restore as a run of its own (kind "restore", `restored_run` naming the
original), which `finish` records and prints like any run.

The agent does the careful part (fleet/hostside/restore.py): it verifies each backup's sha256,
refuses a file that changed after the run unless `--force`, backs up what it overwrites and
writes atomically. Exit status: 0 all restored (or already as in the backup); 1 a host failed
or a file was refused or could not be restored; 2 bad run id or usage (an unknown host, group or
agent included); 130 interrupted.
"""
from __future__ import annotations

import posixpath
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from fleet.config.inventory import Host, load_inventory
from fleet.control.controller import iso
from fleet.control.plan import build_plan, new_run_id, now_ms
from fleet.control.progress import run_hosts
from fleet.errors import NothingToRestore, UsageError
from fleet.config.selection import select_hosts
from fleet.report.history import fleet_key, load_run
from fleet.report.results import FileResult, HostResult, RunResult

# Actions after which the file is no longer at its path: the restore expects it absent.
GONE_ACTIONS = ("delete", "archive")


def _original_backup(host: HostResult, f: FileResult) -> tuple[str, str]:
    """(backup path, sha256) of the file as it was before the run.

    A file changed twice in one run has one backup per change (x, x.2, …); the record may name
    a later one. The first one, of the original bytes, sits at `<run backup dir>/<path>`: when the
    recorded backup is not of the original (its sha differs from `before`), point there. The agent
    verifies the sha256 anyway, so a wrong guess is refused, never restored.
    """
    if f.backup_sha256 == f.before.sha256 or not (host.backup_dir and f.before.sha256):
        return f.backup or "", f.backup_sha256 or ""
    if (f.backup or "").startswith("controller:"):
        # Kept on the controller (backup_to = "controller"): <run folder>/<path>[.N].gz there.
        at = f.backup.rfind("/" + f.path + ".")
        if at < 0:
            return f.backup, f.backup_sha256 or ""
        return f"{f.backup[:at]}/{f.path}.gz", f.before.sha256
    first = posixpath.join(host.backup_dir, f.path) + (".gz" if (f.backup or "").endswith(".gz") else "")
    return first, f.before.sha256


def restore_files(host: HostResult, agent: Optional[str] = None) -> list[dict]:
    """The `restore.files` entries for one host of a recorded run (pure)."""
    entries, seen = [], set()
    for f in host.files:
        if not f.backup or not f.backup_sha256 or f.error or f.path in seen:
            continue
        if agent and f.agent != agent:
            continue
        seen.add(f.path)
        backup, backup_sha = _original_backup(host, f)
        gone = f.archived_to is not None or f.action in GONE_ACTIONS
        entries.append({"path": f.path, "backup": backup, "backup_sha256": backup_sha,
                        "expect_sha256": None if gone else f.after.sha256,
                        "archived_to": f.archived_to, "agent": f.agent, "kind": f.kind})
    return entries


def restore_sections(run: RunResult, host: Optional[str], agent: Optional[str], force: bool) -> dict[str, dict]:
    """host name → the plan's `restore` section, for every host of `run` with something to restore."""
    hosts = [h for h in run.hosts if h.ok and (host is None or h.host == host)]
    if host is not None and not any(h.host == host for h in run.hosts):
        names = ", ".join(h.host for h in run.hosts) or "none"
        raise UsageError(f"run {run.run_id} has no host {host!r} (hosts: {names})")
    sections = {}
    for h in hosts:
        files = restore_files(h, agent)
        if files:
            sections[h.host] = {"files": files, "force": bool(force), "state_dir": h.state_dir}
    return sections


def check_agent(run: RunResult, agent: Optional[str]) -> None:
    """UsageError (exit 2) when `agent` has no file in `run`, naming the agents it has."""
    if agent is None:
        return
    agents = sorted({f.agent for h in run.hosts for f in h.files if f.agent})
    if agent not in agents:
        raise UsageError(f"run {run.run_id} has no agent {agent!r} (agents: {', '.join(agents) or 'none'})")


def _check_restorable(run: RunResult) -> None:
    if run.kind == "scan":
        raise UsageError(f"run {run.run_id} is a scan: it changed nothing, there is nothing to restore")
    if run.dry_run:
        raise UsageError(f"run {run.run_id} was a dry run: it changed nothing, there is nothing to restore")


def _plan_for(sections: dict[str, dict], run_id: str, clock: int, dry_run: bool):
    def plan_for(host: Host) -> dict:
        section = dict(sections[host.name])
        state_dir = section.pop("state_dir", None)
        plan = build_plan(host, "restore", run_id, clock, dry_run=dry_run, restore=section)
        if state_dir:
            # Restore where the run worked (the agent's resolved path), even if the inventory moved on.
            plan["state_dir"] = state_dir
        # A restore never expires backups: it may be reading the oldest ones.
        plan["backup"] = dict(plan["backup"], keep_runs=None, max_age_s=None)
        return plan

    return plan_for


def restore(run_id: str, inventory: Path, host: Optional[str] = None, agent: Optional[str] = None,
            dry_run: bool = False, force: bool = False, accept_new_host_keys: bool = False,
            limit: Optional[str] = None, forks: Optional[int] = None) -> RunResult:
    """Put run `run_id`'s backups back on its hosts; the restore's own RunResult (kind "restore").

    Raises UnknownRunError for an unknown id; UsageError for a scan or dry run, a host or agent
    the run did not have, a `limit` naming no host, or a host the inventory lost; and
    NothingToRestore when no selected file has a backup.
    """
    original = load_run(run_id)
    _check_restorable(original)
    check_agent(original, agent)
    sections = restore_sections(original, host, agent, force)
    if limit is not None:
        # The same selection as scan and run (unknown names are exit 2), narrowed to the run's hosts.
        chosen = {h.name for h in select_hosts(load_inventory(Path(inventory)), limit)}
        sections = {name: section for name, section in sections.items() if name in chosen}
    if forks is not None and forks < 1:
        raise UsageError(f"--forks must be at least 1, got {forks}")
    if not sections:
        what = " ".join(x for x in (f"host {host}" if host else "", f"--limit {limit}" if limit else "",
                                    f"agent {agent}" if agent else "") if x)
        raise NothingToRestore(f"run {original.run_id} has no backups to restore{' for ' + what if what else ''}")
    inv = load_inventory(Path(inventory))
    missing = [name for name in sections if name not in inv.hosts]
    if missing:
        raise UsageError(f"{inventory}: host(s) {', '.join(missing)} of run {original.run_id} are not in the "
                         f"inventory; add them back or restore the others with --host")
    targets = [inv.hosts[name] for name in sections]
    started = datetime.now(timezone.utc)
    restore_id = new_run_id(started)
    results = run_hosts(targets, _plan_for(sections, restore_id, now_ms(), dry_run), forks, accept_new_host_keys)
    return RunResult(run_id=restore_id, kind="restore", playbook=None, dry_run=dry_run,
                     started_at=iso(started), finished_at=iso(datetime.now(timezone.utc)),
                     hosts=tuple(results), extra={"restored_run": original.run_id, "force": bool(force),
                                                  "inventory": fleet_key(inventory)})
