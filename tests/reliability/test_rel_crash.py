"""Crash anywhere: the real exported agent is SIGKILLed at sampled write steps (its own fault hook)
and every file must still be whole; the next run cleans up after the crash and succeeds.

One logging run enumerates the write steps of a plan under which every operation has work
(crashkit.build_state / plan_for); about 40 of them, spread over every phase and every kind of
step, are crash points here (bench/crash_loop.py does 200+ on a bigger state). Each point gets a
freshly generated state dir (same seed: the same files and the same steps).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import crashkit as ck

SHARDS = 4          # the sampled points split over a few tests, so xdist spreads them
SAMPLE = 40


@pytest.fixture(scope="module")
def enumeration(tmp_path_factory):
    """(agent path, the steps of a whole run, the points to crash at)."""
    tmp = tmp_path_factory.mktemp("crash-enum")
    agent = ck.export(tmp)
    state = ck.build_state(tmp / "state")
    original = ck.snapshot(state)
    log = tmp / "steps.log"
    done = ck.run_agent(agent, ck.plan_for(state), tmp / "plan.json", fault_log=log)
    assert done.code == 0, done.stderr
    assert ck.check_whole(original, state) == []
    steps = ck.read_steps(log)
    return agent, steps, ck.pick_points(steps, SAMPLE)


def test_the_plan_gives_every_phase_work(enumeration):
    _agent, steps, points = enumeration
    phases = {s.phase for s in steps}
    assert set(ck.REQUIRED_PHASES) | {"delete"} <= phases
    assert {s.phase for s in steps if s.number in points} == phases
    kinds = {(s.phase, s.name) for s in steps}
    assert kinds <= {(s.phase, s.name) for s in steps if s.number in points}
    assert len(points) >= SAMPLE - 5


def crash_and_recover(agent: Path, steps, k: int, tmp: Path) -> str:
    """Crash a fresh state at step k, check it is whole, run again, check again; return the phase."""
    state = ck.build_state(tmp / "state")
    original = ck.snapshot(state)
    log = tmp / "steps.log"
    crashed = ck.run_agent(agent, ck.plan_for(state), tmp / "plan.json", fault_at=k, fault_log=log)
    assert crashed.code == -9, f"step {k}: the agent was not killed ({crashed.code}): {crashed.stderr[-500:]}"
    seen = ck.read_steps(log)
    assert len(seen) == k and (seen[-1].phase, seen[-1].name) == (steps[k - 1].phase, steps[k - 1].name), \
        f"step {k}: the crash run took other steps than the enumeration"
    problems = ck.check_whole(original, state)
    assert problems == [], f"crash at step {k} ({steps[k - 1]}): " + "; ".join(problems)
    parts_before = ck.leftovers(state)["parts"]

    again = ck.run_agent(agent, ck.plan_for(state, ck.FOLLOW_UP_RUN_ID, ck.GEN_NOW_MS + 60_000),
                         tmp / "plan2.json")
    assert again.code == 0 and again.result["ok"], \
        f"follow-up after step {k}: exit {again.code}: " + json.dumps(
            [f for f in again.result["files"] if f["error"]] if again.result else again.stderr)[:2000]
    left = ck.leftovers(state)
    assert left["temps"] == [], f"follow-up after step {k} left fleet temp files: {left['temps']}"
    assert left["parts"] == [], f"follow-up after step {k} left partial backups: {left['parts']}"
    if parts_before:
        assert sorted(again.result["backup"]["partials_removed"]) == sorted(
            p.split(os.sep, 1)[1] for p in parts_before)
    for f in again.result["files"]:
        if f["kind"] == "temp" and ck.FLEET_TMP_RE.match(Path(f["path"]).name):
            assert f["action"] == "delete", f
    problems = ck.check_whole(original, state)
    assert problems == [], f"after the follow-up of step {k}: " + "; ".join(problems)
    return steps[k - 1].phase


@pytest.mark.parametrize("shard", range(SHARDS))
def test_crash_at_sampled_write_steps(enumeration, shard, tmp_path):
    agent, steps, points = enumeration
    hit = set()
    with ck.fast_dir(tmp_path) as base:
        for k in points[shard::SHARDS]:
            hit.add(crash_and_recover(agent, steps, k, base / f"k{k}"))
    assert hit, "no crash point in this shard"


def test_every_required_phase_is_a_crash_point(enumeration):
    _agent, steps, points = enumeration
    hit = {steps[k - 1].phase for k in points}
    assert set(ck.REQUIRED_PHASES) <= hit
