"""[transcripts]: trim transcripts over a size tier to their last N records, turn-aligned, and slim them.

The highest tier a transcript is over applies. A transcript a live process has locked is
skipped (its record says who holds it). The work is transcript.py's.
"""
from ..terms import SLIM_LEVELS, check_int, check_slim, pick_tier, want

SECTION = "transcripts"
REWRITES = True   # rewrites files in place (a temp copy beside each)
DEFAULTS = {"tiers": [], "tool_output_limit_bytes": 2048, "assistant_text_limit_bytes": 4096,
            "untouched_turns": 5}
# How a playbook writes a slim level ("none" compiles to null).
SLIM_NAMES = tuple(level or "none" for level in SLIM_LEVELS)


def read(t):
    t.check_keys(("tool_output_limit", "assistant_text_limit", "untouched_turns", "tier"),
                 {"tiers": "write one [[transcripts.tier]] table per tier"})
    out = {
        "tool_output_limit_bytes": t.size("tool_output_limit"),
        "assistant_text_limit_bytes": t.size("assistant_text_limit"),
        "untouched_turns": t.integer("untouched_turns", minimum=0),
    }
    tiers = []
    previous = None
    for tier in t.table_list("tier"):
        tier.check_keys(("over", "keep_records", "slim"), {"keep": 'use "keep_records"', "size": 'use "over"'})
        over = tier.size("over", required=True)
        keep = tier.integer("keep_records", required=True, minimum=1)
        slim = tier.string("slim", "none", choices=SLIM_NAMES)
        if over is not None and previous is not None and over <= previous[0]:
            tier.add("over", "tiers must grow strictly: %s is not larger than %s.over = %s"
                     % (tier.describe("over"), previous[1].path, previous[1].describe("over")))
        if over is not None:
            previous = (over, tier)
        tiers.append({"over_bytes": over, "keep_records": keep, "slim": None if slim == "none" else slim})
    if "tier" in t:
        out["tiers"] = tiers
    return out


def problem(s):
    if not s["tiers"]:
        return "no tiers: add at least one [[transcripts.tier]] with over and keep_records"
    return None


def describe(s, size, duration):
    lines = ["transcripts:"]
    for tier in s["tiers"]:
        lines.append("  over %7s: keep the last %d records%s" % (
            size(tier["over_bytes"]), tier["keep_records"], ", slim " + tier["slim"] if tier["slim"] else ""))
    lines.append("  slim limits: tool output %s, assistant text %s; last %d turns untouched" % (
        size(s["tool_output_limit_bytes"]), size(s["assistant_text_limit_bytes"]), s["untouched_turns"]))
    return lines


def validate_tiers(value, where):
    """Tiers [{over_bytes, keep_records, slim}] checked and sorted by over_bytes; raise PlanError.
    (Legacy files follow the same tiers: ops/legacy.py.)"""
    want(isinstance(value, list), where, "expected a list")
    tiers = []
    for i, tier in enumerate(value):
        tw = "%s[%d]" % (where, i)
        want(isinstance(tier, dict), tw, "expected an object")
        tier = dict({"slim": None}, **tier)
        check_int(tier, "over_bytes", tw)
        check_int(tier, "keep_records", tw, minimum=1)
        check_slim(tier["slim"], tw + ".slim")
        tiers.append(tier)
    return sorted(tiers, key=lambda tr: tr["over_bytes"])


def validate(s, where):
    s["tiers"] = validate_tiers(s["tiers"], where + ".tiers")
    for key in ("tool_output_limit_bytes", "assistant_text_limit_bytes", "untouched_turns"):
        check_int(s, key, where)


def tiered(infos, tiers):
    """(info, tier) of each transcript among `infos` over one of `tiers` (the highest applies): what
    run() trims, and what prescan.py scans ahead for it."""
    for info in infos:
        tier = pick_tier(tiers, info.size) if info.kind == "transcript" else None
        if tier is not None:
            yield info, tier


def backup_need(ctx, af, s, info):
    return any(tiered([info], s["tiers"]))


def run(work, s):
    if not s.get("tiers"):
        return
    try:
        from ..transcript import trim_transcript
    except ImportError:
        return work.missing("transcript.trim_transcript")
    for info, tier in tiered(work.readable("transcript"), s["tiers"]):
        work.rewrite(info, "trim", "transcript trim", lambda i=info, t=tier: work.unless_in_use(
            i, lambda: trim_transcript(work.ctx, work.af.agent, i, t, s)))
