"""Crash loop, full count: SIGKILL the real exported agent at ≥ 200 of its own write steps and
check after each that every file is whole, then that a follow-up run cleans up and succeeds.

The CI test (tests/reliability/test_rel_crash.py) samples ~40 points of a one-agent state; this
script generates a bigger state (`--scale` agents, more sessions, orphans and archives), enumerates
every write step with the agent's fault log, and crashes at `--points` of them (every step when
there are fewer), spread over every phase. "Whole" is tests/reliability/crashkit.py `check_whole`:
each original file byte-identical, or a verified backup of its original bytes plus a complete new
version (or an archive) in its place. Prints per-phase counts and the failures; exit 1 on any.

    .venv/bin/python bench/crash_loop.py                  # scale 3, 240 points
    .venv/bin/python bench/crash_loop.py --scale 4 --points 400
"""
import argparse
import collections
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "reliability"))

import crashkit as ck  # noqa: E402


def crash_point(agent, steps, k, work):
    """Problems found when crashing at step k (and after the follow-up run); [] when whole."""
    state = ck.build_state(work / "state", scale=ARGS.scale)
    original = ck.snapshot(state)
    log = work / "steps.log"
    crashed = ck.run_agent(agent, ck.plan_for(state), work / "plan.json", fault_at=k, fault_log=log)
    if crashed.code != -9:
        return ["not killed (exit %s): %s" % (crashed.code, crashed.stderr[-300:])]
    seen = ck.read_steps(log)
    if len(seen) != k or (seen[-1].phase, seen[-1].name) != (steps[k - 1].phase, steps[k - 1].name):
        return ["the crash run took other steps than the enumeration"]
    problems = ["after the crash: " + p for p in ck.check_whole(original, state)]
    again = ck.run_agent(agent, ck.plan_for(state, ck.FOLLOW_UP_RUN_ID, ck.GEN_NOW_MS + 60000),
                         work / "plan2.json")
    if again.code != 0 or not (again.result or {}).get("ok"):
        errors = [f["path"] + ": " + f["error"] for f in (again.result or {}).get("files", []) if f["error"]]
        problems.append("follow-up run exit %s: %s" % (again.code, "; ".join(errors)[:500] or again.stderr[-300:]))
    left = ck.leftovers(state)
    problems += ["left after the follow-up: " + p for p in left["temps"] + left["parts"]]
    problems += ["after the follow-up: " + p for p in ck.check_whole(original, state)]
    return problems


def main():
    tmp_parent = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="fleet-crash-loop-", dir=tmp_parent) as tmp:
        tmp = Path(tmp)
        agent = ck.export(tmp)
        state = ck.build_state(tmp / "enum" / "state", scale=ARGS.scale)
        files = ck.snapshot(state)
        log = tmp / "enum" / "steps.log"
        began = time.monotonic()
        done = ck.run_agent(agent, ck.plan_for(state), tmp / "enum" / "plan.json", fault_log=log)
        whole_run_s = time.monotonic() - began
        if done.code != 0:
            print("the enumeration run failed: exit %s\n%s" % (done.code, done.stderr[-2000:]))
            return 1
        steps = ck.read_steps(log)
        points = ck.pick_points(steps, ARGS.points) if ARGS.points < len(steps) else [s.number for s in steps]
        print("state: %d files, %.1f MB; %d write steps in a whole run (%.2f s); crashing at %d of them"
              % (len(files), sum(len(b) for b in files.values()) / 1048576.0, len(steps), whole_run_s, len(points)))
        per_phase = collections.Counter(steps[k - 1].phase for k in points)
        failures = []
        began = time.monotonic()
        for i, k in enumerate(points, 1):
            work = tmp / ("k%d" % k)
            work.mkdir()
            problems = crash_point(agent, steps, k, work)
            if problems:
                failures.append((k, problems))
                print("FAIL step %d (%s %s): %s" % (k, steps[k - 1].phase, steps[k - 1].name, "; ".join(problems)[:800]))
            shutil.rmtree(work, ignore_errors=True)
            if i % 50 == 0:
                print("  %d/%d points, %d failed, %.0f s" % (i, len(points), len(failures), time.monotonic() - began))
        missing = [p for p in ck.REQUIRED_PHASES if p not in per_phase]
        print("crash points by phase: " + ", ".join("%s %d" % kv for kv in sorted(per_phase.items())))
        print("%d crash points, %d failed, %.0f s" % (len(points), len(failures), time.monotonic() - began))
        if missing:
            print("phases never hit: %s" % ", ".join(missing))
        return 1 if failures or missing else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=3, help="state size: agents and sessions (default 3)")
    parser.add_argument("--points", type=int, default=240, help="crash points (default 240; all steps if fewer)")
    ARGS = parser.parse_args()
    sys.exit(main())
