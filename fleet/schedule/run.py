"""`fleet schedule run NAME`: what the cron line or timer calls, one run at a time.

Reads the stored definition (fleet.schedule.schedules), loads `<state>/schedule.env`, takes the
schedule's lock, and runs the playbook (or scan) in this process through the controller. While a
run of the schedule holds `<state>/locks/NAME.lock`, another exits at once with status 3
(`ExitStatus.OVERLAP`), says which run holds it, and is recorded in history as "skipped".
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from fleet.errors import ExitStatus, FleetError
from fleet.home import control_dir, private_dir
from fleet.schedule.schedules import ENV_FILE, Schedule, write_json, load_schedule

LOG_ROTATE_BYTES = 5 * 1024 * 1024


def load_env_file(path: Path) -> list[str]:
    """Set variables from a KEY=VALUE file that are not already set; returns problems.

    The file holds secrets, so it is read only when it belongs to this user and nobody else
    can read it (mode 0600 or stricter).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return []
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        return [f"{path}: not read: it must belong to you and be private (chmod 600 {path})"]
    problems = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            problems.append(f"{path}:{number}: expected KEY=VALUE")
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        os.environ.setdefault(key, value)
    return problems


class ScheduleLock:
    """An exclusive, non-blocking flock on `<state>/locks/NAME.lock`, released on close.

    The file stays (deleting a lock file races with the next taker); it holds the holder's pid
    and start time, for the message the overlapping run prints.
    """

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "started_at": _now()}).encode())
        self.fd = fd
        return True

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def rotate_log(log: Path, max_bytes: int = LOG_ROTATE_BYTES) -> bool:
    """Keep a schedule's log small: past `max_bytes`, its content moves to NAME.log.1.

    cron's `>>` and systemd's `append:` hold the log open with O_APPEND, so the file is copied and
    truncated in place rather than renamed: the writer's next line lands in the fresh file.
    """
    try:
        if log.stat().st_size <= max_bytes:
            return False
        old = log.with_name(log.name + ".1")
        tmp = old.with_name(f".{old.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(log, "rb") as src, os.fdopen(fd, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, old)
        os.truncate(log, 0)
        return True
    except OSError:
        return False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _record_skipped(schedule: Schedule, reason: str) -> list[str]:
    """Record the skipped run in history and send its notice; returns problems (never raises)."""
    from fleet.report.history import fleet_key, record_run
    from fleet.report.results import RunResult

    now = _now()
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-skip-" + uuid.uuid4().hex[:6]
    result = RunResult(run_id=run_id, kind="skipped", playbook=Path(schedule.playbook).stem if schedule.playbook else "scan", dry_run=False,
                       started_at=now, finished_at=now, hosts=(),
                       extra={"schedule": schedule.name, "reason": reason})
    problems = []
    try:
        record_run(result, meta={"argv": schedule.command, "fleet": fleet_key(schedule.inventory)})
    except Exception as exc:  # noqa: BLE001 - the overlap message matters more than the record
        problems.append(f"could not record the skipped run in history: {exc}")
    if schedule.notify:
        from fleet.report.notify import send_run_notice

        problems += send_run_notice(result, Path(schedule.inventory))
    return problems


def run_schedule(name: str) -> int:
    """What the timer calls: run the schedule's playbook (or scan) unless it is already running.

    Returns the run's exit status, or 3 (OVERLAP) at once when another run of this schedule
    holds its lock; that skipped run is recorded in history.
    """
    schedule = load_schedule(name)
    state = control_dir()
    for problem in load_env_file(state / ENV_FILE):
        print(f"fleet schedule {name}: {problem}", file=sys.stderr)
    lock = ScheduleLock(state / "locks" / f"{name}.lock")
    if not lock.acquire():
        holder = lock.holder()
        reason = (f"the previous run (pid {holder.get('pid', '?')}, started {holder.get('started_at', '?')}) "
                  "is still going")
        print(f"fleet schedule {name}: skipped at {_now()}: {reason}; nothing was run", file=sys.stderr)
        # NAME.last.json stays the running run's: the skip is in the history.
        for problem in _record_skipped(schedule, reason):
            print(f"fleet schedule {name}: {problem}", file=sys.stderr)
        return int(ExitStatus.OVERLAP)
    status_path = state / "schedules" / f"{name}.last.json"
    rotate_log(Path(schedule.log))
    started = _now()
    exit_code: int | None = None
    try:
        write_json(status_path, {"started_at": started, "finished_at": None, "exit_code": None,
                                  "pid": os.getpid(), "skipped": False})
        print(f"fleet schedule {name}: started at {started}: {schedule.what} -i {schedule.inventory}"
              f"{f' --limit {schedule.limit}' if schedule.limit else ''}", flush=True)
        with _sigterm_as_interrupt():
            exit_code = _run(schedule)
        return exit_code
    except FleetError as exc:
        exit_code = int(exc.exit_status)
        raise
    except KeyboardInterrupt:
        exit_code = int(ExitStatus.INTERRUPTED)
        raise
    finally:
        finished = _now()
        write_json(status_path, {"started_at": started, "finished_at": finished,
                                  "exit_code": exit_code if exit_code is not None else int(ExitStatus.FAILED),
                                  "skipped": False})
        print(f"fleet schedule {name}: finished at {finished} with exit "
              f"{exit_code if exit_code is not None else 'error'}", flush=True)
        lock.release()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`systemctl stop` and cron's shutdown send SIGTERM: stop the run the way Ctrl-C does, so the
    controller stops its hosts and this run still logs how it ended and releases its lock."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:          # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(schedule: Schedule) -> int:
    """The schedule's scan or run, finished like one typed by hand (notice included when asked)."""
    from fleet.control.controller import run, scan
    from fleet.control.finish import Report, finish

    inventory = Path(schedule.inventory)
    report = Report(notify_with=inventory if schedule.notify else None)
    if schedule.action == "scan":
        return finish(scan(inventory, schedule.limit), report)
    return finish(run(schedule.playbook, inventory, schedule.limit), report)
