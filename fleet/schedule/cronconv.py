"""Cron expressions, checked and turned into systemd `OnCalendar=` values.

`parse_cron(expr)` reads the five fields of crontab(5) (minute hour day-of-month month
day-of-week) with lists, ranges, steps and the names jan…dec / sun…sat, and the shorthands
@hourly @daily @midnight @weekly @monthly @yearly @annually. It raises `CronError` with a
message that names the field, for anything Debian's cron would not run the same way.

`cron_to_oncalendar(expr)` gives the `OnCalendar=` values of a systemd timer that fire at
exactly the same minutes. Usually one value; two when both day-of-month and day-of-week are
restricted, because cron fires when EITHER matches and systemd wants both (a timer may carry
several `OnCalendar=` lines, which systemd ORs).

`cron_for_crontab(expr)` is the same schedule spelled with numbers only (names inside lists and
ranges are not portable between cron implementations), which is what fleet writes to a crontab.

`check_oncalendar(value)` checks a value given directly for systemd; it asks
`systemd-analyze calendar` when that program exists, and otherwise only does a shape check.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
SYSTEMD_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")

SHORTHANDS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


class CronError(ValueError):
    """A cron expression fleet cannot schedule; the message says which field and why."""


@dataclass(frozen=True)
class Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


FIELDS = (
    Field("minute", 0, 59),
    Field("hour", 0, 23),
    Field("day of month", 1, 31),
    Field("month", 1, 12, MONTH_NAMES, 1),
    Field("day of week", 0, 7, DAY_NAMES, 0),
)


@dataclass(frozen=True)
class CronSpec:
    """The minutes a cron expression fires at, as sets of values per field.

    `dom_star` / `dow_star` say whether the field was unrestricted (a leading `*`), which
    decides cron's either-or rule for the two day fields. Day of week 7 is folded into 0.
    """

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_star: bool
    dow_star: bool

    def matches(self, minute: int, hour: int, day: int, month: int, weekday: int) -> bool:
        """True when cron would fire at that minute (weekday 0 = Sunday)."""
        if minute not in self.minutes or hour not in self.hours or month not in self.months:
            return False
        day_ok, weekday_ok = day in self.days, weekday in self.weekdays
        if self.dom_star or self.dow_star:
            return day_ok and weekday_ok
        return day_ok or weekday_ok


def is_cron_expression(text: str) -> bool:
    """True when `text` looks like cron (five fields or an @shorthand), not like OnCalendar."""
    text = text.strip()
    if text.startswith("@"):
        return True
    parts = text.split()
    return len(parts) == 5 and all(re.fullmatch(r"[0-9A-Za-z*/,\-?LW#]+", p) for p in parts)


def _value(token: str, f: Field) -> int:
    low = token.lower()
    if f.names and low in f.names:
        return f.names.index(low) + f.name_base
    if not token.isdigit():
        hint = f" (names: {', '.join(f.names)})" if f.names else ""
        raise CronError(f"{f.name}: {token!r} is not a number{hint}")
    value = int(token)
    if not f.low <= value <= f.high:
        raise CronError(f"{f.name}: {value} is outside {f.low}-{f.high}")
    return value


def _parse_field(text: str, f: Field) -> tuple[frozenset[int], bool]:
    if any(c in text for c in "?LW#"):
        raise CronError(f"{f.name}: {text!r} uses Quartz-style '?', 'L', 'W' or '#', which cron does not have")
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{f.name}: empty item in list {text!r}")
        base, has_step, step_text = part.partition("/")
        step = 1
        if has_step:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{f.name}: step {step_text!r} in {part!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = f.low, f.high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(first, f), _value(last, f)
            if start > end:
                raise CronError(f"{f.name}: range {base!r} runs backwards; cron does not wrap around")
        else:
            start = _value(base, f)
            if has_step:
                raise CronError(f"{f.name}: {part!r}: a step needs a range or '*' before it, e.g. '{base}-{f.high}/{step}'")
            end = start
        values.update(range(start, end + 1, step))
    return frozenset(values), text.startswith("*")


def parse_cron(expr: str) -> CronSpec:
    """Parse a cron expression (five fields or an @shorthand). Raises CronError."""
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() == "@reboot":
            raise CronError("@reboot has no calendar time; fleet schedules need one (e.g. \"@daily\")")
        if text.lower() not in SHORTHANDS:
            raise CronError(f"unknown shorthand {text!r}; known: {', '.join(SHORTHANDS)}")
        text = SHORTHANDS[text.lower()]
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}: {expr!r}")
    parsed = [_parse_field(p, f) for p, f in zip(parts, FIELDS)]
    weekdays = frozenset(0 if d == 7 else d for d in parsed[4][0])
    return CronSpec(parsed[0][0], parsed[1][0], parsed[2][0], parsed[3][0], weekdays,
                    dom_star=parsed[2][1], dow_star=parsed[4][1])


def cron_for_crontab(expr: str) -> str:
    """`expr` with month and weekday names replaced by numbers; shorthands kept as they are."""
    parse_cron(expr)
    text = expr.strip()
    if text.startswith("@"):
        return text.lower()
    parts = text.split()
    for index, f in ((3, FIELDS[3]), (4, FIELDS[4])):
        parts[index] = re.sub(r"[A-Za-z]+", lambda m, f=f: str(_value(m.group(0), f)), parts[index])
    return " ".join(parts)


def _compress(values: frozenset[int], low: int, high: int, width: int = 2) -> str:
    """Spell a set of values the shortest way systemd understands: *, a/step, a..b, lists."""
    if values == frozenset(range(low, high + 1)):
        return "*"
    ordered = sorted(values)
    fmt = (lambda v: f"{v:0{width}d}") if width else str
    if len(ordered) > 2:
        step = ordered[1] - ordered[0]
        # "start/step" in systemd repeats up to the end of the field, so only use it when the
        # progression runs to the last value the field can take. And only when it starts at the
        # field's first value and the step divides the field: systemd 252 carries a repetition's
        # overflow into the next period (`*:00/7` after 23:56 fires at 00:07, not 00:00;
        # `*-*-02/7` after the 30th skips the 2nd). Days (28-31 a month) are always spelled out.
        if all(b - a == step for a, b in zip(ordered, ordered[1:])) and ordered[-1] + step > high \
                and ordered[0] == low and (high + 1 - low) % step == 0 and high != 31:
            return f"{fmt(ordered[0])}/{step}"
    items, run = [], [ordered[0]]
    for v in ordered[1:]:
        if v == run[-1] + 1:
            run.append(v)
            continue
        items.append(run)
        run = [v]
    items.append(run)
    out = []
    for r in items:
        if len(r) >= 3:
            out.append(f"{fmt(r[0])}..{fmt(r[-1])}")
        else:
            out.extend(fmt(v) for v in r)
    return ",".join(out)


def _weekday_spec(weekdays: frozenset[int]) -> str:
    # systemd's week starts on Monday; Mon..Sun ranges read naturally that way.
    order = [1, 2, 3, 4, 5, 6, 0]
    present = [d in weekdays for d in order]
    items, i = [], 0
    while i < 7:
        if not present[i]:
            i += 1
            continue
        j = i
        while j + 1 < 7 and present[j + 1]:
            j += 1
        if j - i >= 2:
            items.append(f"{SYSTEMD_DAYS[order[i]]}..{SYSTEMD_DAYS[order[j]]}")
        else:
            items.extend(SYSTEMD_DAYS[order[k]] for k in range(i, j + 1))
        i = j + 1
    return ",".join(items)


def cron_to_oncalendar(expr: str) -> list[str]:
    """The OnCalendar= values (one or two) firing at exactly the minutes `expr` fires at."""
    spec = parse_cron(expr)
    time_part = f"{_compress(spec.hours, 0, 23)}:{_compress(spec.minutes, 0, 59)}:00"
    month = _compress(spec.months, 1, 12)
    all_days = frozenset(range(1, 32))
    all_weekdays = frozenset(range(7))

    def value(weekdays: frozenset[int], days: frozenset[int]) -> str:
        date = f"*-{month}-{_compress(days, 1, 31)}"
        prefix = "" if weekdays == all_weekdays else _weekday_spec(weekdays) + " "
        return f"{prefix}{date} {time_part}"

    if spec.dom_star or spec.dow_star:
        return [value(spec.weekdays, spec.days)]
    # Both day fields restricted: cron fires on either; systemd needs one value per side.
    return [value(all_weekdays, spec.days), value(spec.weekdays, all_days)]


_ONCALENDAR_SHAPE = re.compile(r"^[A-Za-z0-9 ,.*:/~+\-_]+$")


def check_oncalendar(value: str) -> str:
    """Check an OnCalendar= value; return systemd's normalized form (or the value itself).

    Raises CronError with systemd's own complaint when it rejects the value.
    """
    value = value.strip()
    if not value or "\n" in value or not _ONCALENDAR_SHAPE.match(value):
        raise CronError(f"{value!r} is neither a 5-field cron expression nor an OnCalendar= value "
                        "(e.g. \"Sun *-*-* 03:00:00\" or \"daily\")")
    tool = shutil.which("systemd-analyze")
    if not tool:
        return value
    proc = subprocess.run([tool, "calendar", value], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        raise CronError(f"{value!r} is not a valid OnCalendar= value: {reason}")
    m = re.search(r"Normalized form:\s*(.+)", proc.stdout)
    return m.group(1).strip() if m else value
