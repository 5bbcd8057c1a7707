"""An independent cron reference for the tests: when does Debian's cron fire?

Written from crontab(5) alone, sharing nothing with fleet's parser: each field is a predicate
evaluated on one candidate value (never expanded to a set), and the next firing minutes are
found by walking the calendar day by day and then minute by minute.

crontab(5): a field is a comma list of items; an item is `*`, a number or name, or a range
`a-b`, each optionally followed by `/step` (a step counts from the start of its range). Day of
week 0 and 7 are both Sunday. When day-of-month and day-of-week are both restricted (neither
starts with `*`), cron fires when EITHER matches; otherwise both must.
"""
from __future__ import annotations

from datetime import datetime, timedelta

_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_DAYS = "sun mon tue wed thu fri sat".split()
_SHORTHAND = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
              "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
              "@annually": "0 0 1 1 *"}
# (first value, last value, names, value of the first name)
_BOUNDS = ((0, 59, (), 0), (0, 23, (), 0), (1, 31, (), 0), (1, 12, _MONTHS, 1), (0, 7, _DAYS, 0))


def _number(token: str, names, first_name: int) -> int:
    token = token.lower()
    return names.index(token) + first_name if token in names else int(token)


def _item_holds(item: str, value: int, bounds) -> bool:
    low, high, names, first_name = bounds
    span, _, step = item.partition("/")
    every = int(step) if step else 1
    if span == "*":
        start, end = low, high
    elif "-" in span:
        a, b = span.split("-")
        start, end = _number(a, names, first_name), _number(b, names, first_name)
    else:
        start = end = _number(span, names, first_name)
    return start <= value <= end and (value - start) % every == 0


def _field_holds(text: str, value: int, bounds) -> bool:
    return any(_item_holds(item, value, bounds) for item in text.split(","))


def _weekday_holds(text: str, weekday: int) -> bool:
    """weekday 0 = Sunday; an item may name Sunday as 7."""
    return _field_holds(text, weekday, _BOUNDS[4]) or (weekday == 0 and _field_holds(text, 7, _BOUNDS[4]))


def cron_fires(expr: str, after: datetime, n: int) -> list:
    """The first `n` minutes strictly after `after` at which cron runs `expr`."""
    minute, hour, dom, month, dow = _SHORTHAND.get(expr.strip().lower(), expr).split()
    either = not dom.startswith("*") and not dow.startswith("*")
    out = []
    day = datetime(after.year, after.month, after.day)
    while len(out) < n:
        weekday = day.isoweekday() % 7
        dom_ok, dow_ok = _field_holds(dom, day.day, _BOUNDS[2]), _weekday_holds(dow, weekday)
        if _field_holds(month, day.month, _BOUNDS[3]) and ((dom_ok or dow_ok) if either else (dom_ok and dow_ok)):
            moment = day
            while moment.day == day.day and len(out) < n:
                if moment > after and _field_holds(hour, moment.hour, _BOUNDS[1]) \
                        and _field_holds(minute, moment.minute, _BOUNDS[0]):
                    out.append(moment)
                moment += timedelta(minutes=1)
        day += timedelta(days=1)
    return out
