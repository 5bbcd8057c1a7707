"""The text of a run's notice (Telegram / webhook): short, but everything a person acts on.

`build_notice_text(result, top, tz, new)` is pure. In order: the headline (run id, playbook, a dry
run marked, ok/FAILED); the local date and time of the run (the control host's time zone, or
fleet.toml's `notify.timezone`); hosts ok/failed; for a run, files changed, bytes freed per host,
every agent (one line each, grouped by host when there are more than AGENT_LINES), the sessions
removed by kind and the total freed; for a scan, every agent's size and the total; then health
(new findings first, when `new` says which are new), failed hosts with their reasons, and where
the backups are. Sizes use fleet.units.human_bytes. At most Telegram's 4096 characters.
"""
from __future__ import annotations

from datetime import datetime, timezone

from fleet.report.results import HealthFinding, RunResult
from fleet.units import human_bytes, percent_change

TELEGRAM_TEXT_LIMIT = 4096
MAX_FAILED_LISTED = 5
MAX_BACKUPS_LISTED = 3
MAX_REASON_CHARS = 160
AGENT_LINES = 12          # more agents than this: one line per host, its agents listed in it
SHOWN_SEVERITIES = ("critical", "warning")


def _short(text: str | None, limit: int = MAX_REASON_CHARS) -> str:
    line = " ".join((text or "unknown error").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def local_time(iso: str, tz: str | None = None) -> str | None:
    """'2026-11-22 12:00 JST (UTC+09:00)' for an ISO-8601 UTC time, in `tz` (an IANA name) or the
    control host's own zone; None when `iso` is not a time."""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if tz:
        from zoneinfo import ZoneInfo

        local = moment.astimezone(ZoneInfo(tz))
    else:
        local = moment.astimezone()
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} (UTC{offset[:3]}:{offset[3:]})"


def agent_sizes(result: RunResult) -> dict[str, list[tuple[str, int, int]]]:
    """host -> [(agent, before, after)] for every agent of every host that answered."""
    out: dict[str, list[tuple[str, int, int]]] = {}
    for host in result.hosts:
        sizes: dict[str, list[int]] = {}
        for f in host.files:
            entry = sizes.setdefault(f.agent or "?", [0, 0])
            entry[0] += f.before.bytes
            entry[1] += f.after.bytes
        if sizes:
            out[host.host] = [(agent, b, a) for agent, (b, a) in sizes.items()]
    return out


def _change(before: int, after: int) -> str:
    return f"{human_bytes(before)} → {human_bytes(after)} ({percent_change(before, after)})"


def _agent_lines(result: RunResult) -> list[str]:
    """Every agent: one line each, or with many agents one line per host listing its agents."""
    scan = result.kind == "scan"
    by_host = agent_sizes(result)
    count = sum(len(v) for v in by_host.values())
    order = (lambda s: (-s[1], s[0])) if scan else (lambda s: (s[2] - s[1], -s[1], s[0]))
    if count <= AGENT_LINES:
        rows = sorted(((f"{h}/{a}", b, af) for h, agents in by_host.items() for a, b, af in agents), key=order)
        if scan:
            return [f"{name} {human_bytes(b)}" for name, b, _ in rows]
        changed = [f"{name} {_change(b, af)}" for name, b, af in rows if b != af]
        same = [name for name, b, af in rows if b == af]
        return changed + ([f"unchanged: {', '.join(same)}"] if same else [])
    lines = []
    for host, agents in by_host.items():
        agents = sorted(agents, key=order)
        label = f"{host} ({len(agents)} agent{'s' if len(agents) != 1 else ''}):"
        if scan:
            listed = ", ".join(f"{a} {human_bytes(b)}" for a, b, _ in agents)
            lines.append(f"{label} {listed}")
            continue
        changed = [f"{a} {human_bytes(b)} → {human_bytes(af)}" for a, b, af in agents if b != af]
        same = [a for a, b, af in agents if b == af]
        text = f"{label} " + ", ".join(changed) if changed else label
        if same:
            text += f"{';' if changed else ''} unchanged: {', '.join(same)}"
        lines.append(text)
    return lines


def _host_lines(result: RunResult) -> list[str]:
    """Bytes freed and files changed per host (a run)."""
    verb = "would free" if result.dry_run else "freed"
    lines = []
    for h in result.hosts:
        if not h.ok:
            continue
        changed = sum(1 for f in h.files if f.action not in ("none", "skip"))
        lines.append(f"{h.host}: {verb} {human_bytes(h.before_bytes - h.after_bytes)} "
                     f"({human_bytes(h.before_bytes)} → {human_bytes(h.after_bytes)}), "
                     f"{changed} file{'s' if changed != 1 else ''} changed")
    return lines


def _removed_line(result: RunResult) -> str | None:
    kinds: dict[str, int] = {}
    for h in result.hosts:
        for r in h.removed_sessions():
            kinds[str(r["kind"])] = kinds.get(str(r["kind"]), 0) + 1
    if not kinds:
        return None
    orphans = kinds.pop("orphan", 0)
    parts = []
    if kinds:
        listed = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
        parts.append(f"sessions removed: {sum(kinds.values())} ({listed})")
    if orphans:
        parts.append(f"orphan transcripts archived: {orphans}")
    return "; ".join(parts)


def _health_lines(result: RunResult, top: int, new: set | None) -> list[str]:
    from fleet.report.noticefilter import finding_id

    found = [(h.host, f) for h in result.hosts for f in h.health if f.severity in SHOWN_SEVERITIES]
    if not found:
        return []
    critical = sum(1 for _h, f in found if f.severity == "critical")

    def is_new(host: str, f: HealthFinding) -> bool:
        return new is not None and finding_id(host, f) in new

    fresh = sum(1 for h, f in found if is_new(h, f))
    head = f"health: {critical} critical, {len(found) - critical} warning"
    if new is not None:
        head += f" ({fresh} new since the last notice)"
    lines = [head]
    found.sort(key=lambda x: (not is_new(*x), x[1].severity != "critical", x[0], x[1].agent))
    for host, f in found[:max(top, fresh)]:
        mark = "new " if is_new(host, f) else ""
        # Which file, when the finding is about one (a store's findings name their session).
        where = f" ({f.path.rsplit('/', 1)[-1]})" if f.path and not f.path.endswith("sessions.json") else ""
        lines.append(f"  {mark}{host}/{f.agent} {f.severity}: {_short(f.detail, 140)}{where}")
    if len(found) > max(top, fresh):
        lines.append(f"  … and {len(found) - max(top, fresh)} more")
    return lines


def _headline(result: RunResult) -> str:
    if result.kind == "skipped":
        name = result.extra.get("schedule") or result.playbook or "?"
        return f"fleet schedule {name}: skipped ({_short(result.extra.get('reason'))})"
    status = "ok" if result.ok else "FAILED"
    if result.kind == "scan":
        return f"fleet scan {result.run_id} — {status}"
    dry = " (DRY RUN, nothing changed)" if result.dry_run else ""
    return f"fleet {result.kind} {result.run_id}: {result.playbook or '?'}{dry} — {status}"


def build_notice_text(result: RunResult, top: int = 5, tz: str | None = None, new: set | None = None) -> str:
    """The notice for `result` as plain text (pure but for the control host's zone when `tz` is
    None). `top`: how many health findings to quote; `new`: ids (noticefilter.finding_id) of the
    findings that are new since the last notice, listed first and marked."""
    lines = [_headline(result)]
    when = local_time(result.started_at, tz)
    if when:
        lines.append(f"at {when}")
    if result.kind == "skipped":
        return "\n".join(lines)
    totals = result.totals()
    failed = [h for h in result.hosts if not h.ok]
    lines.append(f"hosts: {totals['hosts_ok']} ok, {totals['hosts_failed']} failed")
    if result.kind == "scan":
        lines.extend(_agent_lines(result))
        lines.append(f"total {human_bytes(totals['before_bytes'])} in {totals['files']} files")
    else:
        lines.append(f"files changed: {totals['files_changed']} of {totals['files']}")
        lines.extend(_host_lines(result))
        lines.extend(_agent_lines(result))
        removed = _removed_line(result)
        if removed:
            lines.append(removed)
        verb = "would free" if result.dry_run else "freed"
        lines.append(f"{verb} {human_bytes(totals['freed_bytes'])} "
                     f"({human_bytes(totals['before_bytes'])} → {human_bytes(totals['after_bytes'])})")
        if totals.get("file_errors"):
            lines.append(f"files not handled: {totals['file_errors']}")
    lines.extend(_health_lines(result, top, new))

    if failed:
        lines.append("failed:")
        for h in failed[:MAX_FAILED_LISTED]:
            lines.append(f"  {h.host}: {_short(h.error)}")
        if len(failed) > MAX_FAILED_LISTED:
            lines.append(f"  … and {len(failed) - MAX_FAILED_LISTED} more")

    backups = [f"{h.host}:{h.backup_dir}" for h in result.hosts if h.backup_dir]
    if backups and not result.dry_run and result.kind != "scan":
        more = f" (+{len(backups) - MAX_BACKUPS_LISTED} more)" if len(backups) > MAX_BACKUPS_LISTED else ""
        lines.append("backups: " + ", ".join(backups[:MAX_BACKUPS_LISTED]) + more)

    text = "\n".join(lines)
    if len(text) > TELEGRAM_TEXT_LIMIT:
        text = text[: TELEGRAM_TEXT_LIMIT - 1] + "…"
    return text
