"""`fleet scan` and `fleet run`: validate everything, reach every host in parallel, report.

Order of work (the same for both): load and validate the inventory (and the playbook) — any
problem is a ConfigError, exit 2, nothing contacted — select hosts, run one plan per host through
`fleet.control.runner.run_plans` with live progress on stderr, build one `RunResult`, record it in the
history, then print either the contract's JSON document (stdout, nothing else there) or the
consolidated before/after table with failed hosts last.

Exit status: 0 all hosts and files ok; 1 a host or file failed, or `scan --fail-on` matched;
130 interrupted (running hosts are reported as interrupted; the agent's atomic writes leave no
half-written file). A run with failed hosts writes a retry list for `--limit @FILE`.
"""
from __future__ import annotations

import json
import sys
import threading
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from fleet.errors import ExitStatus, UsageError
from fleet.report.history import record_run, state_dir
from fleet.config.inventory import load_inventory
from fleet.control.plan import build_plan, new_run_id, now_ms
from fleet.report.render import printable, render_run
from fleet.report.results import HostResult, RunResult
from fleet.control.runner import run_plans
from fleet.config.selection import select_hosts, write_retry_file
from fleet.control.journal import absorb, with_journals

FAIL_ON = {"critical": ("critical",), "warning": ("warning", "critical")}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _warn(message: str) -> None:
    print(f"fleet: warning: {message}", file=sys.stderr)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class LiveProgress:
    """One line per host on stderr: live (rich) on a terminal, final states only otherwise."""

    SHOWN_STATES = ("ok", "failed", "interrupted", "retrying", "skipped")

    def __init__(self, host_names: list[str]):
        self.lines: dict[str, tuple[str, str]] = {name: ("waiting", "") for name in host_names}
        self.lock = threading.Lock()
        self.live = None
        self.console = None
        if _stderr_is_terminal():
            # rich only for a person watching: its import is ~25 ms of every scheduled or piped run.
            from rich.console import Console
            from rich.live import Live

            self.console = Console(stderr=True, highlight=False)
            if self.console.is_terminal:
                self.live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False)

    def __enter__(self) -> "LiveProgress":
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.live.update(self._render())
            self.live.__exit__(*exc)

    def __call__(self, host: str, state: str, detail: str) -> None:
        with self.lock:
            self.lines[host] = (state, detail)
            if self.live:
                self.live.update(self._render())
            elif state in self.SHOWN_STATES:
                line = self._line(host, state, detail)
                if self.console is not None:
                    self.console.print(line, markup=False, soft_wrap=True)
                else:
                    print(line, file=sys.stderr, flush=True)

    @staticmethod
    def _line(host: str, state: str, detail: str) -> str:
        detail = printable(detail)      # a host's error may quote a file name holding an ESC
        if state == "ok":
            return f"{host}: ok {detail}"
        if state == "failed":
            return f"{host}: FAILED: {detail}"
        return f"{host}: {state}" + (f" {detail}" if detail else "")

    def _render(self):
        from rich.text import Text

        styles = {"ok": "green", "failed": "bold red", "interrupted": "yellow", "retrying": "yellow"}
        items = list(self.lines.items())
        if len(items) > 40:   # a long fleet: show what is moving or broken, count the rest
            done = sum(1 for _, (s, _) in items if s == "ok")
            items = [(h, v) for h, v in items if v[0] not in ("ok", "waiting")] + \
                [(f"{done} hosts", ("ok", "")), (f"{sum(1 for _, (s, _) in self.lines.items() if s == 'waiting')} hosts", ("waiting", ""))]
        text = Text()
        for number, (host, (state, detail)) in enumerate(items):
            text.append(("\n" if number else "") + self._line(host, state, detail), style=styles.get(state, ""))
        return text


def _run_hosts(hosts: list, plan_for, forks: Optional[int], accept_new: bool) -> list[HostResult]:
    progress = LiveProgress([h.name for h in hosts])
    with progress:
        return run_plans(hosts, plan_for, forks=forks, accept_new_host_keys=accept_new, progress=progress)


def _record(result: RunResult) -> None:
    try:
        record_run(result)
    except Exception as exc:  # noqa: BLE001 - the run happened; losing its record is a warning
        _warn(f"could not record run {result.run_id} in the history: {exc}")


def _retry_list(result: RunResult) -> None:
    names = [h.host for h in result.hosts if not h.ok or h.file_errors]
    if not names:
        return
    path = state_dir() / "retry" / f"{result.run_id}.txt"
    try:
        write_retry_file(path, names, comment=f"hosts that failed in run {result.run_id}")
    except OSError as exc:
        _warn(f"could not write the retry list {path}: {exc}")
        return
    print(f"fleet: {len(names)} host(s) failed; retry with --limit @{path}", file=sys.stderr)


def _print_result(result: RunResult, json_out: bool) -> None:
    print(json.dumps(result.to_json()) if json_out else render_run(result, "table"))


def _exit_status(result: RunResult, extra_failure: bool = False) -> int:
    if any(h.interrupted for h in result.hosts):
        return int(ExitStatus.INTERRUPTED)
    failed = any((not h.ok and not h.skipped) or h.file_errors for h in result.hosts)
    if failed or extra_failure:
        return int(ExitStatus.FAILED)
    if any(h.skipped for h in result.hosts):
        return int(ExitStatus.OVERLAP)      # 3: skipped because another run holds the host
    return int(ExitStatus.OK)


def _execute(kind: str, inventory: Path, limit: Optional[str], forks: Optional[int], dry_run: bool,
             accept_new_host_keys: bool, playbook: Any = None) -> RunResult:
    """Everything between a validated config and a RunResult (shared by scan and run)."""
    inv = load_inventory(Path(inventory))
    hosts = select_hosts(inv, limit)
    for warning in inv.warnings:
        _warn(warning)
    if forks is not None and forks < 1:
        raise UsageError(f"--forks must be at least 1, got {forks}")
    started = datetime.now(timezone.utc)
    run_id = new_run_id(started)
    clock = now_ms()

    def plan_for(host: Any) -> dict:
        plan = build_plan(host, kind, run_id, clock, dry_run=dry_run, playbook=playbook)
        return with_journals(plan, host, playbook.name if playbook is not None else None)

    results = _run_hosts(hosts, plan_for, forks, accept_new_host_keys)
    absorb(results)     # runs the hosts' journals know and this history does not (yet)
    return RunResult(run_id=run_id, kind=kind, playbook=playbook.name if playbook is not None else None,
                     dry_run=dry_run, started_at=_iso(started), finished_at=_iso(datetime.now(timezone.utc)),
                     hosts=tuple(results))


def _finish(result: RunResult, json_out: bool, extra_failure: bool = False) -> int:
    _record(result)
    _print_result(result, json_out)
    _retry_list(result)
    status = _exit_status(result, extra_failure)
    for h in result.hosts:
        if h.skipped:
            print(f"fleet: {h.host}: skipped, nothing was run there: {h.error}", file=sys.stderr)
    if status == ExitStatus.INTERRUPTED:
        print("fleet: interrupted; hosts still running were stopped and are reported as interrupted",
              file=sys.stderr)
    return status


def scan_command(inventory: Path, limit: Optional[str], forks: Optional[int], json_out: bool,
                 fail_on: Optional[str], accept_new_host_keys: bool) -> int:
    """`fleet scan`: read-only sizes, records and health on every selected host; the exit status."""
    if fail_on is not None and fail_on not in FAIL_ON:
        raise UsageError(f"--fail-on must be critical or warning, got {fail_on!r}")
    result = _execute("scan", inventory, limit, forks, False, accept_new_host_keys)
    matched = False
    if fail_on:
        severities = FAIL_ON[fail_on]
        found = [(h.host, f) for h in result.hosts for f in h.health if f.severity in severities]
        matched = bool(found)
        if found:
            print(f"fleet: --fail-on {fail_on}: {len(found)} finding(s), e.g. {found[0][0]}: "
                  f"{found[0][1].check}: {found[0][1].detail}", file=sys.stderr)
    return _finish(result, json_out, extra_failure=matched)


def run_command(playbook: str, inventory: Path, limit: Optional[str], forks: Optional[int], dry_run: bool,
                json_out: bool, notify: bool, accept_new_host_keys: bool) -> int:
    """`fleet run PLAYBOOK`: back up, then trim/prune on every selected host; the exit status."""
    from fleet.config.playbook import load_playbook

    book = load_playbook(playbook)        # validated before the inventory's hosts are contacted
    for warning in getattr(book, "warnings", ()):
        _warn(warning)
    if notify:
        from fleet.report.notify import check_notify_config

        check_notify_config(Path(inventory))   # a broken fleet.toml stops here (exit 2), before any host
    result = _execute("run", inventory, limit, forks, dry_run, accept_new_host_keys, playbook=book)
    if notify:
        from fleet.report.notify import send_run_notice

        problems = send_run_notice(result, Path(inventory))   # never raises: problems are data
        for problem in problems:
            _warn(problem)
        # Recorded with the run (history and --json): a notice that did not arrive is visible later.
        result = replace(result, extra={**result.extra, "notify": {"sent": not problems, "problems": problems}})
    return _finish(result, json_out)
