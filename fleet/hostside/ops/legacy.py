"""[legacy]: keep the last N records of single-file `*.session.json` sessions, slim the rest (legacy.py)."""
from ..terms import check_int, check_slim
from .transcripts import SLIM_NAMES

SECTION = "legacy"
REWRITES = True   # rewrites files in place (a temp copy beside each)
DEFAULTS = {"keep_records": 200, "slim": "tool-output"}


def read(t):
    t.check_keys(("keep_records", "slim"))
    # "none" stays a string until compile: None here would mean "not set" and take the default.
    return {"keep_records": t.integer("keep_records", minimum=1), "slim": t.string("slim", choices=SLIM_NAMES)}


def compile(s):
    """The plan's form of a merged section: the slim level "none" is null."""
    if s.get("slim") == "none":
        s["slim"] = None
    return s


def describe(s, size, duration):
    return ["legacy: keep the last %d records%s" % (s["keep_records"], ", slim " + s["slim"] if s["slim"] else "")]


def validate(s, where):
    check_int(s, "keep_records", where, minimum=1)
    check_slim(s["slim"], where + ".slim")


def backup_need(ctx, af, s, info):
    return info.kind == "legacy"


def run(work, s):
    try:
        from ..legacy import trim_legacy
    except ImportError:
        return work.missing("legacy.trim_legacy")
    for info in work.readable("legacy"):
        work.rewrite(info, "trim", "legacy trim", lambda i=info: trim_legacy(work.ctx, work.af.agent, i, s))
