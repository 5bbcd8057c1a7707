"""The cron backend of `fleet schedule`: one marked line per schedule in a user's crontab.

fleet edits only its own lines: a line is fleet's when it is not a comment and ends with the
marker `# fleet:NAME` (to the shell that runs it, a trailing comment). Every other byte of the
crontab — comments, environment lines, other jobs, blank lines — is written back unchanged.

The pure part (`entry_line`, `with_entry`, `without_entry`, `fleet_entries`) works on text and is
tested without a crontab; `Crontab` reads and writes one user's crontab with `crontab -l` and
`crontab -` (the invoking user's; `user=` makes root manage another user's, as `crontab -u` does).
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from fleet.errors import FleetError, UsageError

MARKER = "# fleet:"
_MARKED = re.compile(r"\s#\s?fleet:([a-z0-9][a-z0-9._-]*)\s*$")


def marker(name: str) -> str:
    return f"{MARKER}{name}"


def _check_cron_safe(arg: str, what: str) -> None:
    # cron turns an unescaped % into a newline before the shell sees the command.
    if "%" in arg or "\n" in arg or "\r" in arg:
        raise UsageError(f"{what} {arg!r} contains % or a line break, which a crontab line cannot carry; "
                         "use a path without them or the systemd backend")


def entry_command(argv: list[str], env: dict[str, str], log: Path) -> str:
    """The shell command of a crontab entry: env assignments, argv, output appended to `log`."""
    for key, value in env.items():
        _check_cron_safe(value, key)
    for arg in argv:
        _check_cron_safe(arg, "argument")
    _check_cron_safe(str(log), "log path")
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = " ".join(shlex.quote(a) for a in argv)
    return f"{assignments} {command} >>{shlex.quote(str(log))} 2>&1".strip()


def entry_line(name: str, cron: str, command: str) -> str:
    """One crontab line (no newline): schedule, command, marker."""
    return f"{cron} {command} {marker(name)}"


def marked_name(line: str) -> str | None:
    """The schedule name of a fleet line, None for any other line (comments included)."""
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    m = _MARKED.search(line.rstrip("\r"))
    return m.group(1) if m else None


def fleet_entries(text: str) -> dict[str, str]:
    """{name: line} of fleet's lines in a crontab's text."""
    return {name: line for line in text.split("\n") if (name := marked_name(line))}


def with_entry(text: str, name: str, line: str) -> str:
    """`text` with fleet's line for `name` set to `line`: replaced in place, or appended."""
    lines = text.split("\n")
    out, placed = [], False
    for existing in lines:
        if marked_name(existing) == name:
            if not placed:
                out.append(line)
                placed = True
            continue
        out.append(existing)
    result = "\n".join(out)
    if not placed:
        if result and not result.endswith("\n"):
            result += "\n"
        result += line + "\n"
    return result


def without_entry(text: str, name: str) -> tuple[str, int]:
    """`text` without fleet's line(s) for `name`, and how many were removed."""
    lines = text.split("\n")
    kept = [line for line in lines if marked_name(line) != name]
    return "\n".join(kept), len(lines) - len(kept)


def command_of(line: str) -> str:
    """The command part of a five-field or @shorthand crontab line (what cron hands to sh)."""
    parts = line.strip().split(None, 1 if line.strip().startswith("@") else 5)
    return parts[-1]


class Crontab:
    """One user's crontab through the `crontab` program; user=None is the invoking user."""

    def __init__(self, user: str | None = None):
        self.user = user
        self.program = shutil.which("crontab")

    def _argv(self, *args: str) -> list[str]:
        if not self.program:
            raise FleetError("the cron backend needs the `crontab` program (Debian: apt install cron), "
                             "or use --backend systemd")
        return [self.program, *(["-u", self.user] if self.user else []), *args]

    def _who(self) -> str:
        return f"the crontab of {self.user}" if self.user else "your crontab"

    def read(self) -> str:
        """The crontab's text ("" when the user has none)."""
        proc = subprocess.run(self._argv("-l"), capture_output=True, timeout=60)
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            if "no crontab for" in stderr:
                return ""
            raise FleetError(f"cannot read {self._who()}: {stderr or f'crontab -l exited {proc.returncode}'}")
        return proc.stdout.decode("utf-8", "surrogateescape")

    def write(self, text: str) -> None:
        """Install `text` as the whole crontab (an empty text removes the crontab)."""
        if not text.strip():
            proc = subprocess.run(self._argv("-r"), capture_output=True, timeout=60)
            stderr = proc.stderr.decode("utf-8", "replace").strip()
            if proc.returncode != 0 and "no crontab for" not in stderr:
                raise FleetError(f"cannot remove {self._who()}: {stderr}")
            return
        if not text.endswith("\n"):
            text += "\n"
        proc = subprocess.run(self._argv("-"), input=text.encode("utf-8", "surrogateescape"),
                              capture_output=True, timeout=60)
        if proc.returncode != 0:
            stderr = proc.stderr.decode("utf-8", "replace").strip()
            raise FleetError(f"cannot write {self._who()}: {stderr or f'crontab - exited {proc.returncode}'}")

    def install(self, name: str, line: str) -> bool:
        """Set fleet's line for `name`; True when it replaced an earlier one."""
        text = self.read()
        replaced = name in fleet_entries(text)
        self.write(with_entry(text, name, line))
        return replaced

    def remove(self, name: str) -> int:
        """Remove fleet's line(s) for `name`; how many there were (0: nothing written)."""
        text = self.read()
        new_text, removed = without_entry(text, name)
        if removed:
            self.write(new_text)
        return removed
