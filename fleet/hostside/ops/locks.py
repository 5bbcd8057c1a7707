"""[locks]: remove stale lock files (dead or recycled pid, or past OpenClaw's own staleness age).

A lock held by a live process is never touched; without `remove_stale` stale locks are only
reported by the health check.
"""
from ..terms import check_bool

SECTION = "locks"
REWRITES = False
DEFAULTS = {"remove_stale": False}


def read(t):
    t.check_keys(("remove_stale",))
    return {"remove_stale": t.boolean("remove_stale")}


def describe(s, size, duration):
    return ["locks: %s" % ("remove stale locks" if s["remove_stale"] else "report stale locks only")]


def validate(s, where):
    check_bool(s, "remove_stale", where)


def backup_need(ctx, af, s, info):
    return False


def _remove_stale_locks():
    from ..archive import remove_stale_locks
    return remove_stale_locks


def run(work, s):
    work.sweep(("lock",), "archive.remove_stale_locks", "remove stale locks", _remove_stale_locks, s)
