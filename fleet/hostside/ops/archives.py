"""[archives]: delete OpenClaw's and fleet's archives (`<file>.deleted.<ts>`, `.reset.`, `.bak.`) past an age.

The age is the archive's own timestamp (in its name), else its mtime (archive.archive_time_ms).
"""
from ..terms import check_int

SECTION = "archives"
REWRITES = False
DEFAULTS = {"delete_after_s": None}


def read(t):
    t.check_keys(("delete_after",), {"keep": 'use "delete_after"'})
    return {"delete_after_s": t.duration("delete_after", required=True)}


def describe(s, size, duration):
    after = s["delete_after_s"]
    return ["archives: kept" if after is None else "archives: delete archives older than %s" % duration(after)]


def validate(s, where):
    check_int(s, "delete_after_s", where, nullable=True)


def backup_need(ctx, af, s, info):
    if info.kind != "archive" or s["delete_after_s"] is None:
        return False
    from ..archive import archive_time_ms
    return ctx.now_ms - archive_time_ms(info) > s["delete_after_s"] * 1000.0


def _expire_archives():
    from ..archive import expire_archives
    return expire_archives


def run(work, s):
    work.sweep(("archive",), "archive.expire_archives", "expire archives", _expire_archives, s)
