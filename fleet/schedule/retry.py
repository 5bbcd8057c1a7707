"""A scheduled run catches up hosts it could not reach: retries with back-off within `retry_for`.

A laptop asleep or a host rebooting at 03:00 should not wait a week for its cleanup. With
`fleet schedule install … --retry-for 6h` (stored as the schedule's `retry_for_s`), after the run
the hosts it could not work on — unreachable, failed before the agent reported anything, or busy
with another run — are run again, only those (`--limit`), after a pause that starts at
`min(60 s, retry_for / 8)` and doubles up to 30 minutes, as long as the next attempt still starts
within the window. Each attempt is a run of its own in the history. The log (and the exit status)
says which hosts were caught up late and which are still missing.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional

from fleet.errors import ExitStatus
from fleet.report.results import HostResult, RunResult

MAX_PAUSE_S = 30 * 60


def first_pause(retry_for_s: int) -> float:
    return max(1.0, min(60.0, retry_for_s / 8.0))


def unreached(host: HostResult) -> bool:
    """The run could not work on this host at all (no agent report), or another run held it."""
    return bool(host.skipped) or (not host.ok and not host.files and not host.interrupted)


def catch_up(name: str, first_code: int, first: Optional[RunResult], retry_for_s: int,
             run_limited: Callable[[str], tuple[int, RunResult]], sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic) -> int:
    """Retry the hosts `first` could not reach; returns the schedule's exit status.

    `run_limited(limit)` runs the schedule's playbook on those hosts and returns its exit status
    and its RunResult (it records the run). 0 when every host was worked on in the end and nothing else failed.
    """
    if first is None:
        return first_code
    missing = [h.host for h in first.hosts if unreached(h)]
    other_failures = any((not h.ok and not unreached(h)) or h.file_errors for h in first.hosts)
    if not missing:
        return first_code
    deadline = clock() + retry_for_s
    pause, attempt, caught, worst = first_pause(retry_for_s), 0, [], 0
    while missing and clock() + pause <= deadline:
        attempt += 1
        print(f"fleet schedule {name}: {len(missing)} host(s) not reached ({', '.join(missing)}); "
              f"retry {attempt} in {pause:.0f}s", file=sys.stderr, flush=True)
        sleep(pause)
        code, again = run_limited(",".join(missing))
        still = [h.host for h in again.hosts if unreached(h)]
        caught += [h for h in missing if h not in still]
        if any((not h.ok and not unreached(h)) or h.file_errors for h in again.hosts):
            worst = max(worst, code)
        missing = still
        pause = min(pause * 2, MAX_PAUSE_S)
    if caught:
        print(f"fleet schedule {name}: caught up late: {', '.join(caught)}", file=sys.stderr, flush=True)
    if missing:
        print(f"fleet schedule {name}: still missing after {retry_for_s}s of retries: {', '.join(missing)}",
              file=sys.stderr, flush=True)
        return int(ExitStatus.FAILED)
    if other_failures or worst:
        return int(ExitStatus.FAILED)
    return int(ExitStatus.OK)


def run_with_retries(schedule, run_limited: Callable[[Optional[str]], tuple[int, RunResult]]) -> int:
    """The schedule's run, then its catch-up when it has a `retry_for_s` (see the module docstring)."""
    retry_for_s = int((schedule.extra or {}).get("retry_for_s") or 0)
    code, first = run_limited(schedule.limit)
    if not retry_for_s or schedule.action != "run":
        return code
    return catch_up(schedule.name, code, first, retry_for_s, run_limited)
