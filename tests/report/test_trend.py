"""Trends on synthetic series: growth since the last shrink, forecasts, wording, and the
`fleet report --trend` command over a real history database."""
from __future__ import annotations

import json

import pytest

from fleet.report import history
from fleet.cli import main
from fleet.report.results import FileResult, HostResult, RunResult, Stats
from fleet.report.trend import (DAY_MS, MB, Thresholds, analyse, analyse_all, days_until, since_last_shrink,
                         slope_per_day, sparkline)

T0 = 1_795_000_000_000
LIMITS = Thresholds(10 * MB, 50 * MB)


def daily(sizes, start_day=0):
    return [(T0 + (start_day + i) * DAY_MS, int(s)) for i, s in enumerate(sizes)]


def test_slope_is_least_squares_bytes_per_day():
    assert slope_per_day(daily([1 * MB, 2 * MB, 3 * MB])) == pytest.approx(MB)
    # Noisy points: the fitted slope, not the last step.
    assert slope_per_day(daily([0, 3 * MB, 2 * MB, 3 * MB])) == pytest.approx(0.8 * MB)
    assert slope_per_day(daily([5 * MB])) is None
    assert slope_per_day([(T0, 1), (T0, 5)]) is None
    # A minute apart: no basis for a daily rate.
    assert slope_per_day([(T0, 1 * MB), (T0 + 60_000, 2 * MB)]) is None


def test_window_starts_at_the_last_shrink():
    pts = daily([1 * MB, 5 * MB, 9 * MB, 0.2 * MB, 0.8 * MB, 1.4 * MB])
    assert since_last_shrink(pts) == pts[3:]
    assert since_last_shrink(daily([1, 2, 3])) == daily([1, 2, 3])
    # A restore is a step back up, not growth: the fit restarts at it.
    restored = [(T0, 1 * MB, False), (T0 + DAY_MS, 2 * MB, False), (T0 + 2 * DAY_MS, 9 * MB, True),
                (T0 + 3 * DAY_MS, 9.5 * MB, False)]
    assert since_last_shrink(restored) == [(T0 + 2 * DAY_MS, 9 * MB), (T0 + 3 * DAY_MS, int(9.5 * MB))]
    t = analyse("pc-a", "main", pts, pts[-1][0], LIMITS)
    assert t.rate_bytes_per_day == pytest.approx(0.6 * MB)
    assert t.fit_points == 3 and t.points == 6


def test_a_run_before_and_after_at_the_same_second_keeps_its_order():
    pts = [(T0, 5 * MB), (T0 + DAY_MS, 6 * MB), (T0 + DAY_MS, 1 * MB)]
    t = analyse("pc-a", "main", pts, T0 + DAY_MS, LIMITS)
    assert t.last_bytes == 1 * MB
    assert since_last_shrink(pts) == [(T0 + DAY_MS, 1 * MB)]


def test_forecast_counts_from_now():
    # 4 MB measured a day ago, growing 1 MB/day: 10 MB is 6 days after that, 5 days from now.
    assert days_until(10 * MB, 4 * MB, T0, MB, T0 + DAY_MS) == pytest.approx(5)
    assert days_until(10 * MB, 12 * MB, T0, MB, T0) == 0
    assert days_until(10 * MB, 4 * MB, T0, 0, T0) is None
    assert days_until(10 * MB, 4 * MB, T0, -MB, T0) is None


def test_sentences_read_like_the_issue():
    grows = analyse("pc-a", "main", daily([4.4 * MB, 5.0 * MB, 5.6 * MB, 6.2 * MB]), T0 + 3 * DAY_MS, LIMITS)
    assert grows.sentence() == "pc-a/main grows 614 KB/day; crosses 10 MB in about 6 days"
    over = analyse("t440", "main", daily([11 * MB, 12 * MB]), T0 + DAY_MS, LIMITS)
    assert over.sentence() == ("t440/main grows 1 MB/day; already over 10 MB (12 MB); "
                               "crosses the critical 50 MB in about 38 days")
    steady = analyse("pc-b", "work", daily([2 * MB, 2 * MB]), T0 + DAY_MS, LIMITS)
    assert steady.sentence() == "pc-b/work is steady at 2 MB"
    fresh = analyse("pc-b", "main", daily([9 * MB, 0.5 * MB]), T0 + DAY_MS, LIMITS)
    assert "not enough history" in fresh.sentence()


def test_sparkline_shows_the_shape():
    assert sparkline([1, 2, 3, 4]) == "▁▃▆█"
    assert sparkline([5, 5]) == "▄▄"
    assert sparkline([]) == ""


def test_most_urgent_first():
    series = {("a", "slow"): daily([1 * MB, 1.1 * MB]), ("b", "fast"): daily([1 * MB, 4 * MB]),
              ("c", "flat"): daily([1 * MB, 1 * MB])}
    assert [t.agent for t in analyse_all(series, T0 + DAY_MS, LIMITS)] == ["fast", "slow", "flat"]


def test_thresholds_from_env():
    assert Thresholds.from_env({"FLEET_TREND_WARNING": "20MB"}) == Thresholds(20 * MB, 50 * MB)
    with pytest.raises(Exception, match="FLEET_TREND_CRITICAL"):
        Thresholds.from_env({"FLEET_TREND_CRITICAL": "lots"})


def record_scan(run_id: str, day: int, sizes: dict[tuple[str, str], int]) -> None:
    hosts = {}
    for (host, agent), size in sizes.items():
        hosts.setdefault(host, []).append(FileResult(agent, f"agents/{agent}/sessions/s.jsonl", "transcript", "none",
                                                     (), Stats(size, 1), Stats(size, 1)))
    history.record_run(RunResult(run_id, "scan", None, False, f"2026-11-{day:02d}T03:00:00Z",
                                 f"2026-11-{day:02d}T03:00:05Z",
                                 tuple(HostResult(h, True, files=tuple(fs)) for h, fs in hosts.items())))


def test_report_trend_command_reads_history(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))
    for i, day in enumerate((10, 11, 12, 13)):
        record_scan(f"202611{day}T030000Z-scan{i:02d}", day,
                    {("pc-a", "main"): int((2 + 0.5 * i) * MB), ("t440", "main"): 3 * MB})
    assert _cli(["report", "--trend"]) == 0
    out = capsys.readouterr().out
    assert "pc-a/main grows 512 KB/day" in out and "t440/main is steady at 3 MB" in out
    assert _cli(["report", "--trend", "--host", "pc-a", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [a["host"] for a in doc["agents"]] == ["pc-a"]
    assert doc["agents"][0]["rate_bytes_per_day"] == pytest.approx(0.5 * MB)
    assert doc["agents"][0]["points"] == 4
    assert _cli(["report", "--trend", "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!DOCTYPE html>") and "pc-a/main grows 512 KB/day" in page
    assert page.count('<polyline class="spark"') == 2


def _cli(argv):
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
