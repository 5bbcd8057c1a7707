"""The systemd backend of `fleet schedule`: `fleet-NAME.service` + `fleet-NAME.timer`.

The unit texts are built by pure functions (`service_text`, `timer_text`), checked in tests
with `systemd-analyze verify`. Units go to the user's unit folder (`~/.config/systemd/user`)
unless `--unit-dir` says otherwise; a system folder such as /etc/systemd/system makes them
system units (`systemctl` without `--user`). fleet calls `systemctl daemon-reload` and
`enable --now` only where systemd is PID 1; elsewhere it prints the commands to run.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from fleet.errors import FleetError, UsageError

SYSTEM_UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system",
                    "/lib/systemd/system", "/usr/local/lib/systemd/system")
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def default_unit_dir() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def systemd_is_running() -> bool:
    """True when systemd is PID 1 here (the only case where systemctl can act)."""
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd"
    except OSError:
        return False


def is_system_dir(unit_dir: Path) -> bool:
    resolved = str(Path(unit_dir).resolve())
    return any(resolved == d or resolved.startswith(d + "/") for d in SYSTEM_UNIT_DIRS)


def unit_names(name: str) -> tuple[str, str]:
    return f"fleet-{name}.service", f"fleet-{name}.timer"


def _escape_specifiers(text: str) -> str:
    # systemd expands %x specifiers in most settings and $VAR in ExecStart=.
    return text.replace("%", "%%")


def exec_quote(arg: str) -> str:
    """One ExecStart= argument, quoted the way systemd.service(5) reads it."""
    if any(c in arg for c in "\n\r\0"):
        raise UsageError(f"argument {arg!r} contains a line break, which a unit file cannot carry")
    arg = _escape_specifiers(arg).replace("$", "$$")
    if _SAFE_WORD.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def env_assignment(key: str, value: str) -> str:
    """One Environment= value; systemd expands specifiers there, but not $VAR."""
    text = f"{key}={value}"
    if any(c in text for c in "\n\r\0"):
        raise UsageError(f"{key} {value!r} contains a line break, which a unit file cannot carry")
    return '"' + _escape_specifiers(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _plain_path(path: Path, what: str) -> str:
    text = str(path)
    if any(c.isspace() for c in text) or any(c in text for c in "\"'\\"):
        raise UsageError(f"{what} {text!r} contains spaces or quotes, which systemd's "
                         "StandardOutput=append: cannot carry; set FLEET_STATE_DIR to a plain path")
    return _escape_specifiers(text)


def service_text(name: str, description: str, argv: list[str], env: dict[str, str], log: Path) -> str:
    """The .service unit: one oneshot `fleet schedule run NAME`, output appended to `log`."""
    env_lines = "".join(f"Environment={env_assignment(k, v)}\n" for k, v in env.items())
    log_text = _plain_path(log, "log path")
    return (
        "# Written by `fleet schedule install`; `fleet schedule remove " + name + "` deletes it.\n"
        "[Unit]\n"
        f"Description={_escape_specifiers(description)}\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"{env_lines}"
        f"ExecStart={' '.join(exec_quote(a) for a in argv)}\n"
        f"StandardOutput=append:{log_text}\n"
        f"StandardError=append:{log_text}\n"
        "# 3 = the previous run of this schedule is still going: skipped, not failed.\n"
        "SuccessExitStatus=3\n"
    )


def timer_text(name: str, on_calendar: list[str]) -> str:
    """The .timer unit: the OnCalendar= values, Persistent=true (catch up a missed run)."""
    calendar_lines = "".join(f"OnCalendar={value}\n" for value in on_calendar)
    return (
        "# Written by `fleet schedule install`; `fleet schedule remove " + name + "` deletes it.\n"
        "[Unit]\n"
        f"Description=fleet schedule {name}\n"
        "\n"
        "[Timer]\n"
        f"{calendar_lines}"
        "Persistent=true\n"
        f"Unit=fleet-{name}.service\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def systemctl_argv(unit_dir: Path, *args: str) -> list[str]:
    return ["systemctl", *([] if is_system_dir(unit_dir) else ["--user"]), *args]


def _activation_applies(unit_dir: Path) -> bool:
    """systemctl finds units only in its own search path: the default user dir or a system dir."""
    return is_system_dir(unit_dir) or Path(unit_dir).resolve() == default_unit_dir().resolve()


def _run_systemctl(argv: list[str]) -> str | None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        return f"`{' '.join(argv)}` failed: {proc.stderr.strip() or f'exit {proc.returncode}'}"
    return None


def install_units(unit_dir: Path, name: str, service: str, timer: str) -> list[str]:
    """Write both units; enable the timer where possible. Returns lines to tell the user."""
    unit_dir = Path(unit_dir)
    unit_dir.mkdir(parents=True, exist_ok=True)
    service_name, timer_name = unit_names(name)
    _write_atomic(unit_dir / service_name, service)
    _write_atomic(unit_dir / timer_name, timer)
    notes = [f"wrote {unit_dir / service_name} and {unit_dir / timer_name}"]
    reload_argv = systemctl_argv(unit_dir, "daemon-reload")
    enable_argv = systemctl_argv(unit_dir, "enable", "--now", timer_name)
    if systemd_is_running() and _activation_applies(unit_dir) and shutil.which("systemctl"):
        for argv in (reload_argv, enable_argv):
            problem = _run_systemctl(argv)
            if problem:
                raise FleetError(f"{problem}; the unit files are in place, run it yourself once fixed")
        notes.append(f"enabled {timer_name}")
    else:
        why = ("systemd is not running as PID 1 here" if not systemd_is_running()
               else f"{unit_dir} is not in systemd's unit search path")
        notes.append(f"{why}: where it is, run `{' '.join(reload_argv)} && {' '.join(enable_argv)}`")
    return notes


def remove_units(unit_dir: Path, name: str) -> list[str]:
    """Stop and delete both units (only fleet's own files). Returns what was done."""
    unit_dir = Path(unit_dir)
    service_name, timer_name = unit_names(name)
    present = [unit_dir / n for n in (timer_name, service_name) if (unit_dir / n).exists()]
    notes = []
    active = systemd_is_running() and _activation_applies(unit_dir) and shutil.which("systemctl")
    if present and active:
        problem = _run_systemctl(systemctl_argv(unit_dir, "disable", "--now", timer_name))
        if problem:
            notes.append(problem)
    for path in present:
        path.unlink()
        notes.append(f"deleted {path}")
    if present and active:
        problem = _run_systemctl(systemctl_argv(unit_dir, "daemon-reload"))
        if problem:
            notes.append(problem)
    return notes
