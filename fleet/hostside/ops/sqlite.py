"""[sqlite]: SQLite-era agents (OpenClaw 2026.8+): verified online backup, then what the plan asks.

A SQLite-era agent gets this pass alone, with or without a `[sqlite]` section: sqlite_plan.py
reads the whole plan (store.prune through OpenClaw's own `sessions cleanup`, found on the host when
the inventory has no `openclaw_cmd`; trajectories.keep_runs; the space given back), and
sqlite_run.py runs it, rehearsed on a copy first, reporting every step it could not do.
"""
from ..terms import SQLITE_DEFAULTS, check_bool, check_int, want

SECTION = "sqlite"
REWRITES = False
# openclaw_cmd comes from the inventory, per host (the controller's build_plan).
DEFAULTS = SQLITE_DEFAULTS


def read(t):
    t.check_keys(("cleanup", "trajectory_keep_runs", "checkpoint", "vacuum", "gateway_stopped", "timeout",
                  "busy_within"))
    out = {}
    for key in ("cleanup", "checkpoint", "vacuum", "gateway_stopped"):
        if key in t:
            out[key] = t.boolean(key)
    if "trajectory_keep_runs" in t:
        out["trajectory_keep_runs"] = t.integer("trajectory_keep_runs", minimum=1)
    if "timeout" in t:
        out["timeout_s"] = t.duration("timeout")
    if "busy_within" in t:
        out["busy_within_s"] = t.duration("busy_within")
    if out.get("vacuum") and not out.get("gateway_stopped"):
        t.add("vacuum", "VACUUM rewrites the whole database: set gateway_stopped = true as well, and only "
                        "when the gateway is really stopped")
    return out


def describe(s, size, duration):
    parts = []
    if s["cleanup"]:
        parts.append("store.prune through OpenClaw's own `sessions cleanup` (openclaw_cmd, else found on the host; "
                     "timeout %s)" % duration(s["timeout_s"]))
    if s["trajectory_keep_runs"] is not None:
        parts.append("keep each session's last %d trajectory runs" % s["trajectory_keep_runs"])
    if s["checkpoint"]:
        parts.append("free pages given back (incremental_vacuum), WAL checkpoint")
    if s["vacuum"]:
        parts.append("VACUUM (gateway stopped)")
    if s["busy_within_s"]:
        parts.append("sessions OpenClaw updated in the last %s left alone (in use)" % duration(s["busy_within_s"]))
    done = "; ".join(parts) if parts else "scan and back up only"
    return ["sqlite: %s; where no OpenClaw of the database's schema is found, only scanned and backed up "
            "(the report says what was not done)" % done]


def validate(s, where):
    cmd = s["openclaw_cmd"]
    want(cmd is None or (isinstance(cmd, list) and cmd and all(isinstance(a, str) and a for a in cmd)),
         where + ".openclaw_cmd", "expected null or a non-empty list of strings")
    for key in ("cleanup", "checkpoint", "vacuum", "gateway_stopped"):
        check_bool(s, key, where)
    check_int(s, "timeout_s", where, minimum=1)
    check_int(s, "busy_within_s", where, minimum=0)
    check_int(s, "trajectory_keep_runs", where, minimum=1, nullable=True)


def backup_need(ctx, af, s, info):
    return False   # a SQLite-era agent's backup is the online backup, checked by sqlite_run itself


def run(work, s):
    """`s` is None when the plan has no [sqlite] section."""
    try:
        from ..sqlite_run import run_steps
    except ImportError:
        return work.missing("sqlite_run.run_steps")
    run_steps(work, s)
