"""The host's journal after a SIGKILL anywhere: it knows exactly which files changed, and a restore
built from it alone brings every one back byte-identical.

The real exported agent is killed at sampled write steps (its fault hook, see crashkit); then
`journal.reconstruct` reads `<backups>/<run_id>/.fleet-journal.jsonl` (what a controller that never
saw the run gets from the host), the restore plan is built from that document by the controller's
own `restore_files`, and the real agent runs it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import crashkit as ck
from fleet.hostside.journal import JOURNAL_NAME, reconstruct
from fleet.report.results import HostResult, parse_agent_output

SAMPLE = 24
SHARDS = 3
RESTORE_ID = "20261118T070000Z-restor"


@pytest.fixture(scope="module")
def enumeration(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("journal-enum")
    agent = ck.export(tmp)
    state = ck.build_state(tmp / "state")
    log = tmp / "steps.log"
    done = ck.run_agent(agent, ck.plan_for(state), tmp / "plan.json", fault_log=log)
    assert done.code == 0, done.stderr
    steps = ck.read_steps(log)
    return agent, steps, ck.pick_points(steps, SAMPLE), done.result


def changed_paths(original: dict, state: Path) -> set:
    """Paths of the original files that are no longer byte-identical (or gone). OpenClaw's store
    lock is not data: the run takes a stale one over (its pid inside) and removes it after."""
    now = ck.snapshot(state)
    return {rel for rel, data in original.items() if now.get(rel) != data and not rel.endswith("sessions.json.lock")}


def journal_host(state: Path) -> HostResult:
    doc = reconstruct(str(state / "fleet-backups" / ck.RUN_ID))
    assert doc is not None, "no journal"
    return parse_agent_output("h", json.dumps(doc), "", 0 if doc.get("ok") else 1, 0.0), doc


def restore_from(agent: Path, host: HostResult, state: Path, tmp: Path) -> ck.AgentExit:
    from fleet.control.restore import restore_files

    plan = ck.plan_for(state, run_id=RESTORE_ID)
    plan.update(mode="restore", operations={}, restore={"files": restore_files(host), "force": False},
                backup=dict(plan["backup"], keep_runs=None))
    return ck.run_agent(agent, plan, tmp / "restore-plan.json")


def test_a_whole_run_journals_what_its_result_says(enumeration, tmp_path):
    agent, _steps, _points, _result = enumeration
    state = ck.build_state(tmp_path / "state")
    done = ck.run_agent(agent, ck.plan_for(state), tmp_path / "plan.json")
    host, doc = journal_host(state)
    assert doc["journal"]["status"] == "complete"
    changed = {f["path"] for f in done.result["files"] if f["action"] not in ("none", "skip")}
    assert {f.path for f in host.files if f.action not in ("none", "skip")} == changed
    lines = (state / "fleet-backups" / ck.RUN_ID / JOURNAL_NAME).read_text().splitlines()
    assert json.loads(lines[0])["e"] == "start" and json.loads(lines[-1])["e"] == "end"


def kill_and_restore(agent: Path, steps, k: int, tmp: Path) -> None:
    state = ck.build_state(tmp / "state")
    original = ck.snapshot(state)
    crashed = ck.run_agent(agent, ck.plan_for(state), tmp / "plan.json", fault_at=k)
    assert crashed.code == -9, f"step {k}: not killed ({crashed.code})"
    changed = changed_paths(original, state)
    host, doc = journal_host(state)
    assert doc["journal"]["status"] == "killed"
    reported = {f.path for f in host.files if f.action not in ("none", "skip") and f.backup}
    assert reported == changed, f"step {k} ({steps[k - 1]}): journal says {sorted(reported ^ changed)}"
    if not changed:
        return
    restored = restore_from(agent, host, state, tmp)
    assert restored.code == 0, f"step {k}: restore failed: {restored.result and restored.result['files']}"
    now = ck.snapshot(state)
    for rel in sorted(changed):
        assert now.get(rel) == original[rel], f"step {k}: {rel} not restored byte-identical"


@pytest.mark.parametrize("shard", range(SHARDS))
def test_kill_anywhere_the_journal_knows_and_restore_puts_back(enumeration, tmp_path, shard):
    agent, steps, points, _result = enumeration
    mine = points[shard::SHARDS]
    assert mine
    for k in mine:
        kill_and_restore(agent, steps, k, tmp_path / f"k{k}")
