"""[orphans]: archive transcripts no store entry references, once they are old enough.

Orphan-ness is judged against the store, so nothing is archived for an agent whose store cannot
be read. The archiving is archive.py's (`<file>.deleted.<ts>`, OpenClaw's own convention).
"""
from ..fsutil import set_phase
from ..terms import check_int

SECTION = "orphans"
REWRITES = False
DEFAULTS = {"archive_after_s": 86400}


def read(t):
    t.check_keys(("archive_after",))
    return {"archive_after_s": t.duration("archive_after")}


def describe(s, size, duration):
    return ["orphans: archive unreferenced transcripts older than %s" % duration(s["archive_after_s"])]


def validate(s, where):
    check_int(s, "archive_after_s", where)


def backup_need(ctx, af, s, info):
    return info.kind == "orphan" and ctx.now_ms - info.mtime_ns // 1000000 > s["archive_after_s"] * 1000.0


def run(work, s):
    af, ctx = work.af, work.ctx
    if not af.store_usable or af.store_info is None:
        return
    set_phase("archive")
    try:
        from ..archive import archive_orphans
    except ImportError:
        return work.missing("archive.archive_orphans")
    orphans = work.pending("orphan")
    if orphans:
        work.batch("archiving orphans", orphans, lambda: archive_orphans(ctx, af.agent, orphans, s))
