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


def parse_size(value: object) -> int:
    """Return the number of bytes in `value` ("2MB", "512KB", 1024).

    Raises ValueError with a message fit for a config error.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size like \"2MB\", got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a size >= 0, got {value}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    raise ValueError(f"expected a size like \"2MB\" or \"512KB\", got {value!r}")


def parse_duration(value: object) -> int:
    """Return the number of seconds in `value` ("24h", "30d", "90m", 3600)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like \"24h\", got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a duration >= 0, got {value}")
        return value
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m and m.group(2).lower() in _DURATION_UNITS:
            return int(float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()])
    raise ValueError(f"expected a duration like \"24h\", \"30d\" or \"90m\", got {value!r}")


def human_bytes(n: int | None) -> str:
    """Format bytes as the field report does: 9.2MB, 0.18MB, 512KB, 0B."""
    if n is None:
        return "-"
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n >= 1024**3:
        return f"{sign}{n / 1024**3:.2f}GB"
    if n >= 1024**2:
        return f"{sign}{n / 1024**2:.1f}MB"
    if n >= 1024:
        return f"{sign}{n / 1024:.0f}KB"
    return f"{sign}{n}B"


def human_mb(n: int) -> str:
    """Megabytes with enough digits to show small results: 9.2MB, 0.18MB."""
    mb = n / 1024**2
    if mb >= 1:
        return f"{mb:.1f}MB"
    if mb >= 0.01:
        return f"{mb:.2f}MB"
    return human_bytes(n)


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
