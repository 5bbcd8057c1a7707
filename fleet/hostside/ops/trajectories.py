"""[trajectories]: cap run traces (`<sid>.trajectory.jsonl`) to their last K whole runs, expire old runs.

Trajectories are diagnostics OpenClaw never reads back into a model's context; a run is kept
whole or not at all. Skipped while the session's transcript is locked by a live process. The
work is trajectory.py's.
"""
import os

from ..terms import check_int

SECTION = "trajectories"
REWRITES = True   # rewrites files in place (a temp copy beside each)
DEFAULTS = {"keep_runs": 5, "max_age_s": None}


def read(t):
    t.check_keys(("keep_runs", "max_age"))
    return {"keep_runs": t.integer("keep_runs", minimum=1), "max_age_s": t.duration("max_age")}


def describe(s, size, duration):
    age = ", drop runs older than %s" % duration(s["max_age_s"]) if s["max_age_s"] is not None else ""
    return ["trajectories: keep the last %d runs%s" % (s["keep_runs"], age)]


def validate(s, where):
    check_int(s, "keep_runs", where, minimum=1)
    check_int(s, "max_age_s", where, nullable=True)


def backup_need(ctx, af, s, info):
    return info.kind == "trajectory" and info.path.endswith(".jsonl")


def run(work, s):
    try:
        from ..trajectory import cap_trajectory
    except ImportError:
        return work.missing("trajectory.cap_trajectory")
    for info in work.readable("trajectory"):
        if info.path.endswith(".jsonl"):
            transcript = os.path.join(os.path.dirname(info.path), "%s%s.jsonl" % (
                info.session_id, "" if info.topic is None else "-topic-%d" % info.topic))
            work.rewrite(info, "trim", "trajectory cap", lambda i=info, t=transcript: work.unless_in_use(
                i, lambda: cap_trajectory(work.ctx, work.af.agent, i, s), t))
