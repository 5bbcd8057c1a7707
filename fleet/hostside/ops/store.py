"""[store]: prune disposable and stale entries of sessions.json, cap it, strip bulky fields, rotate it.

The work is store.py's (prune_store, rotate_store); the files of removed sessions are archived
right after the prune (archive.py), so nothing of a kept session is touched.
"""
import os
import re

from ..fsutil import FileError, set_phase
from ..terms import PROTECTED_KINDS, PRUNE_CLASSES, check_int, want

SECTION = "store"
REWRITES = False
DEFAULTS = {"prune": {}, "prune_direct_after_s": None, "stale_after_s": None, "max_entries": None,
            "strip_fields": [], "rotate_over_bytes": None, "rotate_keep": 3}

# Entry fields OpenClaw needs to find and order a session; stripping them would lose it.
REQUIRED_ENTRY_FIELDS = ("sessionId", "updatedAt", "sessionFile")
_FIELD_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def read(t):
    t.check_keys(("disposable_after", "prune", "prune_direct_after", "stale_after", "max_entries",
                  "strip_fields", "rotate_over", "rotate_keep"),
                 {"prune_after": 'use "stale_after" (any entry) or "disposable_after" (disposable kinds)',
                  "strip": 'use "strip_fields"'})
    prune = {}
    every = t.duration("disposable_after")
    if every is not None:
        prune = dict((kind, every) for kind in PRUNE_CLASSES)
    table = t.table("prune")
    for kind in table.keys():
        if kind in PRUNE_CLASSES:
            seconds = table.duration(kind)
            if seconds is not None:
                prune[kind] = seconds
        elif kind == "direct":
            table.add(kind, 'direct messages are pruned with store.prune_direct_after, not store.prune')
        elif kind in PROTECTED_KINDS:
            table.add(kind, '"%s" sessions are protected: fleet never prunes them by age' % kind)
        else:
            table.add(kind, "unknown session kind%s (prunable kinds: %s)"
                      % (t.suggestion(kind, PRUNE_CLASSES), ", ".join(PRUNE_CLASSES)))
    out = {
        "prune_direct_after_s": t.duration("prune_direct_after"),
        "stale_after_s": t.duration("stale_after"),
        "max_entries": t.integer("max_entries", minimum=1),
        "strip_fields": t.string_list("strip_fields", item_check=_check_strip_field),
        "rotate_over_bytes": t.size("rotate_over", minimum=1),
        "rotate_keep": t.integer("rotate_keep", minimum=1),
    }
    if "prune" in t or every is not None:
        out["prune"] = prune
    return out


def _check_strip_field(name):
    if name in REQUIRED_ENTRY_FIELDS:
        return "must not name a field OpenClaw needs to find the session"
    return None if _FIELD_RE.fullmatch(name) else "expected a field name such as \"skillsSnapshot\""


def problem(s):
    """What only the merged playbook can show: a [store] that would do nothing."""
    if not (s["prune"] or s["prune_direct_after_s"] is not None or s["stale_after_s"] is not None
            or s["max_entries"] is not None or s["strip_fields"] or s["rotate_over_bytes"] is not None):
        return ("does nothing: set disposable_after, prune, stale_after, max_entries, strip_fields or "
                "rotate_over (or remove [store])")
    return None


def describe(s, size, duration):
    lines = ["store:"]
    by_age = {}
    for kind, seconds in s["prune"].items():
        by_age.setdefault(seconds, []).append(kind)
    for seconds, kinds in by_age.items():
        lines.append("  prune %s idle > %s (files archived)" % (", ".join(kinds), duration(seconds)))
    if s["prune_direct_after_s"] is not None:
        lines.append("  prune direct messages idle > %s" % duration(s["prune_direct_after_s"]))
    if s["stale_after_s"] is not None:
        lines.append("  remove unprotected entries idle > %s" % duration(s["stale_after_s"]))
    if s["max_entries"] is not None:
        lines.append("  at most %d entries (protected entries are never removed)" % s["max_entries"])
    if s["strip_fields"]:
        lines.append("  strip %s" % ", ".join(s["strip_fields"]))
    if s["rotate_over_bytes"] is not None:
        lines.append("  rotate a store over %s, keep %d" % (size(s["rotate_over_bytes"]), s["rotate_keep"]))
    return lines


def validate(s, where):
    want(isinstance(s["prune"], dict), where + ".prune", "expected an object")
    for cls in s["prune"]:
        want(cls in PRUNE_CLASSES, where + ".prune." + cls,
             "unknown session class (known: %s)" % ", ".join(PRUNE_CLASSES))
        check_int(s["prune"], cls, where + ".prune", nullable=True)
    for key in ("prune_direct_after_s", "stale_after_s", "rotate_over_bytes"):
        check_int(s, key, where, nullable=True)
    check_int(s, "max_entries", where, minimum=1, nullable=True)
    check_int(s, "rotate_keep", where)
    want(isinstance(s["strip_fields"], list) and all(isinstance(f, str) for f in s["strip_fields"]),
         where + ".strip_fields", "expected a list of field names")


def backup_need(ctx, af, s, info):
    return info.kind == "store" and af.store_usable


def run(work, s):
    """Rotate (before the prune, so the copy holds the store as it was: OpenClaw 2026.4), prune,
    then archive the files of the sessions the prune removed."""
    af, ctx = work.af, work.ctx
    if not af.store_usable or af.store_info is None:
        return
    try:
        from ..store import prune_store, rotate_store
        from ..archive import archive_session_files
    except ImportError:
        return work.missing("store.prune_store")
    if s.get("rotate_over_bytes") is not None:
        set_phase("rotate")
        rotated = [i for i in af.files if i.kind == "archive"
                   and os.path.basename(i.path).startswith("sessions.json.bak.")]
        work.batch("store rotation", rotated, lambda: _as_list(rotate_store(ctx, af.agent, af.store_info, s)))
    ctx.progress(event="agent", agent=af.agent, phase="store")
    set_phase("prune")
    removed = {}
    try:
        rec, removed = prune_store(ctx, af.agent, af.store_info, s)
        work.add(rec)
        work.lock_taken_over(rec)
        removed = removed if not rec.get("error") else {}
    except FileError as exc:
        work.add(work.error_record(af.store_info, str(exc)))
    except Exception as exc:
        work.add(work.error_record(af.store_info, "internal error in store prune: %s: %s"
                                 % (type(exc).__name__, exc)))
    set_phase("archive")
    if removed:
        by_sid = {}
        for info in work.pending("transcript", "trajectory", "checkpoint"):
            if info.session_id is not None:
                by_sid.setdefault(info.session_id, []).append(info)
        files = [i for group in by_sid.values() for i in group]
        work.batch("archiving removed sessions' files", files,
                  lambda: archive_session_files(ctx, af.agent, by_sid, removed))


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
