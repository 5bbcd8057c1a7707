"""[legacy]: trim single-file `*.session.json` sessions (in agents/<id>/ and the flat legacy
<state>/sessions/ folder) by the transcripts' tiers, or to their last N records (legacy.py).

With tiers (a playbook that has [transcripts] and does not set follow_tiers = false) a legacy
file is trimmed like a transcript of its size and left alone below the first tier; without
them, every legacy file keeps its last `keep_records`.
"""
from ..terms import check_int, check_slim
from .transcripts import SLIM_NAMES, pick_tier, validate_tiers

SECTION = "legacy"
REWRITES = True   # rewrites files in place (a temp copy beside each)
DEFAULTS = {"keep_records": 200, "slim": "tool-output", "tiers": []}


def read(t):
    t.check_keys(("keep_records", "slim", "follow_tiers"))
    # "none" stays a string until compile: None here would mean "not set" and take the default.
    return {"keep_records": t.integer("keep_records", minimum=1), "slim": t.string("slim", choices=SLIM_NAMES),
            "follow_tiers": t.boolean("follow_tiers")}


def compile(s, operations):
    """The plan's form of a merged section: the slim level "none" is null, and the transcripts'
    tiers are copied in unless follow_tiers = false."""
    if s.get("slim") == "none":
        s["slim"] = None
    follow = s.pop("follow_tiers", True)
    tiers = (operations.get("transcripts") or {}).get("tiers") or []
    s["tiers"] = [dict(tier) for tier in tiers] if follow else []
    return s


def describe(s, size, duration):
    if s.get("tiers"):
        return ["legacy: *.session.json files trimmed by the transcript tiers above"]
    return ["legacy: keep the last %d records%s" % (s["keep_records"], ", slim " + s["slim"] if s["slim"] else "")]


def validate(s, where):
    check_int(s, "keep_records", where, minimum=1)
    check_slim(s["slim"], where + ".slim")
    s["tiers"] = validate_tiers(s["tiers"], where + ".tiers")


def backup_need(ctx, af, s, info):
    return info.kind == "legacy" and (not s["tiers"] or pick_tier(s["tiers"], info.size) is not None)


def run(work, s):
    try:
        from ..legacy import legacy_policy, trim_legacy
    except ImportError:
        return work.missing("legacy.trim_legacy")
    for info in work.readable("legacy"):
        policy = legacy_policy(work.ctx.operations, info.size, pick_tier)
        if policy is not None:
            work.rewrite(info, "trim", "legacy trim",
                         lambda i=info, p=policy: trim_legacy(work.ctx, work.af.agent, i, p))
