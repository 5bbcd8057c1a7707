"""Size trends: how fast each agent grows, and when it will cross its thresholds.

From the history of scans and runs (`fleet.report.history.agent_size_series`), for every host/agent:
its size over time, its growth rate, and a forecast ("pc-a/main grows 0.6 MB/day; crosses 10 MB
in about 6 days") — the "boiling frog" of the field report, seen before it happens.

- Growth rate: least-squares slope (bytes/day) over the points since the agent last shrank (a
  cleanup run, or OpenClaw pruning on its own) or was restored (a step, not growth); points from
  before describe a size that no longer exists. Fewer than two points, or points spanning less
  than six hours, give no rate.
- Forecast: days from `now` until the fitted line reaches a threshold, starting from the last
  measured size; 0 when the agent is already over it; none when it is not growing.
- Thresholds are totals per agent (all its files on a host), not per file: a single transcript
  warns at 2 MB, but an agent with a few dozen healthy sessions is easily a few MB. Defaults:
  warning 10 MB, critical 50 MB; fleet.toml's `[thresholds] trend_warning` / `trend_critical`
  change them, and `FLEET_TREND_WARNING` / `FLEET_TREND_CRITICAL` (sizes like "20MB") override
  those for one command.

Everything but `trend_command_text` is pure and works on plain (at_ms, bytes) points.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from datetime import datetime, timezone
from html import escape
from typing import Iterable, Sequence

from tabulate import tabulate

from fleet.errors import UsageError
from fleet.units import human_bytes, parse_size

MB = 1024 * 1024
DAY_MS = 86_400_000
DEFAULT_WARNING_BYTES = 10 * MB
DEFAULT_CRITICAL_BYTES = 50 * MB
HORIZON_DAYS = 365
RECENT_POINTS = 16
MIN_FIT_SPAN_MS = 6 * 3600 * 1000
SPARK = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Thresholds:
    warning_bytes: int = DEFAULT_WARNING_BYTES
    critical_bytes: int = DEFAULT_CRITICAL_BYTES

    @classmethod
    def from_env(cls, env: dict | None = None, base: "Thresholds | None" = None) -> "Thresholds":
        """`base` (fleet.toml's [thresholds] trend_warning / trend_critical, else the defaults),
        overridden for one command by FLEET_TREND_WARNING / FLEET_TREND_CRITICAL; UsageError if unreadable."""
        env = os.environ if env is None else env
        base = base or cls()
        values = {"warning_bytes": base.warning_bytes, "critical_bytes": base.critical_bytes}
        for key, name in (("warning_bytes", "FLEET_TREND_WARNING"), ("critical_bytes", "FLEET_TREND_CRITICAL")):
            if env.get(name):
                try:
                    values[key] = parse_size(env[name])
                except ValueError as exc:
                    raise UsageError(f"{name}: {exc}") from None
        return cls(**values)


@dataclass(frozen=True)
class AgentTrend:
    """One agent's trend. Days are counted from `now`; None means "not on the current course"."""

    host: str
    agent: str
    points: int
    first_ms: int
    last_ms: int
    last_bytes: int
    fit_points: int
    rate_bytes_per_day: float | None
    warning_bytes: int
    critical_bytes: int
    warning_in_days: float | None
    critical_in_days: float | None
    recent: tuple[int, ...] = ()          # the last RECENT_POINTS sizes, oldest first

    @property
    def name(self) -> str:
        return f"{self.host}/{self.agent}"

    def sentence(self) -> str:
        """'pc-a/main grows 0.6 MB/day; crosses 10 MB in about 6 days'."""
        if self.rate_bytes_per_day is None:
            return (f"{self.name} is {mb(self.last_bytes)}; "
                    "not enough history since it last shrank or was restored to tell a trend")
        if self.rate_bytes_per_day <= 0:
            verb = "is steady" if self.rate_bytes_per_day == 0 else f"shrinks {rate(-self.rate_bytes_per_day)}"
            return f"{self.name} {verb} at {mb(self.last_bytes)}"
        text = f"{self.name} grows {rate(self.rate_bytes_per_day)}"
        if self.critical_in_days == 0:
            return f"{text}; already over the critical {mb(self.critical_bytes)} ({mb(self.last_bytes)})"
        if self.warning_in_days == 0:
            text += f"; already over {mb(self.warning_bytes)} ({mb(self.last_bytes)})"
        elif self.warning_in_days is not None:
            return f"{text}; crosses {mb(self.warning_bytes)} {in_days(self.warning_in_days)}"
        if self.critical_in_days is not None:
            return f"{text}; crosses the critical {mb(self.critical_bytes)} {in_days(self.critical_in_days)}"
        return text


def mb(n: float) -> str:
    """'10 MB', '1.5 MB', '512 KB': fleet.units.human_bytes, the one size format."""
    return human_bytes(n)


def rate(bytes_per_day: float) -> str:
    return f"{human_bytes(bytes_per_day)}/day"


def in_days(days: float) -> str:
    if days < 1:
        return "within a day"
    if days > HORIZON_DAYS:
        return "in more than a year"
    return f"in about {round(days)} day{'s' if round(days) != 1 else ''}"


def _point(point) -> tuple[int, int, bool]:
    """(at_ms, bytes, restart): a SizePoint, or a plain (at_ms, bytes[, restart]) tuple.

    A restore puts old data back in one step: that is not growth, so the fit restarts there.
    """
    if hasattr(point, "at_ms"):
        return int(point.at_ms), int(point.bytes), getattr(point, "kind", None) == "restore"
    return int(point[0]), int(point[1]), bool(point[2]) if len(point) > 2 else False


def _in_time_order(points: Sequence) -> list[tuple[int, int, bool]]:
    # A stable sort on time only: a run's size before and after can share a timestamp, and the
    # given order (before, then after) is the true one.
    return sorted((_point(p) for p in points), key=lambda p: p[0])


def since_last_shrink(points: Sequence) -> list[tuple[int, int]]:
    """(at_ms, bytes) from the last point that is smaller than its predecessor, or is a restore,
    onwards (time order)."""
    pts = _in_time_order(points)
    start = 0
    for i in range(1, len(pts)):
        if pts[i][1] < pts[i - 1][1] or pts[i][2]:
            start = i
    return [(at, size) for at, size, _ in pts[start:]]


def slope_per_day(xy: Sequence[tuple[int, int]]) -> float | None:
    """Least-squares slope in bytes/day; None with fewer than two points or when they span less
    than MIN_FIT_SPAN_MS (two measurements a minute apart say nothing about a day)."""
    if len(xy) < 2 or max(x for x, _ in xy) - min(x for x, _ in xy) < MIN_FIT_SPAN_MS:
        return None
    xs = [x / DAY_MS for x, _ in xy]
    ys = [y for _, y in xy]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var


def days_until(threshold: int, last_bytes: int, last_ms: int, per_day: float | None, now_ms: int) -> float | None:
    """Days from now until an agent of `last_bytes` at `last_ms`, growing `per_day`, reaches `threshold`."""
    if last_bytes >= threshold:
        return 0.0
    if not per_day or per_day <= 0:
        return None
    cross_ms = last_ms + (threshold - last_bytes) / per_day * DAY_MS
    return max(0.0, (cross_ms - now_ms) / DAY_MS)


def analyse(host: str, agent: str, points: Sequence, now_ms: int, thresholds: Thresholds) -> AgentTrend:
    """The trend of one agent from its size points."""
    pts = _in_time_order(points)
    window = since_last_shrink(pts)
    per_day = slope_per_day(window)
    last_ms, last_bytes, _ = pts[-1]
    return AgentTrend(host, agent, len(pts), pts[0][0], last_ms, last_bytes, len(window), per_day,
                      thresholds.warning_bytes, thresholds.critical_bytes,
                      days_until(thresholds.warning_bytes, last_bytes, last_ms, per_day, now_ms),
                      days_until(thresholds.critical_bytes, last_bytes, last_ms, per_day, now_ms),
                      tuple(b for _, b, _ in pts[-RECENT_POINTS:]))


def sparkline(values: Sequence[int]) -> str:
    """'▁▃▅█': the shape of a size history in one line of text."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi == lo:
        return SPARK[3] * len(values)
    return "".join(SPARK[round((v - lo) * (len(SPARK) - 1) / (hi - lo))] for v in values)


def sparkline_svg(values: Sequence[int], width: int = 140, height: int = 28) -> str:
    """The same shape as an inline SVG polyline (for the HTML trend page)."""
    if len(values) < 2:
        return ""
    hi = max(values) or 1
    step = (width - 4) / (len(values) - 1)
    points = " ".join(f"{2 + i * step:.1f},{height - 2 - (height - 4) * v / hi:.1f}" for i, v in enumerate(values))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f'<polyline class="spark" fill="none" stroke="#d9822b" stroke-width="2" points="{points}"/></svg>')


def analyse_all(series: dict, now_ms: int, thresholds: Thresholds) -> list[AgentTrend]:
    """Trends of every (host, agent) in `series`, the most urgent first."""
    trends = [analyse(host, agent, pts, now_ms, thresholds) for (host, agent), pts in series.items() if pts]
    far = float("inf")
    trends.sort(key=lambda t: (t.critical_in_days if t.critical_in_days is not None else far,
                               t.warning_in_days if t.warning_in_days is not None else far, t.host, t.agent))
    return trends


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def _days_cell(days: float | None) -> str:
    if days is None:
        return "-"
    return "now" if days == 0 else f"{days:.0f} d" if days <= HORIZON_DAYS else "> 1 y"


def trend_rows(trends: Iterable[AgentTrend]) -> tuple[list[str], list[list]]:
    headers = ["host/agent", "measured", "since", "sizes", "size now", "growth", "to warning", "to critical"]
    rows = [[t.name, t.points, _day(t.first_ms), sparkline(t.recent), mb(t.last_bytes),
             "-" if t.rate_bytes_per_day is None else (rate(t.rate_bytes_per_day) if t.rate_bytes_per_day >= 0
                                                        else "-" + rate(-t.rate_bytes_per_day)),
             _days_cell(t.warning_in_days), _days_cell(t.critical_in_days)] for t in trends]
    return headers, rows


def render_trends(trends: list[AgentTrend], fmt: str, thresholds: Thresholds) -> str:
    """The trend report as table, markdown, json or html."""
    if fmt == "json":
        return json.dumps({"schema": "fleet.trend/1", "warning_bytes": thresholds.warning_bytes,
                           "critical_bytes": thresholds.critical_bytes,
                           "agents": [dict(asdict(t), sentence=t.sentence()) for t in trends]}, indent=2) + "\n"
    limits = f"thresholds per agent: warning {mb(thresholds.warning_bytes)}, critical {mb(thresholds.critical_bytes)}"
    if not trends:
        return "no size history yet: `fleet scan` and `fleet run` record it\n"
    headers, rows = trend_rows(trends)
    sentences = [t.sentence() for t in trends]
    if fmt == "html":
        from fleet.report.html import html_table, page

        items = "".join(f"<li>{sparkline_svg(t.recent)} {escape(t.sentence())}</li>" for t in trends)
        return page("fleet size trends", f"<h1>fleet size trends</h1><p class=\"muted\">{escape(limits)}</p>"
                                         f"<ul>{items}</ul>{html_table(headers, rows)}")
    markdown = fmt == "markdown"
    table = tabulate(rows, headers=headers, tablefmt="github" if markdown else "simple", disable_numparse=True)
    bullet = "- " if markdown else ""
    head = "## fleet size trends" if markdown else "fleet size trends"
    return "\n\n".join([head, limits, "\n".join(bullet + s for s in sentences), table]) + "\n"


def trend_command_text(host: str | None, agent: str | None, fmt: str, now_ms: int | None = None,
                       inventory: Path | None = None) -> str:
    """`fleet report --trend`: read the history and render the trends (thresholds from the
    fleet.toml next to `inventory`, default ./inventory.toml; the environment overrides them)."""
    from fleet.config.fleetconf import load_fleet_config
    from fleet.report.history import agent_size_series

    configured = load_fleet_config(Path(inventory or "inventory.toml")).thresholds
    thresholds = Thresholds.from_env(base=Thresholds(configured.trend_warning, configured.trend_critical))
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    trends = analyse_all(agent_size_series(host=host, agent=agent), now_ms, thresholds)
    return render_trends(trends, fmt, thresholds)
