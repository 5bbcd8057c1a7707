"""Transcript first passes made ahead on other cores (fleet/hostside/prescan.py) change nothing but time.

The real exported agent runs crashkit's plan (every operation has work) on several agents with
FLEET_AGENT_WORKERS=2, which turns the workers on whatever the data's size: the files it leaves,
and its records, are exactly those of a run without workers. Killed at sampled write steps, with
workers, every file is whole and no worker outlives the agent. And a scan is only ever used for
the very file it was made on: a file appended to after its scan is scanned again by the run.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import crashkit as ck
from fleet.hostside import prescan
from fleet.hostside.transcript import scan_transcript

SCALE = 3           # three agents, each with transcripts over both of the plan's tiers


def _comparable(result: dict) -> list:
    return sorted((f["path"], f.get("action"), f.get("error"), json_key(f.get("before")), json_key(f.get("after")))
                  for f in result["files"])


def json_key(value):
    return repr(sorted(value.items())) if isinstance(value, dict) else repr(value)


def _workers_alive(plan_path: Path) -> list:
    """Processes still running with this plan on their command line (forked workers share it)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if str(plan_path).encode() in cmdline:
                found.append(int(name))
    return found


def test_a_run_with_workers_leaves_exactly_what_a_run_without_them_leaves(tmp_path, monkeypatch):
    agent = ck.export(tmp_path)
    results, trees = {}, {}
    for workers in ("0", "2"):
        monkeypatch.setenv("FLEET_AGENT_WORKERS", workers)
        state = tmp_path / "state"          # one path for both: some files name their own folder
        shutil.rmtree(state, ignore_errors=True)
        ck.build_state(state, scale=SCALE)
        original = ck.snapshot(state)
        plan = ck.plan_for(state)
        done = ck.run_agent(agent, plan, tmp_path / f"plan-{workers}.json")
        assert done.code == 0, done.stderr
        assert ck.check_whole(original, state) == []
        results[workers] = done.result
        trees[workers] = ck.snapshot(state)
        assert _workers_alive(tmp_path / f"plan-{workers}.json") == []
    trims = [f for f in results["2"]["files"] if f.get("action") == "trim" and f["kind"] == "transcript"]
    assert len(trims) >= SCALE + 1, "the plan must trim several transcripts for workers to matter"
    assert "prescan" not in results["0"]
    assert results["2"]["prescan"]["workers"] == 2
    assert results["2"]["prescan"]["used"] >= len(trims), results["2"]["prescan"]
    assert _comparable(results["2"]) == _comparable(results["0"])
    assert trees["2"] == trees["0"]


def test_killed_mid_run_with_workers_every_file_is_whole_and_no_worker_is_left(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_AGENT_WORKERS", "2")
    agent = ck.export(tmp_path)
    state = ck.build_state(tmp_path / "enum", scale=SCALE)
    log = tmp_path / "steps.log"
    done = ck.run_agent(agent, ck.plan_for(state), tmp_path / "enum.json", fault_log=log)
    assert done.code == 0, done.stderr
    steps = ck.read_steps(log)
    trim_steps = [s.number for s in steps if s.phase in ("trim", "backup") and "trim" in s.name + s.phase]
    assert trim_steps
    points = sorted({trim_steps[0], trim_steps[len(trim_steps) // 2], trim_steps[-1], steps[-1].number})
    for k in points:
        state = ck.build_state(tmp_path / f"k{k}", scale=SCALE)
        original = ck.snapshot(state)
        plan_path = tmp_path / f"k{k}.json"
        crashed = ck.run_agent(agent, ck.plan_for(state), plan_path, fault_at=k)
        assert crashed.code != 0, "step %d did not kill the agent" % k
        deadline = time.monotonic() + 5
        while _workers_alive(plan_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _workers_alive(plan_path) == [], "workers outlived the agent killed at step %d" % k
        assert ck.check_whole(original, state) == [], k
        again = ck.run_agent(agent, ck.plan_for(state, ck.FOLLOW_UP_RUN_ID, ck.GEN_NOW_MS + 60_000),
                             tmp_path / f"k{k}-again.json")
        assert again.code == 0, again.stderr
        assert ck.check_whole(original, state) == [], k


def test_a_scan_is_used_only_for_the_file_it_was_made_on(tmp_path):
    """A file appended to after its scan was made gets None (the run scans it again); so do a file
    the run asks for after a later one of the same worker's, a path no job names, and a file asked
    twice. A scan handed out equals the one the run would have made itself."""
    import select
    from fleet.hostside.discover import discover
    from fleet.hostside.slim import Limits
    state = ck.build_state(tmp_path / "state", scale=SCALE)
    section = ck.plan_for(state)["operations"]["transcripts"]
    jobs = prescan.jobs_for(discover(str(state)), section)
    assert len(jobs) >= 3
    first, second, third = (job[0] for job in jobs[:3])
    made = prescan.Prescans(jobs, 2)          # worker 0: jobs 0, 2, ...; worker 1: jobs 1, 3, ...
    try:
        assert select.select([made.pipes[1]], [], [], 60)[0], "worker 1 made no scan"
        with open(second, "ab") as f:         # its scan is made (being handed over); now it changes
            f.write(b'{"type":"message","id":"zz999999","parentId":null,'
                    b'"message":{"role":"user","content":"x"}}\n')
        with open(third, "rb") as f:          # worker 0's second file: its first is let go
            ahead = made.take(third, f)
        with open(third, "rb") as f:
            assert made.take(third, f) is None, "a scan was handed out twice"
        with open(second, "rb") as f:
            assert made.take(second, f) is None, "a scan of the file before its append was used"
        with open(first, "rb") as f:
            assert made.take(first, f) is None, "worker 0 had gone past it"
        assert made.take(str(tmp_path / "not-a-job.jsonl"), None) is None
        pids = list(made.pids)
    finally:
        made.close()
    assert ahead is not None and made.used == 1
    assert [pid for pid in pids if os.path.exists("/proc/%d" % pid)] == [], "close() left a worker"
    with open(third, "rb") as f:
        own = scan_transcript(f, jobs[2][1], Limits.from_policy(section))
    assert (ahead.size, ahead.sha256, list(ahead.offsets), list(ahead.ids), list(ahead.parent_ids),
            bytes(ahead.kinds)) == (own.size, own.sha256, list(own.offsets), list(own.ids),
                                    list(own.parent_ids), bytes(own.kinds))


def test_workers_are_as_many_as_the_available_memory_allows(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        1000000 kB\nMemAvailable:     600000 kB\n")
    assert prescan.memory_allows(str(meminfo)) == 2           # 600 MB available, 256 MB a worker
    meminfo.write_text("MemTotal:        1000000 kB\nMemAvailable:     200000 kB\n")
    assert prescan.memory_allows(str(meminfo)) == 0
    assert prescan.memory_allows(str(tmp_path / "absent")) == prescan.MAX_WORKERS
