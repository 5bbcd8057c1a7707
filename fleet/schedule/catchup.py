"""Missed schedules run at the next chance, on cron as systemd's `Persistent=true` does.

cron has no catch-up: a laptop asleep at 03:00 simply skips that week. A cron-backend schedule
therefore gets a second line, every 15 minutes, `fleet schedule run NAME --catch-up`: it runs the
schedule only when its latest fire time (`previous_fire`, at least GRACE_S ago so it never races
the regular line of the same minute) is later than both the schedule's last start
(`<state>/schedules/NAME.last.json`) and its installation. Otherwise it does nothing and says
nothing (the log stays quiet), and a run of the schedule still going is left alone. The systemd
backend's timer has `Persistent=true`, which does the same.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

from fleet.report.history import parse_iso
from fleet.schedule.cronconv import parse_cron

CATCH_UP_CRON = "*/15 * * * *"
GRACE_S = 5 * 60
SEARCH_DAYS = 400


def previous_fire(expr: str, now: datetime) -> Optional[datetime]:
    """The latest minute at or before `now` (local wall time, as cron reads it) at which `expr`
    fires, or None when it did not fire in the last SEARCH_DAYS days."""
    spec = parse_cron(expr)
    now = now.replace(second=0, microsecond=0)
    minutes = sorted(spec.minutes, reverse=True)
    hours = sorted(spec.hours, reverse=True)
    for back in range(SEARCH_DAYS):
        day = (now - timedelta(days=back)).date()
        if not _day_ok(spec, day):
            continue
        for hour in hours:
            for minute in minutes:
                moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=now.tzinfo)
                if moment <= now:
                    return moment
    return None


def _day_ok(spec, day) -> bool:
    """cron's day rule: month, and day-of-month and/or day-of-week (either one when both are set)."""
    if day.month not in spec.months:
        return False
    weekday = (day.weekday() + 1) % 7          # cron: 0 = Sunday
    day_ok, weekday_ok = day.day in spec.days, weekday in spec.weekdays
    return (day_ok and weekday_ok) if (spec.dom_star or spec.dow_star) else (day_ok or weekday_ok)


def missed(cron: str, installed_at: str, status_path: Path, now: Optional[datetime] = None) -> Optional[datetime]:
    """The fire time a catch-up must make up for, or None when nothing was missed."""
    now = (now or datetime.now().astimezone()) - timedelta(seconds=GRACE_S)
    fire = previous_fire(cron, now.astimezone())
    if fire is None:
        return None
    try:
        last = parse_iso(json.loads(status_path.read_text(encoding="utf-8")).get("started_at"))
    except (OSError, ValueError):
        last = None
    since = [t for t in (last, parse_iso(installed_at)) if t is not None]
    if since and max(since) >= fire:
        return None
    return fire
