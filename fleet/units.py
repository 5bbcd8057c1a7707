"""Sizes and durations as people write them, and back.

Binary units throughout, as logrotate and `du` use them: 1 KB = 1024 bytes,
1 MB = 1,048,576 bytes.
"""
from __future__ import annotations

import re

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024,
               "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
               "g": 1024**3, "gb": 1024**3, "gib": 1024**3,
               "t": 1024**4, "tb": 1024**4, "tib": 1024**4}
_DURATION_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


def _parse_amount(value: object, pattern: re.Pattern, units: dict, what: str, example: str, examples: str) -> int:
    """`value` (an int, or a number and a unit matching `pattern`) in the base unit of `units`."""
    if isinstance(value, bool):
        raise ValueError(f"expected a {what} like {example}, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a {what} >= 0, got {value}")
        return value
    if isinstance(value, str):
        m = pattern.match(value)
        if m and m.group(2).lower() in units:
            return int(float(m.group(1)) * units[m.group(2).lower()])
    raise ValueError(f"expected a {what} like {examples}, got {value!r}")


def parse_size(value: object) -> int:
    """Return the number of bytes in `value` ("2MB", "512KB", 1024).

    Raises ValueError with a message fit for a config error.
    """
    return _parse_amount(value, _SIZE_RE, _SIZE_UNITS, "size", '"2MB"', '"2MB" or "512KB"')


def parse_duration(value: object) -> int:
    """Return the number of seconds in `value` ("24h", "30d", "90m", 3600)."""
    return _parse_amount(value, _DURATION_RE, _DURATION_UNITS, "duration", '"24h"', '"24h", "30d" or "90m"')


_BYTE_UNITS = (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("KB", 1024))


def human_bytes(n: int | float | None) -> str:
    """The one size format of every report, notice and message: binary units, a space, one
    decimal below 10 and none from 10 on, no trailing ".0" — "0 B", "512 B", "1.5 KB", "458 KB",
    "1.9 MB", "2 MB", "12 MB", "1.2 GB". None is "-".

    The host-side program keeps a copy (fleet/hostside/health.py, human_bytes), held equal to
    this one by tests/test_units.py.
    """
    if n is None:
        return "-"
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit, size in _BYTE_UNITS:
        if n >= size:
            value = n / size
            text = f"{value:.1f}" if round(value, 1) < 10 else f"{value:.0f}"
            return f"{sign}{text.removesuffix('.0')} {unit}"
    return f"{sign}{int(n)} B"


def percent_change(before: int, after: int) -> str:
    """'−98 %' style change; '0 %' when nothing changed or nothing was there."""
    if before <= 0:
        return "0 %"
    pct = round((after - before) * 100 / before)
    if pct == 0:
        return "0 %"
    return f"{'−' if pct < 0 else '+'}{abs(pct)} %"


def human_duration(seconds: int) -> str:
    """"24h", "30d", "10m", "45s": an age as a playbook writes it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        # "24h" reads better than "1d"; from two days on, days.
        if seconds >= size and seconds % size == 0 and not (unit == "d" and seconds < 2 * 86400):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
