"""Read-only scan: bytes, records, per-agent totals and session kinds, plus health findings.

Fast by design: sizes come from stat (discovery's lstat), records from counting newlines in
1 MB chunks (fsutil.count_lines); no transcript is ever parsed. Scan records have sha256 null.
Records per kind: transcript/orphan/checkpoint = lines minus the header; store = entries;
legacy = records in its list; trajectory (.jsonl) = lines (events); archive of a transcript =
its lines minus the header; everything else 0.
"""
import json
import os

from .context import file_record, stats
from .fsutil import FileError, count_lines, describe_oserror, open_nofollow
from . import health
from .store import classify_key


def legacy_record_count(path):
    """Records of a legacy `*.session.json`, found the way the legacy trim finds them."""
    from .legacy import find_records
    fd = open_nofollow(path)
    with os.fdopen(fd, "rb") as f:
        doc = json.loads(f.read().decode("utf-8"))
    return len(find_records(doc)[0])


def count_records(info, af=None):
    """Records of one file by its kind (see module doc); raises OSError/ValueError on unreadable files."""
    kind = info.kind
    if kind == "store":
        if af is not None and af.store is not None:
            return len(af.store)
        return 0
    if kind in ("transcript", "orphan", "checkpoint"):
        return max(0, count_lines(info.path) - 1)
    if kind == "trajectory":
        return count_lines(info.path) if info.path.endswith(".jsonl") else 0
    if kind == "legacy":
        return legacy_record_count(info.path)
    if kind == "archive":
        name = os.path.basename(info.path)
        if ".jsonl" in name and ".trajectory" not in name:
            return max(0, count_lines(info.path) - 1)
        return 0
    return 0


def untouched_record(af, info, sha256=None):
    """The action-none record of a file (its problem, if discovery had one, as the error)."""
    error = af.problems.get(info.rel)
    records = 0
    if error is None:
        try:
            records = count_records(info, af)
        except (OSError, ValueError, FileError, RecursionError) as exc:
            if isinstance(exc, RecursionError):
                exc = "nested too deeply"
            if info.kind == "legacy":
                error = "legacy file not understood (left alone): %s" % exc
            else:
                error = describe_oserror(exc, "reading " + info.rel) if isinstance(exc, OSError) else str(exc)
        except Exception as exc:  # never crash on one file
            error = "internal error reading %s: %s: %s" % (info.rel, type(exc).__name__, exc)
    return file_record(af.agent, info.rel, info.kind, stats(info.size, records, sha256), error=error)


def agent_summary(af, records):
    """The agents[] entry: era, sessions, kinds, before/after bytes and records, oldest/newest."""
    kinds = {}
    oldest = newest = None
    store = af.store if isinstance(af.store, dict) else {}
    if not store and af.era == "sqlite":
        store = getattr(af, "sqlite_entries", None) or {}  # session_nodes, read by sqlite_era
    for key, entry in store.items():
        k = classify_key(key)
        kinds[k] = kinds.get(k, 0) + 1
        updated = entry.get("updatedAt") if isinstance(entry, dict) else None
        if isinstance(updated, (int, float)) and not isinstance(updated, bool) and abs(updated) < 1e18:
            updated = int(updated)
            oldest = updated if oldest is None else min(oldest, updated)
            newest = updated if newest is None else max(newest, updated)
    mine = [r for r in records if r["agent"] == af.agent]
    return {
        "agent": af.agent,
        "era": af.era,
        "sessions": len(store),
        "kinds": kinds,
        "files": len(mine),
        "before_bytes": sum(r["before"]["bytes"] for r in mine),
        "after_bytes": sum(r["after"]["bytes"] for r in mine),
        "before_records": sum(r["before"]["records"] for r in mine),
        "after_records": sum(r["after"]["records"] for r in mine),
        "oldest_ms": oldest,
        "newest_ms": newest,
        "errors": [af.error] if af.error else [],
    }


def scan_agents(ctx, agents, result):
    """Fill result's files, agents and health for a read-only scan of discovered `agents`."""
    for af in agents:
        ctx.progress(event="agent", agent=af.agent, phase="scan")
        records = [untouched_record(af, info) for info in af.files]
        if af.era in ("sqlite", "half-migrated"):
            from . import sqlite_era
            records = sqlite_era.scan_agent(af, records)
            result["health"].extend(sqlite_era.health(af))
        result["files"].extend(records)
        result["agents"].append(agent_summary(af, records))
    result["health"].extend(health.check_all(agents, ctx.now_ms, classify_key, ctx.health))
    return result
