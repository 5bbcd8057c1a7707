"""`-l`/`--limit`: which hosts of the inventory a command works on, as Ansible's `--limit` does.

A limit is a list of terms separated by `,` or `:`. A term is `all` (every host), a host name, a
group name, a shell glob over host and group names (`pc-*`, `web?`), or `@FILE`, a retry list
(one term per line, `#` comments) as `write_retry_file` writes it. A leading `&` intersects
(`web:&prod`: hosts in both), a leading `!` excludes (`all:!t440`). The including terms are
united, then each `&` term narrows the result, then the `!` terms remove; without any including
term every host is the start. The result keeps the inventory's order. A term that matches
nothing is a usage error (exit 2): a typo must never silently shrink the run.
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Iterable

from fleet.files import write_atomic
from fleet.errors import UsageError
from fleet.config.inventory import Host, Inventory
from fleet.config.validate import suggestion

_GLOB_CHARS = set("*?[")


def select_hosts(inv: Inventory, limit: str | None) -> list[Host]:
    """The hosts `limit` selects, in inventory order; all hosts when `limit` is None.

    Raises UsageError naming every term that matches nothing (with the valid names), and when
    the selection ends up empty.
    """
    if limit is None:
        if not inv.hosts:
            raise UsageError("the inventory has no hosts")
        return list(inv.hosts.values())
    terms = _expand_terms(_split(limit), seen_files=set())
    if not terms:
        raise UsageError(f"--limit {limit!r} names no host: give host names, groups or globs, comma-separated")

    included: set[str] = set()
    excluded: set[str] = set()
    narrowing: list[set[str]] = []
    any_include = False
    unknown: list[str] = []
    for term in terms:
        sign = term[0] if term[0] in "!&" else ""
        pattern = term[1:].strip() if sign else term
        matched = _match(inv, pattern)
        if not matched:
            unknown.append(term)
        if sign == "!":
            excluded |= matched
        elif sign == "&":
            narrowing.append(matched)
        else:
            any_include = True
            included |= matched
    if unknown:
        raise UsageError(_unknown_message(inv, unknown))
    if not any_include:
        included = set(inv.hosts)
    for matched in narrowing:
        included &= matched
    chosen = [host for name, host in inv.hosts.items() if name in included and name not in excluded]
    if not chosen:
        raise UsageError(f"--limit {limit!r} selects no host (the intersections and exclusions leave none)")
    return chosen


def write_retry_file(path: Path, names: Iterable[str], comment: str = "") -> Path:
    """Write `names` (one per line) to `path`, for a later `--limit @path`; return the path.

    `comment` becomes a leading `#` line (e.g. which run failed). The file is written to a temp
    file in the same folder and renamed, so a reader never sees half of it.
    """
    lines = [f"# {line}" for line in comment.splitlines()] if comment else []
    lines.extend(names)
    return write_atomic(Path(path), "\n".join(lines) + "\n")


def read_retry_file(path: Path) -> list[str]:
    """The terms in a retry list: one per line, blank lines and `#` comments ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--limit @{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--limit @{path}: cannot read: {exc}") from None
    terms = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            terms.append(line)
    return terms


def _split(limit: str) -> list[str]:
    """Terms separated by `,` or `:`; an `@FILE` term keeps its `:` (a path may hold one)."""
    terms: list[str] = []
    for part in limit.split(","):
        part = part.strip()
        if part.lstrip("!&").startswith("@"):
            terms.append(part)
        else:
            terms.extend(t.strip() for t in part.split(":"))
    return [t for t in terms if t]


def _expand_terms(terms: list[str], seen_files: set[str]) -> list[str]:
    """Replace `@FILE` (and `!@FILE`, which negates every line) by the file's terms."""
    out: list[str] = []
    for term in terms:
        negate = term.startswith("!")
        body = term[1:].strip() if negate else term
        if not body.startswith("@"):
            out.append(term)
            continue
        file_name = body[1:].strip()
        if not file_name:
            raise UsageError("--limit @: expected a file name after '@'")
        key = os.path.abspath(file_name)
        if key in seen_files:
            continue
        seen_files.add(key)
        for inner in _expand_terms(read_retry_file(Path(file_name)), seen_files):
            if negate:
                out.append(inner[1:] if inner.startswith("!") else "!" + inner)
            else:
                out.append(inner)
    return out


def _match(inv: Inventory, pattern: str) -> set[str]:
    """Host names selected by one term (without its '!' or '&')."""
    if pattern == "all" and "all" not in inv.hosts:
        return set(inv.hosts)
    if pattern in inv.hosts:
        return {pattern}
    if pattern in inv.groups:
        return set(inv.groups[pattern])
    if not _GLOB_CHARS & set(pattern):
        return set()
    names = {h for h in inv.hosts if fnmatch.fnmatchcase(h, pattern)}
    for group, members in inv.groups.items():
        if fnmatch.fnmatchcase(group, pattern):
            names.update(members)
    # A glob matching only empty groups still "matched nothing" for the user.
    return names


def _unknown_message(inv: Inventory, unknown: list[str]) -> str:
    valid = list(inv.hosts) + list(inv.groups)
    parts = []
    for term in unknown:
        hint = suggestion(term.lstrip("!&").strip(), valid)   # '; did you mean "x"?' or ''
        parts.append(f'"{term}"' + (f" ({hint[2:]})" if hint else ""))
    lines = [f"--limit: no host or group matches {', '.join(parts)}",
             f"  hosts: {', '.join(inv.hosts) or '(none)'}"]
    if inv.groups:
        lines.append(f"  groups: {', '.join(inv.groups)}")
    return "\n".join(lines)
