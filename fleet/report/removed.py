"""The verbose report's table of every session a run removed from a store or archived, by name
(HostResult.removed_sessions): host, agent, session key (or the orphan's file), kind, how long
it had been idle, and the size of its archived files."""
from __future__ import annotations

from fleet.report.results import RunResult
from fleet.units import human_bytes


def human_age(seconds: int | None) -> str:
    """'45m', '26h', '3d': how long a session had been idle; '-' when unknown."""
    if seconds is None:
        return "-"
    if seconds >= 2 * 86400:
        return f"{seconds // 86400}d"
    if seconds >= 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"


def removed_table(result: RunResult) -> tuple[list[str], list[list]]:
    """Every session removed from a store or archived, by name (HostResult.removed_sessions)."""
    rows = []
    for h in result.hosts:
        for r in h.removed_sessions():
            name = r["key"] if r["key"] is not None else (r["files"][0] if r["files"] else "?")
            rows.append([h.host, r["agent"], name, r["kind"], human_age(r["age_s"]), human_bytes(r["bytes"])])
    return ["host", "agent", "session", "kind", "age", "size"], rows
