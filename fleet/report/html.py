"""The run report as one self-contained HTML page: no CDN, no fonts, no scripts, no network.

`render_html(result, top)` returns the page: a summary, two inline-SVG bar charts (before/after
per host and per host/agent, each bar labelled with its size), the same tables as the terminal
report, and failed hosts with their reasons. It is readable on a phone (viewport meta, fluid
layout, tables scroll sideways inside their box) and its Content-Security-Policy forbids every
external load, so opening it never touches the network.
"""
from __future__ import annotations

from html import escape

from fleet.report.tables import (DRY_RUN_BANNER, NUMERIC_HEADERS, SizeRow, agent_rows, failed_hosts, host_rows,
                             sections, summary_line, title, undo_hint)
from fleet.report.results import RunResult
from fleet.units import human_mb, percent_change

MAX_CHART_ROWS = 40
BEFORE_COLOR = "#d9822b"
AFTER_COLOR = "#2b8a3e"

CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:12px;color:#1d2430;
background:#f6f7f9}
main{max-width:1100px;margin:0 auto}
h1{font-size:1.2em;margin:.2em 0 .6em;word-break:break-all}
h2{font-size:1.05em;margin:1.4em 0 .5em}
.banner{background:#fff3bf;border:2px solid #f08c00;padding:.6em .8em;font-weight:700;border-radius:6px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(120px,1fr));gap:8px;margin:.8em 0}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:.5em .7em}
.card b{display:block;font-size:1.25em}
.card span{color:#5c6775;font-size:.85em}
.chart{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:6px;margin:0}
.chart svg{width:100%;max-width:640px;height:auto;display:block}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:10px}
.scroll{overflow-x:auto;background:#fff;border:1px solid #dde1e6;border-radius:6px}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{padding:.35em .6em;border-bottom:1px solid #eceff3;text-align:left;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:700;border-top:2px solid #c5ccd4}
.failed{background:#fff5f5;border:2px solid #e03131;border-radius:6px;padding:.5em .8em}
.failed li{margin:.3em 0}
.muted{color:#5c6775;font-size:.85em}
"""


def _chart(rows: list[tuple[str, int, int]], scan: bool, caption: str) -> str:
    """A horizontal bar chart: for each (label, before, after) a label line, a before bar and an
    after bar, each followed by its size. Narrow on purpose, so text stays legible on a phone."""
    shown = sorted(rows, key=lambda r: -r[1])[:MAX_CHART_ROWS]
    width, value_w, pad = 380, 118, 4
    bar_w = width - value_w - pad
    row_h = 36 if scan else 52
    top = 24
    height = top + row_h * len(shown)
    scale = max([max(b, a) for _, b, a in shown] + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(caption)}" font-family="system-ui,sans-serif" font-size="12">']
    parts.append(f'<rect x="{pad}" y="4" width="11" height="11" fill="{BEFORE_COLOR}"/>'
                 f'<text x="{pad + 15}" y="14">{"size" if scan else "before"}</text>')
    if not scan:
        parts.append(f'<rect x="{pad + 70}" y="4" width="11" height="11" fill="{AFTER_COLOR}"/>'
                     f'<text x="{pad + 85}" y="14">after</text>')
    for i, (label, before, after) in enumerate(shown):
        y = top + i * row_h
        parts.append(f'<text class="label" x="{pad}" y="{y + 12}" font-weight="600">{escape(label)}</text>')
        bars = [(before, BEFORE_COLOR, "before")] + ([] if scan else [(after, AFTER_COLOR, "after")])
        for j, (value, color, name) in enumerate(bars):
            by = y + 17 + j * 16
            w = max(1.0, bar_w * value / scale) if value else 0
            parts.append(f'<rect class="bar {name}" x="{pad}" y="{by}" width="{w:.1f}" height="13" '
                         f'fill="{color}"><title>{escape(label)} {name}: {value} bytes</title></rect>')
            text = human_mb(value)
            if not scan and name == "after":
                text += f" ({percent_change(before, after)})"
            parts.append(f'<text x="{pad + w + 5:.1f}" y="{by + 11}">{escape(text)}</text>')
    parts.append("</svg>")
    note = "" if len(rows) <= len(shown) else f'<p class="muted">{len(shown)} largest of {len(rows)}</p>'
    return (f'<figure class="chart">{"".join(parts)}<figcaption class="muted">{escape(caption)}</figcaption>'
            f'</figure>{note}')


def html_table(headers: list[str], rows: list[list]) -> str:
    cls = [' class="num"' if h in NUMERIC_HEADERS else "" for h in headers]
    head = "".join(f"<th{c}>{escape(str(h))}</th>" for h, c in zip(headers, cls))
    body = []
    for row in rows:
        total = ' class="total"' if row and row[0] == "all hosts" else ""
        cells = "".join(f"<td{c}>{escape(str(v))}</td>" for v, c in zip(row, cls))
        body.append(f"<tr{total}>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _cards(result: RunResult) -> str:
    t = result.totals()
    items = [(f"{t['hosts_ok']}/{t['hosts']}", "hosts ok")]
    if t["hosts_failed"]:
        items.append((str(t["hosts_failed"]), "hosts failed"))
    if result.kind == "scan":
        items += [(str(t["files"]), "files"), (human_mb(t["before_bytes"]), "total size")]
    else:
        items += [(human_mb(t["before_bytes"]), "before"), (human_mb(t["after_bytes"]), "after")]
        if result.kind != "restore":
            items.append((human_mb(t["freed_bytes"]), "would free" if result.dry_run else "freed"))
        items.append((percent_change(t["before_bytes"], t["after_bytes"]), "change"))
        if t["expired_backup_bytes"]:
            items.append((human_mb(t["expired_backup_bytes"]), "old backups expired"))
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for v, k in items) + "</div>"


def _chart_rows(rows: list[SizeRow], per_agent: bool) -> list[tuple[str, int, int]]:
    return [(f"{r.host}/{r.agent}" if per_agent else r.host, r.before, r.after) for r in rows]


def render_html(result: RunResult, top: int = 10) -> str:
    """The whole report page as a string (UTF-8 text)."""
    scan = result.kind == "scan"
    body = [f"<h1>{escape(title(result))}</h1>"]
    if result.dry_run:
        body.append(f'<p class="banner">{escape(DRY_RUN_BANNER)}</p>')
    body.append(f"<p>{escape(summary_line(result))}</p>")
    hint = undo_hint(result)
    if hint:
        body.append(f'<p class="muted"><code>{escape(hint)}</code></p>')
    body.append(_cards(result))
    failed = failed_hosts(result)
    hosts = host_rows(result)
    if hosts:
        per_host = _chart(_chart_rows(hosts, False), scan, "size per host" if scan else "before and after per host")
        per_agent = _chart(_chart_rows(agent_rows(result), True), scan,
                           "size per host/agent" if scan else "before and after per host/agent")
        body.append(f'<div class="charts"><section id="chart-hosts"><h2>Size per host</h2>{per_host}</section>'
                    f'<section id="chart-agents"><h2>Size per agent</h2>{per_agent}</section></div>')
    for heading, (headers, rows) in sections(result, top):
        if heading == "Failed hosts":
            continue
        body.append(f"<h2>{escape(heading)}</h2>")
        body.append(html_table(headers, rows))
    if failed:
        items = "".join(f"<li><b>{escape(h.host)}</b>: {escape(h.error or 'failed')}</li>" for h in failed)
        body.append(f'<h2>Failed hosts</h2><div class="failed"><ul>{items}</ul></div>')
    body.append(f'<p class="muted">run {escape(result.run_id)} · sizes in binary units (1 MB = 1,048,576 bytes)</p>')
    return page(title(result), "".join(body))


def page(page_title: str, body: str) -> str:
    """A complete self-contained page around `body` (HTML); nothing may load from elsewhere."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>{escape(page_title)}</title><style>{CSS}</style></head>"
            f"<body><main>{body}</main></body></html>\n")
