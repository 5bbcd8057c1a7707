"""Complete the history from the hosts' journals: the host is the record of what happened to it.

Every changing run keeps a journal on its host (`<backups>/<run_id>/.fleet-journal.jsonl`, see
fleet/hostside/journal.py). Plans carry a `journals` request naming the runs this control host
already holds complete for that host (`known_runs`); the agent answers with the reconstructed
result of every other journaled run there: runs this control host recorded as interrupted or
failed (Ctrl-C, a kill, a lost connection), and runs it never saw (another control host's, or a
laptop that died mid-run). `absorb` records them: a run already in the history gets that host's
result replaced; an unknown run is recorded as started by the controller its journal names.

Scans and runs ask on every contact (`with_journals`); `fleet history sync` asks on its own
(plan mode "journals", read-only, it never waits for a run); `fleet restore` asks when the run
is unknown here or incomplete, so a restore works from a second control host.
"""
from __future__ import annotations

import getpass
import json
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Optional

from fleet.home import control_dir
from fleet.report.history import opened, record_run
from fleet.report.results import HostResult, RunResult, parse_agent_output

KNOWN_LIMIT = 500          # the newest complete runs per host; hosts keep 10 runs' journals by default
SYNCED_FILE = "journal-synced.txt"


def origin(playbook: Optional[str] = None) -> dict:
    """Who sends the plan: shown by a host that is busy with it, kept in its journal."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return {"user": user, "host": socket.gethostname(), "playbook": playbook}


def _synced_path() -> Path:
    return control_dir() / SYNCED_FILE


def _synced() -> dict[str, set[str]]:
    """host → run ids whose journals were already recorded from that host."""
    try:
        lines = _synced_path().read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    out: dict[str, set[str]] = {}
    for host, _, run in (line.partition(" ") for line in lines):
        out.setdefault(host, set()).add(run)
    return out


def _mark_synced(host: str, run_id: str) -> None:
    path = _synced_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{host} {run_id}\n")


def known_runs(hosts: Iterable[str]) -> dict[str, list[str]]:
    """host → run ids this history holds complete for it (so the host need not send them).
    One query and one read of the synced list for the whole run, not one per host."""
    names = set(hosts)
    known: dict[str, set[str]] = {name: set() for name in names}
    try:
        with opened() as db:
            rows = db.execute("SELECT h.host, h.run_id FROM hosts h JOIN runs r ON r.run_id = h.run_id"
                              " WHERE h.ok = 1 AND r.kind IN ('run', 'restore') AND r.dry_run = 0"
                              " ORDER BY h.run_id DESC").fetchall()
    except Exception:  # noqa: BLE001 - no history yet (or unreadable): ask for everything
        rows = []
    for host, run_id in rows:
        if host in names and len(known[host]) < KNOWN_LIMIT:
            known[host].add(run_id)
    synced = _synced()
    return {name: sorted(known[name] | synced.get(name, set())) for name in names}


def with_journals(plan: dict, known: list[str], playbook: Optional[str] = None) -> dict:
    """`plan` plus the origin and the journals request (`known`: the host's known_runs)."""
    plan = dict(plan)
    plan["origin"] = origin(playbook)
    plan["journals"] = {"known": known}
    return plan


def _host_result(host: str, doc: dict) -> HostResult:
    status = (doc.get("journal") or {}).get("status")
    code = 0 if doc.get("ok") else 1
    result = parse_agent_output(host, json.dumps(doc), "", code, float(doc.get("elapsed_s") or 0.0))
    if status in ("killed", "interrupted"):
        result = replace(result, ok=False, interrupted=True,
                         error=result.error or "interrupted (recovered from the host's journal)")
    return result


def _controller_of(run_id: str) -> Optional[str]:
    with opened() as db:
        row = db.execute("SELECT controller FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return row[0] if row else None


def _load_exact(run_id: str) -> Optional[RunResult]:
    from fleet.report.history import decode_document

    with opened() as db:
        row = db.execute("SELECT document FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return RunResult.from_json(decode_document(row["document"])) if row else None


def merge_journal(host: str, doc: dict) -> str:
    """Record one host journal's run in the history; returns a line for the operator."""
    run_id = doc["run_id"]
    journal = doc.get("journal") or {}
    started_by = (journal.get("origin") or {}).get("controller") or "an unknown controller"
    result = _host_result(host, doc)
    existing = _load_exact(run_id)
    if existing is not None:
        hosts = [result if h.host == host else h for h in existing.hosts]
        if not any(h.host == host for h in existing.hosts):
            hosts.append(result)
        merged = replace(existing, hosts=tuple(hosts))
        controller = _controller_of(run_id)
    else:
        playbook = (journal.get("origin") or {}).get("playbook")
        merged = RunResult(run_id=run_id, kind=doc.get("mode") or "run", playbook=playbook, dry_run=False,
                           started_at=doc.get("started_at") or "", hosts=(result,),
                           finished_at=doc.get("finished_at") or doc.get("started_at") or "",
                           extra={"recovered_from": "host journal"})
        controller = started_by
    record_run(merged, meta={"controller": controller, "argv": ["(from the journal on %s)" % host]})
    if journal.get("status") != "running":
        _mark_synced(host, run_id)
    changed = sum(1 for f in result.files if f.action not in ("none", "skip"))
    return (f"{host}: run {run_id} ({journal.get('status')}, started by {started_by}): "
            f"{changed} changed file(s) recorded from the host's journal")


def absorb(results: Iterable[HostResult], quiet: bool = False) -> list[str]:
    """Record every journal the hosts sent; returns the lines said (also on stderr unless quiet).
    Never raises: the run at hand is recorded whatever happens here."""
    lines = []
    for h in results:
        for doc in h.journals:
            try:
                lines.append(merge_journal(h.host, doc))
            except Exception as exc:  # noqa: BLE001 - a bad journal must not lose the current run
                lines.append(f"{h.host}: could not record journal of run {doc.get('run_id')}: {exc}")
    if not quiet:
        for line in lines:
            print(f"fleet: {line}", file=sys.stderr)
    return lines


def sync_hosts(hosts: list, accept_new_host_keys: bool, forks: Optional[int] = None) -> list[HostResult]:
    """Ask `hosts` for their journals (read-only, never waits for a run) and record them."""
    from fleet.control.plan import build_plan, new_run_id, now_ms
    from fleet.control.runner import run_plans

    sync_id, clock = new_run_id(), now_ms()
    known = known_runs(h.name for h in hosts)

    def plan_for(host: Any) -> dict:
        return with_journals(build_plan(host, "journals", sync_id, clock), known[host.name])

    results = run_plans(hosts, plan_for, forks=forks, accept_new_host_keys=accept_new_host_keys)
    absorb(results)
    return results


def sync_command(inventory: Path, limit: Optional[str], forks: Optional[int], accept_new_host_keys: bool) -> int:
    """`fleet history sync`: complete the history from the selected hosts' journals."""
    from fleet.errors import ExitStatus
    from fleet.config.inventory import load_inventory
    from fleet.config.selection import select_hosts

    inv = load_inventory(Path(inventory))
    hosts = select_hosts(inv, limit)
    results = sync_hosts(hosts, accept_new_host_keys, forks)
    failed = [h for h in results if not h.ok]
    for h in failed:
        print(f"fleet: {h.host}: journals not read: {h.error}", file=sys.stderr)
    found = sum(len(h.journals) for h in results)
    print(f"fleet: history sync: {len(results) - len(failed)}/{len(results)} host(s) read, "
          f"{found} run(s) completed from their journals", file=sys.stderr)
    return int(ExitStatus.FAILED if failed else ExitStatus.OK)
