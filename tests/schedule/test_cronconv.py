"""cron → OnCalendar: checked against systemd's own calendar parser (`systemd-analyze calendar`)."""
from __future__ import annotations

import os
import re
import subprocess
from datetime import datetime, timedelta

import pytest

from fleet.schedule.cronconv import (CronError, check_oncalendar, cron_for_crontab, cron_to_oncalendar, is_cron_expression,
                            parse_cron)

BASE = datetime(2026, 11, 21, 5, 0)  # a Saturday
ITERATIONS = 6


def systemd_next(values: list[str], n: int = ITERATIONS) -> list[datetime]:
    """The next `n` elapses systemd computes for a timer with these OnCalendar= values (UTC)."""
    found: set[datetime] = set()
    for value in values:
        proc = subprocess.run(["systemd-analyze", "calendar", f"--iterations={n}",
                               "--base-time=" + BASE.strftime("%Y-%m-%d %H:%M:%S"), value],
                              capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}, timeout=60)
        assert proc.returncode == 0, proc.stderr
        for stamp in re.findall(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", proc.stdout):
            found.add(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
    return sorted(found)[:n]


def cron_next(expr: str, n: int = ITERATIONS) -> list[datetime]:
    """The next `n` minutes cron fires at after BASE, by walking the calendar (the reference)."""
    spec = parse_cron(expr)
    out: list[datetime] = []
    day = BASE.replace(hour=0, minute=0)
    while len(out) < n:
        weekday = (day.weekday() + 1) % 7  # cron: 0 = Sunday
        if spec.matches(sorted(spec.minutes)[0], sorted(spec.hours)[0], day.day, day.month, weekday):
            for hour in sorted(spec.hours):
                for minute in sorted(spec.minutes):
                    moment = day.replace(hour=hour, minute=minute)
                    if moment > BASE and len(out) < n:
                        out.append(moment)
        day += timedelta(days=1)
    return out


def test_sunday_three_am_is_the_field_reports_weekly_job():
    assert cron_to_oncalendar("0 3 * * 0") == ["Sun *-*-* 03:00:00"]
    assert systemd_next(["Sun *-*-* 03:00:00"], 2) == [datetime(2026, 11, 22, 3, 0), datetime(2026, 11, 29, 3, 0)]


@pytest.mark.parametrize("expr", [
    "0 3 * * 0", "5 4 * * 7", "*/15 * * * *", "30 2 * jan,jul sun", "0 9-17/2 * * mon-fri",
    "0 0 */2 * *", "0 3 1,15 * 1", "15 3 * * 1-5", "0 */6 * * *", "10,40 1 1-3 * *",
    "@daily", "@weekly", "@hourly", "@monthly", "0 12 * 2 sat,sun",
])
def test_systemd_fires_at_the_same_minutes_as_cron(expr):
    assert systemd_next(cron_to_oncalendar(expr)) == cron_next(expr)


def test_both_day_fields_restricted_means_either_in_cron_and_two_oncalendar_values():
    values = cron_to_oncalendar("0 3 13 * 5")      # the 13th, or any Friday
    assert values == ["*-*-13 03:00:00", "Fri *-*-* 03:00:00"]
    fires = systemd_next(values)
    assert datetime(2026, 11, 27, 3, 0) in fires and datetime(2026, 12, 13, 3, 0) in fires


def test_names_become_numbers_for_the_crontab():
    assert cron_for_crontab("0 3 * jan-mar sun,wed") == "0 3 * 1-3 0,3"
    assert cron_for_crontab("@weekly") == "@weekly"


@pytest.mark.parametrize("expr, message", [
    ("@reboot", "no calendar time"),
    ("0 3 * *", "expected 5 fields"),
    ("61 * * * *", "minute: 61 is outside 0-59"),
    ("0 24 * * *", "hour: 24 is outside 0-23"),
    ("0 3 L * *", "Quartz"),
    ("0 3 * * 1#2", "Quartz"),
    ("5/10 * * * *", "needs a range"),
    ("0 5-3 * * *", "runs backwards"),
    ("0 3 * foo *", "names: jan"),
    ("*/0 * * * *", "positive"),
    ("@fortnightly", "unknown shorthand"),
])
def test_what_cron_would_not_run_is_refused_with_the_field(expr, message):
    with pytest.raises(CronError, match=re.escape(message)):
        cron_to_oncalendar(expr)


def test_cron_or_oncalendar_is_told_apart():
    assert is_cron_expression("0 3 * * 0") and is_cron_expression("@daily")
    assert not is_cron_expression("Sun *-*-* 03:00:00") and not is_cron_expression("daily")


def test_a_direct_oncalendar_value_is_checked_by_systemd():
    assert check_oncalendar("Sun *-*-* 3:00") == "Sun *-*-* 03:00:00"
    assert check_oncalendar("weekly") == "Mon *-*-* 00:00:00"
    with pytest.raises(CronError, match="not a valid OnCalendar"):
        check_oncalendar("Sunday at three")
