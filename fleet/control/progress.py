"""Live progress on stderr while hosts work: one line per host, and the one place plans are run.

`run_hosts(hosts, plan_for, forks, accept_new)` runs one plan per host through
`fleet.control.runner.run_plans` with a LiveProgress attached, for scan, run and restore alike.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Optional

from fleet.config.inventory import Host
from fleet.control.runner import run_plans
from fleet.report.tables import printable
from fleet.report.results import HostResult


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class LiveProgress:
    """One line per host on stderr: live (rich) on a terminal, final states only otherwise."""

    SHOWN_STATES = ("ok", "failed", "interrupted", "retrying")

    def __init__(self, host_names: list[str]):
        from fleet.logs import quiet, verbosity

        self.lines: dict[str, tuple[str, str]] = {name: ("waiting", "") for name in host_names}
        self.lock = threading.Lock()
        self.live = None
        self.console = None
        # -q: the result and errors only; -v: the log already says each step, with the host's name.
        self.silent = quiet() or verbosity() > 0
        if _stderr_is_terminal() and not self.silent:
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
            elif state in self.SHOWN_STATES and not self.silent:
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


def run_hosts(hosts: list[Host], plan_for: Callable[[Host], dict], forks: Optional[int] = None,
              accept_new: bool = False) -> list[HostResult]:
    """One plan per host, in parallel, with live progress; a HostResult per host, in order."""
    progress = LiveProgress([h.name for h in hosts])
    with progress:
        return run_plans(hosts, plan_for, forks=forks, accept_new_host_keys=accept_new, progress=progress)


