"""Validate a TOML config whole, collecting every problem with its file and key path.

Used by the inventory, the playbooks and `fleet.toml`. The pattern (after borgmatic's
`config/validate.py`): read the file once, walk it with `Table` views that know their dotted
path, and record each problem instead of raising, so the user sees all of them at once::

    problems = Problems("inventory.toml")
    root = Table(read_toml(path, problems), "", problems)
    root.check_keys({"defaults", "hosts"})
    port = root.table("defaults").integer("port", minimum=1, maximum=65535)
    problems.raise_if_any(InventoryError)

Every problem reads ``<file>: <table>.<key>: <what is wrong>``, e.g.
``inventory.toml: hosts.t440.port: expected an integer, got "22a"``. A getter that finds a bad
value records the problem and returns the default, so validation goes on past it; callers never
use the returned values once `problems` is non-empty (they raise instead).
"""
from __future__ import annotations

import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from fleet import units

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""What `Table._get` returns for an absent key (distinct from a TOML value)."""

_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_TOML_POS_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class Problems:
    """Every problem found in one config file, in the order found.

    `source` is the file as the user named it; it prefixes every message.
    """

    def __init__(self, source: str | Path):
        self.source = str(source)
        self.messages: list[str] = []
        self.warnings: list[str] = []

    def add(self, path: str, message: str) -> None:
        """Record a problem at dotted key `path` ("" for the file itself)."""
        self.messages.append(self._format(path, message))

    def warn(self, path: str, message: str) -> None:
        """Record something worth telling that does not stop anything."""
        self.warnings.append(self._format(path, message))

    def extend(self, other: "Problems") -> None:
        """Take over another file's problems and warnings (e.g. an included playbook)."""
        self.messages.extend(other.messages)
        self.warnings.extend(other.warnings)

    def _format(self, path: str, message: str) -> str:
        return f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}"

    def __bool__(self) -> bool:
        return bool(self.messages)

    def __len__(self) -> int:
        return len(self.messages)

    def raise_if_any(self, error_class: Callable[[list[str]], Exception]) -> None:
        """Raise `error_class(messages)` (a `fleet.errors.ConfigError`) if anything was recorded."""
        if self.messages:
            raise error_class(list(self.messages))


def quote_key(key: str) -> str:
    """One key as TOML writes it: `port`, `"odd name"`."""
    return key if _BARE_KEY_RE.match(key) else json.dumps(key, ensure_ascii=False)


def join_path(*keys: str) -> str:
    """Dotted path of single keys as TOML writes it: `hosts.t440.port`, `hosts."odd name".port`."""
    return ".".join(quote_key(k) for k in keys if k != "")


def describe_value(value: Any) -> str:
    """A value as it would appear in TOML, for 'got …' in messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + '…"'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def suggestion(name: str, valid: Iterable[str]) -> str:
    """'; did you mean "address"?' for the nearest valid name, or '' when none is close."""
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if not close:   # difflib misses short names that differ only in case or '_' vs '-'
        wanted = name.lower().replace("_", "-")
        close = [v for v in valid if v.lower().replace("_", "-") == wanted][:1]
    return f'; did you mean "{close[0]}"?' if close else ""


def read_toml(path: Path, problems: Problems, *, missing_hint: str = "") -> dict | None:
    """Parse `path`; on any failure record one problem and return None.

    A syntax error is reported with its line and column; a missing file with `missing_hint`
    (e.g. "pass the inventory with -i FILE").
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        problems.add("", "file not found" + (f"; {missing_hint}" if missing_hint else ""))
        return None
    except IsADirectoryError:
        problems.add("", "is a directory, expected a TOML file")
        return None
    except OSError as exc:
        problems.add("", f"cannot read: {exc.strerror or exc}")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.add("", f"not UTF-8 text (byte {exc.start}); TOML files must be UTF-8")
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POS_RE.search(message)
        if match:
            message = message[: match.start()]
            problems.add("", f"line {match.group(1)}, column {match.group(2)}: invalid TOML: {message}")
        else:
            problems.add("", f"invalid TOML: {message}")
        return None


class Table:
    """A TOML table plus its dotted path; typed getters record problems instead of raising.

    Each getter returns the value (converted where the type says so), `default` when the key is
    absent, and `default` as well when the value is bad (after recording why). `required=True`
    records "missing required key" when absent.
    """

    def __init__(self, data: dict | None, path: str, problems: Problems):
        self.data = data if isinstance(data, dict) else {}
        self.path = path
        self.problems = problems

    def key_path(self, key: str) -> str:
        """The dotted path of `key` in this table (`self.path` is already formatted)."""
        return f"{self.path}.{quote_key(key)}" if self.path else quote_key(key)

    def add(self, key: str, message: str) -> None:
        """Record a problem about `key` of this table."""
        self.problems.add(self.key_path(key), message)

    def warn(self, key: str, message: str) -> None:
        self.problems.warn(self.key_path(key), message)

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def keys(self) -> list[str]:
        return list(self.data)

    def describe(self, key: str) -> str:
        """The value at `key` as a message quotes it."""
        return describe_value(self.data.get(key))

    @staticmethod
    def suggestion(name: str, valid: Iterable[str]) -> str:
        """`suggestion` for readers that only hold a Table (the operations' readers)."""
        return suggestion(name, valid)

    def check_keys(self, allowed: Iterable[str], hints: dict[str, str] | None = None) -> None:
        """Flag every key not in `allowed`, with the nearest valid name or a hint of our own.

        `hints` maps a known wrong key to a fix ("identity_files" → 'use "identity_file"').
        """
        allowed = list(allowed)
        for key in self.data:
            if key in allowed:
                continue
            if hints and key in hints:
                self.add(key, f"unknown key; {hints[key]}")
                continue
            hint = suggestion(key, allowed)
            if not hint:
                hint = "; valid keys: " + ", ".join(sorted(allowed))
            self.add(key, "unknown key" + hint)

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.data:
            if required:
                self.add(key, "missing required key")
            return MISSING
        return self.data[key]

    def table(self, key: str, *, required: bool = False) -> "Table":
        """The sub-table `key` (an empty one when absent or not a table)."""
        value = self._get(key, required)
        if value is MISSING:
            return Table({}, self.key_path(key), self.problems)
        if not isinstance(value, dict):
            self.add(key, f"expected a table ([{self.key_path(key)}]), got {describe_value(value)}")
            return Table({}, self.key_path(key), self.problems)
        return Table(value, self.key_path(key), self.problems)

    def subtables(self) -> Iterator[tuple[str, "Table"]]:
        """(name, Table) for every entry of this table, in file order; non-tables are flagged."""
        for name, value in self.data.items():
            if isinstance(value, dict):
                yield name, Table(value, self.key_path(name), self.problems)
            else:
                self.add(name, f"expected a table ([{self.key_path(name)}]), got {describe_value(value)}")

    def table_list(self, key: str) -> list["Table"]:
        """An array of tables (`[[key]]`), each with its index in the path: `transcripts.tier[1]`."""
        value = self._get(key, False)
        if value is MISSING:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.add(key, f"expected an array of tables ([[{self.key_path(key)}]]), got {describe_value(value)}")
            return []
        return [Table(v, f"{self.key_path(key)}[{i}]", self.problems) for i, v in enumerate(value)]

    def string(self, key: str, default: Any = None, *, required: bool = False, allow_empty: bool = False,
               choices: Sequence[str] | None = None, pattern: "re.Pattern[str] | None" = None,
               pattern_hint: str = "", choices_note: str = "") -> Any:
        """A string; `choices` limits it to those values, `pattern` (fullmatch) to a form.

        Control characters (newlines, tabs) are always refused: no config value needs them.
        """
        value = self._get(key, required)
        if value is MISSING:
            return default
        if not isinstance(value, str):
            expected = _choices_text(choices) if choices else "a string"
            self.add(key, f"expected {expected}, got {describe_value(value)}")
            return default
        if choices is not None:
            if value not in choices:
                hint = suggestion(value, choices)
                note = f" ({choices_note})" if choices_note else ""
                self.add(key, f"expected {_choices_text(choices)}{note}, got {describe_value(value)}{hint}")
                return default
            return value
        if not value.strip() and not allow_empty:
            self.add(key, "must not be empty")
            return default
        if _CONTROL_RE.search(value):
            self.add(key, f"contains a control character (newline, tab, …): {describe_value(value)}")
            return default
        if pattern is not None and not pattern.fullmatch(value):
            self.add(key, f"{pattern_hint or 'invalid value'}, got {describe_value(value)}")
            return default
        return value

    def integer(self, key: str, default: Any = None, *, required: bool = False,
                minimum: int | None = None, maximum: int | None = None) -> Any:
        """An integer (not a bool, not a string of digits) within [minimum, maximum]."""
        value = self._get(key, required)
        if value is MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(key, f"expected an integer, got {describe_value(value)}")
            return default
        return self._in_range(key, value, default, minimum, maximum)

    def number(self, key: str, default: Any = None, *, required: bool = False,
               minimum: float | None = None, maximum: float | None = None, exclusive_minimum: bool = False) -> Any:
        """An integer or float, returned as float."""
        value = self._get(key, required)
        if value is MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.add(key, f"expected a number, got {describe_value(value)}")
            return default
        if exclusive_minimum and minimum is not None and value <= minimum:
            self.add(key, f"must be greater than {minimum:g}, got {describe_value(value)}")
            return default
        return float(self._in_range(key, value, default, minimum, maximum))

    def _in_range(self, key: str, value: Any, default: Any, minimum: Any, maximum: Any) -> Any:
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            self.add(key, f"must be between {minimum} and {maximum}, got {describe_value(value)}")
            return default
        if minimum is not None and value < minimum:
            self.add(key, f"must be at least {minimum}, got {describe_value(value)}")
            return default
        if maximum is not None and value > maximum:
            self.add(key, f"must be at most {maximum}, got {describe_value(value)}")
            return default
        return value

    def boolean(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        """true or false (TOML booleans only; "yes" and 1 are refused)."""
        value = self._get(key, required)
        if value is MISSING:
            return default
        if not isinstance(value, bool):
            self.add(key, f"expected true or false, got {describe_value(value)}")
            return default
        return value

    def size(self, key: str, default: Any = None, *, required: bool = False, minimum: int = 0) -> Any:
        """Bytes from "2MB", "512KB" or a plain integer (binary units, see fleet.units)."""
        return self._amount(key, default, required, minimum, units.parse_size, "bytes",
                            'a size like "2MB", "512KB" or a number of bytes')

    def duration(self, key: str, default: Any = None, *, required: bool = False, minimum: int = 0) -> Any:
        """Seconds from "24h", "30d", "90m" or a plain integer of seconds."""
        return self._amount(key, default, required, minimum, units.parse_duration, "seconds",
                            'a duration like "24h", "30d", "90m" or a number of seconds')

    def _amount(self, key: str, default: Any, required: bool, minimum: int, parse: Callable[[Any], int],
                unit: str, expected: str) -> Any:
        value = self._get(key, required)
        if value is MISSING:
            return default
        try:
            parsed = parse(value)
        except ValueError:
            self.add(key, f"expected {expected}, got {describe_value(value)}")
            return default
        if parsed < minimum:
            self.add(key, f"must be at least {minimum} {unit}, got {describe_value(value)}")
            return default
        return parsed

    def string_list(self, key: str, default: Any = None, *, required: bool = False, allow_empty: bool = True,
                    item_check: Callable[[str], str | None] | None = None, unique: bool = True) -> Any:
        """A list of strings. `item_check(item)` returns an error text for a bad item, or None.

        Bad items are reported one by one with their index (`agents[1]`); duplicates are refused.
        """
        value = self._get(key, required)
        if value is MISSING:
            return default
        if not isinstance(value, list):
            hint = f" (write [{describe_value(value)}])" if isinstance(value, str) else ""
            self.add(key, f"expected a list of strings, got {describe_value(value)}{hint}")
            return default
        if not value and not allow_empty:
            self.add(key, "must not be an empty list")
            return default
        ok = True
        seen: set[str] = set()
        for index, item in enumerate(value):
            item_path = f"{self.key_path(key)}[{index}]"
            if not isinstance(item, str):
                self.problems.add(item_path, f"expected a string, got {describe_value(item)}")
                ok = False
                continue
            error = item_check(item) if item_check else None
            if error:
                self.problems.add(item_path, f"{error}, got {describe_value(item)}")
                ok = False
            elif unique and item in seen:
                self.problems.add(item_path, f"{describe_value(item)} is listed twice")
                ok = False
            seen.add(item)
        return list(value) if ok else default


def _choices_text(choices: Sequence[str]) -> str:
    quoted = [f'"{c}"' for c in choices]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]
