"""Render a RunResult for people (terminal table, markdown, HTML) and for scripts (JSON).

`render_run(result, fmt, top)` is pure: the same RunResult always gives the same text. The
renderers are a registry, RENDERERS: format name → function(result, top) -> text. The tables
(tables.py) are: fleet summary, per host, per host × agent, the top N largest files before and
after, health findings (warning/critical) and file errors, and failed hosts last with their
reasons.

`report_command` and `history_command` are the `fleet report` / `fleet history` commands.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from tabulate import tabulate

from fleet.errors import UsageError
from fleet.report.html import render_html
from fleet.report.results import RunResult
from fleet.report.tables import (DRY_RUN_BANNER, NUMERIC_HEADERS, change, one_line, sections, summary_line, title,
                                 undo_hint)
from fleet.units import human_mb

def text_table(headers: list[str], rows: list[list], tablefmt: str) -> str:
    """tabulate with numbers and sizes right-aligned, text left-aligned, every cell on one line."""
    align = ["right" if h in NUMERIC_HEADERS else "left" for h in headers]
    markdown = tablefmt == "github"
    cells = [[one_line(v, markdown) for v in row] for row in rows]
    return tabulate(cells, headers=headers, tablefmt=tablefmt, disable_numparse=True, colalign=align)


def render_json(result: RunResult, top: int = 10) -> str:
    """The contract's document, indented (exact bytes)."""
    return json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n"


def render_text(result: RunResult, top: int = 10, markdown: bool = False) -> str:
    """The terminal tables, or the same as GitHub markdown."""
    tablefmt = "github" if markdown else "simple"
    out = [f"## {title(result)}" if markdown else title(result)]
    if result.dry_run:
        out.append(f"> **{DRY_RUN_BANNER}**" if markdown else f"*** {DRY_RUN_BANNER} ***")
    if result.kind == "skipped":
        out.append(str(result.extra.get("reason") or "the run was skipped"))
        return "\n\n".join(out) + "\n"
    out.append(summary_line(result))
    hint = undo_hint(result)
    if hint:
        out.append(f"_{hint}_" if markdown else hint)
    for heading, (headers, rows) in sections(result, top):
        out.append(f"### {heading}" if markdown else heading)
        out.append(text_table(headers, rows, tablefmt))
    return "\n\n".join(out) + "\n"


def render_markdown(result: RunResult, top: int = 10) -> str:
    return render_text(result, top, markdown=True)


RENDERERS = {"table": render_text, "markdown": render_markdown, "json": render_json, "html": render_html}
FORMATS = tuple(RENDERERS)


def render_run(result: RunResult, fmt: str, top: int = 10) -> str:
    """The report of one run as text: fmt is one of FORMATS (table, markdown, json, html)."""
    if fmt not in RENDERERS:
        raise UsageError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](result, top)


# --- commands -----------------------------------------------------------------------------

def filter_result(result: RunResult, host: str | None, agent: str | None) -> RunResult:
    """The run narrowed to one host and/or one agent; UsageError if the run has no such host or agent."""
    hosts = result.hosts
    if host:
        hosts = tuple(h for h in hosts if h.host == host)
        if not hosts:
            names = ", ".join(h.host for h in result.hosts) or "none"
            raise UsageError(f"run {result.run_id} has no host {host!r} (hosts: {names})")
    if agent:
        agents = sorted({x.agent for h in hosts for x in (*h.files, *h.health) if x.agent})
        if agent not in agents:
            where = f" on {host}" if host else ""
            raise UsageError(f"run {result.run_id} has no agent {agent!r}{where} (agents: {', '.join(agents) or 'none'})")
        hosts = tuple(replace(h, files=tuple(f for f in h.files if f.agent == agent),
                              health=tuple(x for x in h.health if x.agent == agent)) for h in hosts)
    return replace(result, hosts=hosts)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 (reports name session files and may quote them)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    # backslashreplace: a host's file name that is not UTF-8 (lone surrogates) is written as \\udcXX.
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
        f.write(text)


def emit(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_private(output, text)
        print(f"wrote {output}", file=sys.stderr)


def report_command(run_id: str | None, fmt: str, output: Path | None, trend: bool, host: str | None,
                   agent: str | None, top: int) -> int:
    """`fleet report`: re-render a recorded run, or with `trend` the size trends of the agents."""
    from fleet.report.history import load_run

    if fmt not in FORMATS:
        raise UsageError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if top < 0:
        raise UsageError(f"--top must be 0 or more, got {top}")
    if trend:
        from fleet.report.trend import trend_command_text

        emit(trend_command_text(host=host, agent=agent, fmt=fmt), output)
        return 0
    result = filter_result(load_run(run_id), host, agent)
    emit(render_run(result, fmt, top), output)
    return 0


def history_rows(runs: list[dict]) -> tuple[list[str], list[list]]:
    headers = ["run id", "kind", "playbook", "started", "by", "hosts", "failed", "before → after", "freed", "ok"]
    rows = []
    for r in runs:
        t = r["totals"]
        kind = r["kind"] + (" (dry run)" if r["dry_run"] else "")
        sizes = human_mb(t.get("before_bytes", 0)) if r["kind"] == "scan" else change(
            t.get("before_bytes", 0), t.get("after_bytes", 0))
        freed = "" if r["kind"] == "scan" else human_mb(t.get("freed_bytes", 0))
        what = f"undo {r['restored_run']}" if r.get("restored_run") else (r["playbook"] or "")
        rows.append([r["run_id"], kind, what, r["started_at"], r["controller"] or "",
                     t.get("hosts", 0), t.get("hosts_failed", 0), sizes, freed, "yes" if r["ok"] else "no"])
    return headers, rows


def history_command(json_out: bool, last: int) -> int:
    """`fleet history`: recorded runs, newest first."""
    from fleet.report.history import empty_history_message, list_runs

    if last < 1:
        raise UsageError(f"--last must be 1 or more, got {last}")
    runs = list_runs(last)
    if json_out:
        emit(json.dumps({"schema": "fleet.history/1", "runs": runs}, indent=2, ensure_ascii=False) + "\n", None)
    elif not runs:
        emit(empty_history_message() + "\n", None)
    else:
        headers, rows = history_rows(runs)
        if len({r["fleet"] for r in runs}) > 1:      # --all-fleets over several: say whose run each is
            headers.append("fleet")
            for row, r in zip(rows, runs):
                row.append(r["fleet"] or "(before fleets)")
        emit(text_table(headers, rows, "simple") + "\n", None)
    return 0
