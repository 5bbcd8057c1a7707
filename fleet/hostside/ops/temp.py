"""[temp]: remove leftover temp files (OpenClaw's `sessions.json.<pid>.<uuid>.tmp` and the like) past an age."""
from ..terms import check_int

SECTION = "temp"
REWRITES = False
DEFAULTS = {"remove_after_s": 3600}


def read(t):
    t.check_keys(("remove_after",))
    return {"remove_after_s": t.duration("remove_after")}


def describe(s, size, duration):
    return ["temp: remove temp files older than %s" % duration(s["remove_after_s"])]


def validate(s, where):
    check_int(s, "remove_after_s", where)


def backup_need(ctx, af, s, info):
    return info.kind == "temp" and ctx.now_ms - info.mtime_ns // 1000000 > s["remove_after_s"] * 1000.0


def _cleanup_temp():
    from ..archive import cleanup_temp
    return cleanup_temp


def run(work, s):
    work.sweep(("temp",), "archive.cleanup_temp", "cleanup temp", _cleanup_temp, s)
