"""The report's content, independent of its format: rows per host and agent, the tables, the
headline and the hints. Pure functions of a RunResult; render.py and html.py lay them out.

Sizes are human-readable as the field report writes them (`9.2MB → 0.18MB (−98 %)`, binary
units); the JSON format keeps exact bytes (the contract's document).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from fleet.report.results import FileResult, HealthFinding, HostResult, RunResult
from fleet.units import human_bytes, human_mb, percent_change

DRY_RUN_BANNER = "DRY RUN — nothing was changed"
TOTAL_LABEL = "all hosts"
SHOWN_SEVERITIES = ("critical", "warning")
NUMERIC_HEADERS = {"hosts", "ok", "failed", "files", "changed", "errors", "before", "after", "freed", "change",
                   "backups", "expired backups", "elapsed", "size", "records", "before → after"}


@dataclass(frozen=True)
class SizeRow:
    """Totals of a group of files (a host, or one agent on a host)."""

    host: str
    agent: str | None
    files: int
    changed: int
    errors: int
    before: int
    after: int

    @property
    def freed(self) -> int:
        return self.before - self.after


def _size_row(host: str, agent: str | None, files: list[FileResult]) -> SizeRow:
    return SizeRow(host, agent, len(files), sum(1 for f in files if f.action not in ("none", "skip")),
                   sum(1 for f in files if f.error), sum(f.before.bytes for f in files),
                   sum(f.after.bytes for f in files))


def host_rows(result: RunResult) -> list[SizeRow]:
    """One row per host that answered, in the run's order."""
    return [_size_row(h.host, None, list(h.files)) for h in result.hosts if h.ok]


def agent_rows(result: RunResult) -> list[SizeRow]:
    """One row per (host, agent), hosts in the run's order, agents by name."""
    rows = []
    for h in result.hosts:
        if not h.ok:
            continue
        by_agent: dict[str, list[FileResult]] = {}
        for f in h.files:
            by_agent.setdefault(f.agent, []).append(f)
        rows.extend(_size_row(h.host, agent, files) for agent, files in sorted(by_agent.items()))
    return rows


def largest_files(result: RunResult, top: int, when: str = "before") -> list[tuple[str, FileResult]]:
    """The `top` largest files of the run, measured `when` ("before" or "after")."""
    pairs = [(h.host, f) for h in result.hosts for f in h.files]
    pairs.sort(key=lambda p: (-getattr(p[1], when).bytes, p[0], p[1].path))
    return pairs[:max(0, top)]


def findings(result: RunResult) -> list[tuple[str, HealthFinding]]:
    """Warning and critical health findings, critical first."""
    found = [(h.host, f) for h in result.hosts for f in h.health if f.severity in SHOWN_SEVERITIES]
    found.sort(key=lambda p: (SHOWN_SEVERITIES.index(p[1].severity), p[0], p[1].agent, p[1].check))
    return found


def file_errors(result: RunResult) -> list[tuple[str, FileResult]]:
    return [(h.host, f) for h in result.hosts for f in h.files if f.error]


def failed_hosts(result: RunResult) -> list[HostResult]:
    return [h for h in result.hosts if not h.ok]


def change(before: int, after: int) -> str:
    """'9.2MB → 0.18MB (−98 %)'."""
    return f"{human_mb(before)} → {human_mb(after)} ({percent_change(before, after)})"


def title(result: RunResult) -> str:
    what = {"scan": "scan", "restore": "restore", "skipped": "skipped run"}.get(result.kind, "run")
    parts = [f"fleet {what} {result.run_id}"]
    if result.playbook:
        parts.append(f"playbook {result.playbook}")
    if result.extra.get("restored_run"):
        parts.append(f"restoring run {result.extra['restored_run']}")
    parts.append(f"{result.started_at} → {result.finished_at}")
    return " · ".join(parts)


def summary_line(result: RunResult) -> str:
    t = result.totals()
    hosts = f"{t['hosts_ok']}/{t['hosts']} hosts ok"
    if result.kind == "scan":
        return f"{hosts}; {t['files']} files, {human_mb(t['before_bytes'])} in total"
    if result.kind == "restore":
        restored = sum(1 for h in result.hosts for f in h.files if f.action == "restore" and not f.error)
        verb = "would restore" if result.dry_run else "restored"
        line = f"{hosts}; {verb} {restored} files, {change(t['before_bytes'], t['after_bytes'])}"
        if t["file_errors"]:
            line += f"; {t['file_errors']} not restored (see File errors)"
        return line
    freed = "would free" if result.dry_run else "freed"
    line = f"{hosts}; {change(t['before_bytes'], t['after_bytes'])}, {freed} {human_mb(t['freed_bytes'])}"
    if t["backup_bytes"]:
        line += f"; backups {human_mb(t['backup_bytes'])}"
    if t["expired_backup_bytes"]:
        line += f"; old backups expired {human_mb(t['expired_backup_bytes'])}"
    return line


def undo_hint(result: RunResult) -> str | None:
    """How to put a real run's changes back, when it changed something with a backup."""
    if result.kind not in ("run", "restore") or result.dry_run:
        return None
    if not any(f.backup for h in result.hosts for f in h.files):
        return None
    return f"undo with: fleet restore {result.run_id}"


# --- tables -------------------------------------------------------------------------------

def _sizes(row_before: int, row_after: int, kind: str) -> list[str]:
    if kind == "scan":
        return [human_mb(row_before)]
    if kind == "restore":
        return [human_mb(row_before), human_mb(row_after), percent_change(row_before, row_after)]
    return [human_mb(row_before), human_mb(row_after), human_mb(row_before - row_after),
            percent_change(row_before, row_after)]


def _size_headers(kind: str) -> list[str]:
    """A scan has one size; a restore grows files back, so "freed" would only confuse."""
    if kind == "scan":
        return ["size"]
    if kind == "restore":
        return ["before", "after", "change"]
    return ["before", "after", "freed", "change"]


def summary_table(result: RunResult) -> tuple[list[str], list[list]]:
    t = result.totals()
    scan = result.kind == "scan"
    headers = ["hosts", "ok", "failed", "files"] + ([] if scan else ["changed"]) + _size_headers(result.kind)
    row = [t["hosts"], t["hosts_ok"], t["hosts_failed"], t["files"]] + ([] if scan else [t["files_changed"]])
    if not scan:
        headers += ["backups", "expired backups"]
        row += _sizes(t["before_bytes"], t["after_bytes"], result.kind) + [human_mb(t["backup_bytes"]),
                                                                  human_mb(t["expired_backup_bytes"])]
    else:
        row += _sizes(t["before_bytes"], t["after_bytes"], result.kind)
    return headers, [row]


def host_table(result: RunResult) -> tuple[list[str], list[list]]:
    scan = result.kind == "scan"
    by_name = {h.host: h for h in result.hosts}
    headers = ["host", "files"] + ([] if scan else ["changed", "errors"]) + _size_headers(result.kind) + ["elapsed"]
    rows = []
    found = host_rows(result)
    for r in found:
        counts = [r.files] + ([] if scan else [r.changed, r.errors])
        rows.append([r.host] + counts + _sizes(r.before, r.after, result.kind) + [f"{by_name[r.host].elapsed_s:.1f}s"])
    if rows:
        t = _total(found)
        counts = [t.files] + ([] if scan else [t.changed, t.errors])
        rows.append([TOTAL_LABEL] + counts + _sizes(t.before, t.after, result.kind) + [""])
    return headers, rows


def _total(rows: list[SizeRow]) -> SizeRow:
    return SizeRow(TOTAL_LABEL, None, sum(r.files for r in rows), sum(r.changed for r in rows),
                   sum(r.errors for r in rows), sum(r.before for r in rows), sum(r.after for r in rows))


def agent_table(result: RunResult) -> tuple[list[str], list[list]]:
    scan = result.kind == "scan"
    headers = ["host", "agent", "files"] + ([] if scan else ["changed"]) + _size_headers(result.kind)
    found = agent_rows(result)
    rows = [[r.host, r.agent, r.files] + ([] if scan else [r.changed]) + _sizes(r.before, r.after, result.kind)
            for r in found]
    if rows:
        t = _total(found)
        counts = [t.files] + ([] if scan else [t.changed])
        rows.append([TOTAL_LABEL, ""] + counts + _sizes(t.before, t.after, result.kind))
    return headers, rows


def files_table(result: RunResult, top: int, when: str) -> tuple[list[str], list[list]]:
    scan = result.kind == "scan"
    headers = ["host", "agent", "path", "kind"] + (["size", "records"] if scan else ["before", "after", "action"])
    rows = []
    for host, f in largest_files(result, top, when):
        if scan:
            rows.append([host, f.agent, f.path, f.kind, human_bytes(f.before.bytes), f.before.records])
        else:
            rows.append([host, f.agent, f.path, f.kind, human_bytes(f.before.bytes), human_bytes(f.after.bytes),
                         "+".join(f.actions) or f.action])
    return headers, rows


def findings_table(result: RunResult) -> tuple[list[str], list[list]]:
    return (["host", "agent", "severity", "check", "detail"],
            [[h, f.agent, f.severity, f.check, f.detail] for h, f in findings(result)])


def errors_table(result: RunResult) -> tuple[list[str], list[list]]:
    return (["host", "agent", "path", "error"], [[h, f.agent, f.path, f.error] for h, f in file_errors(result)])


def space_table(result: RunResult) -> tuple[list[str], list[list]]:
    """Per host: where the backups went, and the free space of the state dir's disk before and
    after the run (a full disk is what `emergency` is for). Empty when no host reported it."""
    rows = []
    for h in result.hosts:
        disk = h.disk or {}
        before, after = disk.get("before") or {}, disk.get("after") or {}
        if not h.ok or not (before or h.backup_to not in (None, "host")):
            continue
        where = h.backup_to or "host"
        chosen = sorted({n for a in h.agents for n in a.get("notes") or () if n.startswith("backups to the controller")})
        if chosen:
            where += ": " + "; ".join(chosen)

        def free(d: dict) -> str:
            if "free" not in d:
                return "?"
            used = 100.0 * (1 - d["free"] / d["total"]) if d.get("total") else 0.0
            return f"{human_mb(d['free'])} ({used:.0f}% full)"
        rows.append([h.host, where, free(before), free(after)])
    return ["host", "backups to", "free before", "free after"], rows


def failed_table(result: RunResult) -> tuple[list[str], list[list]]:
    return ["host", "reason"], [[h.host, h.error or "failed"] for h in failed_hosts(result)]


def sections(result: RunResult, top: int) -> list[tuple[str, tuple[list[str], list[list]]]]:
    """(heading, (headers, rows)) of every table, in order; empty tables are left out."""
    parts = [("Fleet", summary_table(result)), ("Per host", host_table(result)),
             ("Per host and agent", agent_table(result))]
    if result.kind == "scan":
        parts.append((f"Largest {top} files", files_table(result, top, "before")))
    else:
        parts.append((f"Largest {top} files before", files_table(result, top, "before")))
        parts.append((f"Largest {top} files after", files_table(result, top, "after")))
        parts.append(("Disk and backups", space_table(result)))
    parts += [("Health findings", findings_table(result)), ("File errors", errors_table(result)),
              ("Failed hosts", failed_table(result))]
    return [(heading, table) for heading, table in parts if table[1]]


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def printable(text: str) -> str:
    """`text` with control characters shown as \\xNN: file names and errors come from the hosts,
    and an ESC in a file name must not reach the operator's terminal as an escape sequence."""
    text = _CONTROL.sub(lambda m: "\\x%02x" % ord(m.group()), text)
    # A name that is not UTF-8 arrives as lone surrogates (U+DC80-U+DCFF for bytes 0x80-0xFF).
    return _UNDECODABLE.sub(lambda m: "\\x%02x" % (ord(m.group()) - 0xDC00), text)


def one_line(value: object, markdown: bool = False) -> str:
    """A cell on one line, printable: error messages may carry a shell's multi-line output; in
    markdown a '|' would end the cell."""
    text = printable(" / ".join(part.strip() for part in str(value).splitlines() if part.strip()))
    return text.replace("|", "\\|") if markdown else text


