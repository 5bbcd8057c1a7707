"""Room for backups: before an agent is touched, is there space for the backups its run may take?

`backup_shortfall(ctx, af, operations)` returns None, or one line for a person ("no space for
backup: …") when the backups this agent's run may need exceed the free space of the file system
that holds the backup folder. The orchestrator then changes nothing for that agent (its files
keep action "none"; the line is the agent's error) and goes on with the next agent, so a full
disk never leaves an agent half-cleaned.

The need is an upper bound from sizes alone (no file is read): the store when a store operation
runs; every transcript over the lowest tier; every trajectory when they are capped; every legacy
file when legacy trims run; orphans, archives and temp files past their age thresholds. Space is
`statvfs().f_bavail` (what an unprivileged writer may use). With gzip backups the need is not
known in advance and no estimate is made; a backup that still finds the disk full fails on its
own, with the same message, and leaves its file untouched.
"""
import os

from .archive import archive_time_ms
from .health import human_bytes

BLOCK = 4096  # a copy takes whole blocks: small files cost more than their size


def backup_need(ctx, af, ops):
    """Bytes of backups this agent's run may take at most (see the module docstring)."""
    sizes = []
    tiers = (ops.get("transcripts") or {}).get("tiers") or ()
    lowest = min([t["over_bytes"] for t in tiers]) if tiers else None
    now_ms = ctx.now_ms
    for info in af.files:
        if info.rel in af.problems:
            continue
        if info.kind == "store" and "store" in ops and af.store_usable:
            sizes.append(info.size)
        elif info.kind == "transcript" and lowest is not None and info.size > lowest:
            sizes.append(info.size)
        elif info.kind == "trajectory" and "trajectories" in ops and info.path.endswith(".jsonl"):
            sizes.append(info.size)
        elif info.kind == "legacy" and "legacy" in ops:
            sizes.append(info.size)
        elif info.kind == "orphan" and _older(info.mtime_ns // 1000000, now_ms, ops, "orphans", "archive_after_s"):
            sizes.append(info.size)
        elif info.kind == "archive" and _older(archive_time_ms(info), now_ms, ops, "archives", "delete_after_s"):
            sizes.append(info.size)
        elif info.kind == "temp" and _older(info.mtime_ns // 1000000, now_ms, ops, "temp", "remove_after_s"):
            sizes.append(info.size)
    return sum((size + BLOCK - 1) // BLOCK * BLOCK for size in sizes)


def _older(ms, now_ms, ops, section, key):
    if section not in ops:
        return False
    limit = (ops[section] or {}).get(key)
    return limit is not None and now_ms - ms > float(limit) * 1000.0


def free_bytes(path):
    """Free bytes for an unprivileged writer on the file system of `path` (or its nearest existing
    parent); None when it cannot be known."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return None
        probe = parent
    try:
        st = os.statvfs(probe)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def backup_shortfall(ctx, af, ops):
    """None, or "no space for backup: …" when this agent's backups may not fit."""
    backups = ctx.backups
    if backups is None or getattr(backups, "gzip", False):
        return None
    need = backup_need(ctx, af, ops)
    if need == 0:
        return None
    free = free_bytes(backups.root)
    if free is None or need <= free:
        return None
    return ("no space for backup: this agent's changes may need %s of backups, only %s free in %s; "
            "nothing was changed for this agent (free space there, or set backup.dir to a bigger disk)"
            % (human_bytes(need), human_bytes(free), backups.root))
