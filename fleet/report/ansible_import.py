"""`fleet import-ansible FILE`: record what Ansible's fleet.openclaw.cleanup module did as a fleet run.

The module returns the host-side program's own result document (docs/agent-protocol.md), so each
host's outcome is read by the same `parse_agent_output` as `fleet run` reads it: the recorded run
is the run `fleet run` would have recorded, and `fleet report`, `fleet report --trend` and
`fleet restore RUN_ID` treat it like one.

FILE is one of (detected by shape):
- the collection's callback file (`fleet.openclaw.fleet_results`, schema "fleet.ansible-results/1");
- the `ansible.posix.json` stdout callback's document (`plays[].tasks[].hosts`);
- a mapping host name → the module's registered result (e.g. written with `copy: content=`).

Every result of the module counts; results are grouped into runs by their run id (one compiled
plan per play gives every host the same id). A host that was unreachable, or whose module failed
before the agent answered, becomes a failed host of the run its task belongs to. Exit status: 0
every host and file ok; 1 a host or file failed (the run is recorded all the same); 2 FILE is
unreadable or holds no result of the module.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from fleet.errors import UsageError
from fleet.report.results import HostResult, RunResult, parse_agent_output

CALLBACK_SCHEMA = "fleet.ansible-results/1"
MODULE_ACTIONS = ("fleet.openclaw.cleanup", "cleanup")
MODULE_MARK = "agent_sha256"        # a key every result of the module carries, failed ones too
# The agent's rule for run ids (docs/agent-protocol.md): the id names the hosts' backup folders.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Outcome:
    """One host's result of one task running the module."""

    host: str
    status: str          # "ok" | "failed" | "unreachable"
    result: dict
    task: str            # which task it came from: unreachable hosts join that task's run


def _status(result: dict) -> str:
    if result.get("unreachable"):
        return "unreachable"
    return "failed" if result.get("failed") else "ok"


def _ours(result: Any, action: Any = None) -> bool:
    return isinstance(result, dict) and (action in MODULE_ACTIONS or result.get("action") in MODULE_ACTIONS
                                         or MODULE_MARK in result)


def read_outcomes(doc: Any, source: str) -> tuple[list[Outcome], dict]:
    """The module's results in `doc` (any of the three shapes) and what the file says of the play."""
    if isinstance(doc, dict) and doc.get("schema") == CALLBACK_SCHEMA:
        outcomes = [Outcome(str(r["host"]), str(r.get("status") or _status(r["result"])), r["result"],
                            str(r.get("task", "")))
                    for r in doc.get("results") or () if isinstance(r, dict) and isinstance(r.get("result"), dict)]
        meta = {k: doc.get(k) for k in ("playbook", "started_at", "finished_at")}
    elif isinstance(doc, dict) and isinstance(doc.get("plays"), list):
        outcomes, meta = [], {}
        for p, play in enumerate(doc["plays"]):
            for t, task in enumerate(play.get("tasks") or ()):
                for host, result in (task.get("hosts") or {}).items():
                    if _ours(result, result.get("action") if isinstance(result, dict) else None):
                        outcomes.append(Outcome(str(host), _status(result), result, f"{p}.{t}"))
    elif isinstance(doc, dict) and doc and all(isinstance(v, dict) for v in doc.values()):
        # Registered results: a host the module never answered has a stub saying so (the example
        # playbook writes {"unreachable": true, "msg": …}); it is a failed host of the run.
        outcomes = [Outcome(str(h), _status(r), r, "") for h, r in doc.items()
                    if _ours(r) or r.get("unreachable")] if any(_ours(r) for r in doc.values()) else []
        meta = {}
    else:
        raise UsageError(f"{source}: not an Ansible result fleet can read (expected the fleet.openclaw.fleet_results "
                         "callback's file, ansible.posix.json output, or a mapping of hosts to module results)")
    if not outcomes:
        raise UsageError(f"{source}: holds no result of the fleet.openclaw.cleanup module; nothing to import")
    return outcomes, meta


def run_id_of(result: dict) -> str | None:
    """The run id the host's agent used, else the one the module was given."""
    if result.get("run_id"):
        return str(result["run_id"])
    args = (result.get("invocation") or {}).get("module_args") or {}
    return args.get("run_id") or (args.get("plan") or {}).get("run_id") or None


def host_result(outcome: Outcome) -> HostResult:
    """The HostResult `fleet run` would have made of the same agent answer."""
    result = outcome.result
    if outcome.status == "unreachable":
        return HostResult.failed(outcome.host, f"unreachable: {result.get('msg') or 'no reason given'}")
    if "protocol" not in result:
        return HostResult.failed(outcome.host, f"the module failed: {result.get('msg') or 'no reason given'}",
                                 stderr_tail=str(result.get("stderr_tail") or ""))
    rc = result.get("rc")
    return parse_agent_output(outcome.host, json.dumps(result), str(result.get("stderr_tail") or ""),
                              rc if isinstance(rc, int) else None, float(result.get("elapsed_s") or 0.0))


def _iso_seconds(value: str | None) -> str | None:
    """The agent's "2026-11-21T10:15:00.123Z" as fleet writes times: "2026-11-21T10:15:00Z"."""
    if not value:
        return None
    return value.split(".")[0].rstrip("Z") + "Z"


def build_runs(outcomes: Iterable[Outcome], meta: dict, source: str, inventory: str | None = None) -> list[RunResult]:
    """One RunResult per run id, hosts by name (Ansible reports them as they finish; a host's last
    result in the run wins)."""
    outcomes = list(outcomes)
    ids_by_task: dict[str, list[str]] = {}
    for o in outcomes:
        rid = run_id_of(o.result)
        if rid and rid not in ids_by_task.setdefault(o.task, []):
            ids_by_task[o.task].append(rid)
    all_ids = list(dict.fromkeys(rid for ids in ids_by_task.values() for rid in ids))
    if not all_ids:
        raise UsageError(f"{source}: no result of fleet.openclaw.cleanup names a run id (every host failed before "
                         "its agent ran); nothing to import")
    unsafe = [rid for rid in all_ids if not SAFE_ID.fullmatch(rid)]
    if unsafe:
        raise UsageError(f"{source}: run id {unsafe[0]!r} is not one the agent makes or accepts "
                         "(letters, digits, '.', '_', '-'); nothing imported")
    hosts: dict[str, dict[str, Outcome]] = {rid: {} for rid in all_ids}
    for o in outcomes:
        rid = run_id_of(o.result)
        for target in ([rid] if rid else ids_by_task.get(o.task) or all_ids):
            hosts[target][o.host] = o
    runs = []
    for rid in all_ids:
        chosen = sorted(hosts[rid].values(), key=lambda o: o.host)
        docs = [o.result for o in chosen if "protocol" in o.result]
        playbooks = {d.get("playbook") for d in docs if d.get("playbook")}
        starts = sorted(filter(None, (_iso_seconds(d.get("started_at")) for d in docs)))
        ends = sorted(filter(None, (_iso_seconds(d.get("finished_at")) for d in docs)))
        runs.append(RunResult(
            run_id=rid, kind="run", playbook=playbooks.pop() if len(playbooks) == 1 else None,
            dry_run=any(bool(d.get("dry_run")) for d in docs),
            started_at=starts[0] if starts else (meta.get("started_at") or ""),
            finished_at=ends[-1] if ends else (meta.get("finished_at") or ""),
            hosts=tuple(host_result(o) for o in chosen),
            extra={"source": "ansible", "ansible": {"file": source, "playbook": meta.get("playbook")},
                   **({"inventory": inventory} if inventory else {})}))
    return runs


def import_runs(path: Path, inventory: Path = Path("inventory.toml")) -> list[RunResult]:
    """The runs in the Ansible results file `path`, as fleet runs of the fleet of `inventory`
    (named as `fleet run -i` names it: the inventory's absolute path). UsageError (exit 2, nothing
    recorded) for a file that cannot be read or holds no result of the module."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"cannot read the Ansible results {path}: {exc}") from exc
    outcomes, meta = read_outcomes(doc, str(path))
    return build_runs(outcomes, meta, str(path), str(Path(inventory).expanduser().resolve()))
