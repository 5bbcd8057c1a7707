"""cron → OnCalendar, checked against two references that share nothing with fleet's parser.

- cron's side: `cron_reference.cron_fires`, a minute walk written from crontab(5) alone (each
  field a predicate on one value, never fleet's `parse_cron` or `CronSpec.matches`).
- systemd's side: `systemd-analyze calendar --iterations`, systemd's own calendar code, on the
  OnCalendar= values fleet writes.

The corpus has stepped ranges, lists, names, the day-of-month/day-of-week OR rule and month ends,
each from several base times (one just before a 31st, one before a leap day), so a range that
loses its last value, a step counted from the wrong start or an OR read as AND shows up as a
different minute.
"""
from __future__ import annotations

import os
import re
import subprocess
from datetime import datetime

import pytest

from cron_reference import cron_fires
from fleet.schedule.cronconv import (CronError, check_oncalendar, cron_for_crontab, cron_to_oncalendar,
                                     is_cron_expression)

BASE = datetime(2026, 11, 21, 5, 0)  # a Saturday
BASES = (BASE, datetime(2026, 12, 28, 5, 0), datetime(2028, 2, 27, 23, 30))   # before a 31st; before Feb 29
ITERATIONS = 6


def systemd_next(values: list[str], n: int = ITERATIONS, base: datetime = BASE) -> list[datetime]:
    """The next `n` elapses systemd computes for a timer with these OnCalendar= values (UTC)."""
    found: set[datetime] = set()
    for value in values:
        proc = subprocess.run(["systemd-analyze", "calendar", f"--iterations={n}",
                               "--base-time=" + base.strftime("%Y-%m-%d %H:%M:%S"), value],
                              capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}, timeout=60)
        assert proc.returncode == 0, proc.stderr
        for stamp in re.findall(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", proc.stdout):
            found.add(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
    return sorted(found)[:n]


def test_the_reference_walks_cron_as_crontab5_says():
    """Hand-worked answers, so the reference itself is checked and not only compared."""
    assert cron_fires("0 9-17/2 * * mon-fri", BASE, 6) == [datetime(2026, 11, 23, h) for h in (9, 11, 13, 15, 17)] \
        + [datetime(2026, 11, 24, 9)]
    assert cron_fires("0 0 */2 * *", datetime(2026, 12, 28), 4) == \
        [datetime(2026, 12, 29), datetime(2026, 12, 31), datetime(2027, 1, 1), datetime(2027, 1, 3)]
    # Both day fields restricted: the 13th OR a Friday; one of them starred: both must hold.
    assert cron_fires("0 3 13 * 5", BASE, 3) == [datetime(2026, 11, 27, 3), datetime(2026, 12, 4, 3),
                                                 datetime(2026, 12, 11, 3)]
    assert cron_fires("0 3 */1 * 5", BASE, 2) == [datetime(2026, 11, 27, 3), datetime(2026, 12, 4, 3)]
    assert cron_fires("0 0 * * 7", BASE, 1) == cron_fires("0 0 * * sun", BASE, 1) == [datetime(2026, 11, 22)]
    assert cron_fires("0 0 29 2 *", BASE, 1) == [datetime(2028, 2, 29)]


def test_sunday_three_am_is_the_field_reports_weekly_job():
    assert cron_to_oncalendar("0 3 * * 0") == ["Sun *-*-* 03:00:00"]
    assert systemd_next(["Sun *-*-* 03:00:00"], 2) == [datetime(2026, 11, 22, 3, 0), datetime(2026, 11, 29, 3, 0)]


CORPUS = [
    # steps and stepped ranges
    "*/15 * * * *", "*/7 * * * *", "5-59/20 * * * *", "0 9-17/2 * * mon-fri", "0 */6 * * *",
    "*/20 */8 * * *", "0 9-17/4 * * *", "0 1-23/5 * * *", "0 0 */2 * *", "0 0 1-31/10 * *",
    "0 3 */3 * *", "0 12 2-30/7 * *", "0 0 * * 0-6/2", "0 0 1 */2 *", "0 0 1 2-12/5 *",
    # lists, names, ranges
    "0 3 * * 0", "5 4 * * 7", "30 2 * jan,jul sun", "15 3 * * 1-5", "10,40 1 1-3 * *",
    "0 0,12 1,15,31 * *", "0 12 * 2 sat,sun", "0 0 * * 5-7", "0 6 * * mon,wed-fri", "0,30 8-9 * * *",
    # day of month AND day of week both restricted: cron fires on either
    "0 3 13 * 5", "0 3 1,15 * 1", "30 4 1-7 * mon", "0 0 31 * sun", "0 0 */10 * 5", "0 0 1-3 * 6-7",
    # month ends and leap days
    "59 23 31 * *", "0 12 28-31 * *", "0 0 30 * *", "0 0 29 2 *", "0 6 31 1,3,5,7,8,10,12 *",
    # shorthands
    "@daily", "@weekly", "@hourly", "@monthly", "@yearly",
]


@pytest.mark.parametrize("base", BASES, ids=lambda b: b.strftime("%Y-%m-%d"))
@pytest.mark.parametrize("expr", CORPUS)
def test_systemd_fires_at_the_same_minutes_as_cron(expr, base):
    assert systemd_next(cron_to_oncalendar(expr), base=base) == cron_fires(expr, base, ITERATIONS)


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
