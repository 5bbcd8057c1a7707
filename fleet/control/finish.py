"""The end of every command that reached hosts: notice, history, output, retry list, exit status.

`scan`, `run` and `restore` return a RunResult and change nothing on the control host; `finish`
does what follows, the same way for each (and for a scheduled run):

1. sends the notice when asked (`Report.notify_with`), recording whether it arrived;
2. records the result in the history (a failure there is a warning: the run happened);
3. prints the contract's JSON document on stdout, or the before/after tables;
4. writes the retry list of hosts that failed (`--limit @FILE`);
5. says on stderr what the exit status is about (a `--fail-on` match, refused restores, Ctrl-C);
6. returns the exit status: 130 interrupted, 1 a host or file failed (or `--fail-on` matched),
   else 0.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from fleet.config.selection import write_retry_file
from fleet.errors import ExitStatus, UsageError
from fleet.home import control_dir
from fleet.report.history import record_run
from fleet.report.render import render_run
from fleet.report.results import RunResult

FAIL_ON = {"critical": ("critical",), "warning": ("warning", "critical")}


@dataclass(frozen=True)
class Report:
    """How a finished command reports. Built before any host is contacted, so a bad `--fail-on`
    or a broken fleet.toml stops the command (exit 2) before it starts."""

    json_out: bool = False
    notify_with: Optional[Path] = None     # the inventory whose fleet.toml names the notifiers
    fail_on: Optional[str] = None          # scan: "critical" | "warning"

    def __post_init__(self) -> None:
        if self.fail_on is not None and self.fail_on not in FAIL_ON:
            raise UsageError(f"--fail-on must be critical or warning, got {self.fail_on!r}")
        if self.notify_with is not None:
            from fleet.report.notify import check_notify_config

            check_notify_config(Path(self.notify_with))


def warn(message: str) -> None:
    print(f"fleet: warning: {message}", file=sys.stderr)


def finish(result: RunResult, report: Report = Report()) -> int:
    """Notify, record, print, write the retry list; return the exit status (see the module docstring)."""
    if report.notify_with is not None:
        from fleet.report.notify import send_run_notice

        problems = send_run_notice(result, Path(report.notify_with))   # never raises: problems are data
        for problem in problems:
            warn(problem)
        # Recorded with the run (history and --json): a notice that did not arrive is visible later.
        result = replace(result, extra={**result.extra, "notify": {"sent": not problems, "problems": problems}})
    try:
        record_run(result)
    except Exception as exc:  # noqa: BLE001 - the run happened; losing its record is a warning
        warn(f"could not record {result.kind} {result.run_id} in the history: {exc}")
    print(json.dumps(result.to_json()) if report.json_out else render_run(result, "table"))
    _write_retry_list(result)
    matched = _fail_on_matches(result, report.fail_on)
    _say_refused(result)
    if any(h.interrupted for h in result.hosts):
        print("fleet: interrupted; hosts still running were stopped and are reported as interrupted",
              file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    return int(ExitStatus.FAILED if not result.ok or matched else ExitStatus.OK)


def _write_retry_list(result: RunResult) -> None:
    if result.kind == "restore":
        return
    names = [h.host for h in result.hosts if not h.ok or h.file_errors]
    if not names:
        return
    path = control_dir() / "retry" / f"{result.run_id}.txt"
    try:
        write_retry_file(path, names, comment=f"hosts that failed in run {result.run_id}")
    except OSError as exc:
        warn(f"could not write the retry list {path}: {exc}")
        return
    print(f"fleet: {len(names)} host(s) failed; retry with --limit @{path}", file=sys.stderr)


def _fail_on_matches(result: RunResult, fail_on: Optional[str]) -> bool:
    if not fail_on:
        return False
    found = [(h.host, f) for h in result.hosts for f in h.health if f.severity in FAIL_ON[fail_on]]
    if found:
        print(f"fleet: --fail-on {fail_on}: {len(found)} finding(s), e.g. {found[0][0]}: "
              f"{found[0][1].check}: {found[0][1].detail}", file=sys.stderr)
    return bool(found)


def _say_refused(result: RunResult) -> None:
    if result.kind != "restore":
        return
    refused = [f for h in result.hosts for f in h.files if f.error and "--force" in f.error]
    if refused:
        print(f"fleet: {len(refused)} file(s) changed since run {result.extra.get('restored_run')} were not "
              "restored; --force overwrites them (after backing them up)", file=sys.stderr)
