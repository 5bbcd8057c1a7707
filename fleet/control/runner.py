"""Run one plan per host on many hosts at once: the only place fleet is concurrent.

`run_plans` works through a bounded thread pool. Hosts are independent: a host that fails is a
failed HostResult and the others go on. A connection-level failure (no SSH banner, reset or EOF
during the key exchange: what sshd's MaxStartups does to a burst) is retried exactly once after
a short random pause; authentication failures, host-key refusals and anything after the agent
started are never retried. Ctrl-C sets a cancel token that closes every open channel; the hosts
still running come back as interrupted results.
"""
from __future__ import annotations

import logging
import random
import resource
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Optional, Sequence

from fleet.control.backupstream import after_controller_backups, controller_backups
from fleet.control.bundle import agent_bundle, agent_digest
from fleet.errors import ConnectionFailed
from fleet.report.results import HostResult, parse_agent_output
from fleet.control.transport import CancelToken, HostKeyRefused, exec_agent

DEFAULT_MAX_FORKS = 50
FDS_PER_HOST = 8            # socket, jump-host socket, subprocess pipes, paramiko's wake-up pipes
FDS_RESERVED = 64           # stdio, the history database, logs, Python itself
RETRY_PAUSE_S = (0.5, 1.5)
log = logging.getLogger("fleet.runner")     # -v / --log-file (fleet.logs)

# progress(host_name, state, detail): state is connecting | retrying | running | ok | failed | interrupted
Progress = Callable[[str, str, str], None]


def fd_limited_forks(requested: int) -> int:
    """`requested`, lowered to what the open-file limit allows (raising the soft limit if it may)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = requested * FDS_PER_HOST + FDS_RESERVED
    if soft != resource.RLIM_INFINITY and wanted > soft:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return requested
    return max(1, min(requested, (soft - FDS_RESERVED) // FDS_PER_HOST))


def default_forks(host_count: int, requested: Optional[int] = None) -> int:
    """--forks, else min(50, hosts); never more than the open-file limit allows."""
    forks = requested if requested else min(DEFAULT_MAX_FORKS, max(1, host_count))
    return fd_limited_forks(max(1, forks))


def _quiet(host: str, state: str, detail: str) -> None:
    pass


def run_one(host: Any, plan: dict, *, accept_new_host_keys: bool, cancel: threading.Event,
            progress: Progress = _quiet, bundle: Optional[bytes] = None, digest: Optional[str] = None) -> HostResult:
    """Run `plan` on one host (one retry for connection-level failures); never raises."""
    bundle = bundle if bundle is not None else agent_bundle()
    digest = digest or agent_digest()
    started = time.monotonic()
    for attempt in (1, 2):
        if cancel.is_set():
            return _interrupted(host, started, progress)
        progress(host.name, "connecting", "" if attempt == 1 else "second attempt")
        frames = controller_backups(host.name, plan)
        try:
            run = exec_agent(host, plan, bundle=bundle, digest=digest, accept_new_host_keys=accept_new_host_keys,
                             cancel=cancel, on_running=lambda: progress(host.name, "running", ""), frames=frames)
        except HostKeyRefused as exc:
            return _failed(host, str(exc), started, progress)
        except ConnectionFailed as exc:
            if cancel.is_set():
                return _interrupted(host, started, progress)
            if attempt == 1 and getattr(exc, "retryable", False):
                delay = random.uniform(*RETRY_PAUSE_S)
                progress(host.name, "retrying", f"in {delay:.1f}s: {exc}")
                cancel.wait(delay)
                continue
            return _failed(host, str(exc), started, progress)
        except Exception as exc:  # noqa: BLE001 - one host's surprise must not stop the others
            return _failed(host, f"{host.name}: unexpected {type(exc).__name__}: {exc} (a bug: please report "
                                 f"it with the traceback in the run's stderr tail)", started, progress,
                           traceback.format_exc())
        elapsed = time.monotonic() - started
        _log_agent(host.name, run, len(bundle), elapsed)
        if run.interrupted:
            return _interrupted(host, started, progress, run.stderr)
        if run.error:
            return _failed(host, run.error, started, progress, run.stderr)
        result = parse_agent_output(host.name, run.stdout, run.stderr, run.exit_code, elapsed)
        if frames is not None:
            result = after_controller_backups(host.name, plan, result)
        if result.ok:
            problems = len(result.file_errors)
            progress(host.name, "ok", f"{elapsed:.1f}s" + (f", {problems} file(s) not handled" if problems else ""))
        else:
            progress(host.name, "failed", result.error or "")
        return result
    raise AssertionError("unreachable: the loop returns on its second attempt")


def _log_agent(name: str, run: Any, bundle_bytes: int, elapsed: float) -> None:
    """-v: how the agent got there and how it ended; -vv: its own stderr lines."""
    if not log.isEnabledFor(logging.INFO):
        return
    how = {True: "agent cached on the host", False: f"agent uploaded ({bundle_bytes // 1024} KB)",
           None: "agent not started"}.get(run.cached, "agent")
    log.info("%s: %s; exit %s after %.1fs%s", name, how, run.exit_code, elapsed,
             f" ({run.error})" if run.error else "")
    for line in (run.stderr or "").splitlines()[-200:]:
        log.debug("%s: agent: %s", name, line)


def _failed(host: Any, error: str, started: float, progress: Progress, stderr: str = "") -> HostResult:
    progress(host.name, "failed", error)
    tail = "\n".join(stderr.strip().splitlines()[-15:])
    return HostResult.failed(host.name, error, time.monotonic() - started, tail)


def _interrupted(host: Any, started: float, progress: Progress, stderr: str = "") -> HostResult:
    progress(host.name, "interrupted", "")
    return HostResult.failed(host.name, "interrupted", time.monotonic() - started,
                             "\n".join(stderr.strip().splitlines()[-15:]), interrupted=True)


def _logged(progress: Progress) -> Progress:
    """`progress`, also written to the log (-v, --log-file) with the host's name."""
    def report(host: str, state: str, detail: str) -> None:
        if state != "connecting":            # the transport logs where and how it connects
            log.info("%s: %s%s", host, "agent running" if state == "running" else state, f" {detail}" if detail else "")
        progress(host, state, detail)
    return report


def run_plans(hosts: Sequence[Any], plan_for: Callable[[Any], dict], *, forks: Optional[int] = None,
              accept_new_host_keys: bool = False, progress: Optional[Progress] = None,
              cancel: Optional[CancelToken] = None) -> list[HostResult]:
    """Run `plan_for(host)` on every host, at most `forks` at once; results in the order of `hosts`.

    Never raises for a host's failure. On KeyboardInterrupt every running host is stopped and
    reported with `interrupted=True` (error "interrupted"), hosts not yet started too; the caller
    sees that in the results (exit 130) rather than as an exception.
    """
    hosts = list(hosts)
    if not hosts:
        return []
    progress = _logged(progress or _quiet)
    cancel = cancel or CancelToken()
    bundle, digest = agent_bundle(), agent_digest()
    results: dict[int, HostResult] = {}

    def work(index: int, host: Any) -> HostResult:
        try:
            plan = plan_for(host)
        except Exception as exc:  # noqa: BLE001 - a plan that cannot be built fails that host only
            progress(host.name, "failed", str(exc))
            return HostResult.failed(host.name, f"{host.name}: cannot build the plan: {exc}")
        return run_one(host, plan, accept_new_host_keys=accept_new_host_keys, cancel=cancel,
                       progress=progress, bundle=bundle, digest=digest)

    pool = ThreadPoolExecutor(max_workers=default_forks(len(hosts), forks), thread_name_prefix="fleet-host")
    futures: dict[Future, int] = {pool.submit(work, i, h): i for i, h in enumerate(hosts)}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                results[futures[future]] = future.result()
    except KeyboardInterrupt:
        cancel.set()
        for future in pending:
            future.cancel()
        # Workers see the token within one poll interval; their channels are already closed.
        for future in pending:
            if not future.cancelled():
                try:
                    results[futures[future]] = future.result(timeout=30)
                except Exception:  # noqa: BLE001
                    pass
    finally:
        pool.shutdown(wait=not cancel.is_set(), cancel_futures=True)
    return [results.get(i) or HostResult.failed(h.name, "interrupted", interrupted=True)
            for i, h in enumerate(hosts)]
