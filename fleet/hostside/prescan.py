"""First passes over big transcripts on the host's other cores, ahead of the run that needs them.

A weekly run's time goes mostly into the first pass over each transcript it trims (read, sha256,
every line through the JSON scanner: transcript.scan_transcript), one file after the other. When
the host has more than one core and the run has several big transcripts ahead of it, `start`
hands those first passes to worker processes in the order the run will reach them; the run then
`take`s each file's scan instead of making it, while the workers are already on the next files.

Nothing about safety changes: a worker only reads. A scan is used only for the very file it was
made on (same inode, size and mtime when the run opens it), and the trim still takes its backup
against the scan's size and sha256, so a file that changed after its scan is planned again on the
bytes that were backed up (transcript.BackupWitness). A worker that fails, or a file the run asks
for out of turn, just means the run scans that file itself, as it would without workers.

Bounded: at most WINDOW scans are made or held ahead of the run (a scan keeps ~25 bytes per line).
Workers ignore SIGINT (the run's own handler decides when to stop), die with the run (Linux
PR_SET_PDEATHSIG) and are terminated when it ends. Stdlib only, Python >= 3.8.
"""
import os
import signal

from .fsutil import open_nofollow, sig
from .slim import Limits, check_level
from .terms import pick_tier

MIN_BYTES = 32 << 20      # below this in all, worker start-up costs more than it saves
MAX_WORKERS = 4           # a production host serves its users too
WINDOW_PER_WORKER = 2


def host_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def jobs_for(agents, section):
    """[(path, slim level, policy)] of every JSON-era transcript the plan's tiers will trim, in the
    order the run reaches them (agents in order, files in discovery order)."""
    if not section or not section.get("tiers"):
        return []
    jobs = []
    for af in agents:
        if getattr(af, "error", None) or getattr(af, "era", None) != "json":
            continue
        for info in af.files:
            if info.kind != "transcript" or info.rel in af.problems:
                continue
            tier = pick_tier(section["tiers"], info.size)
            if tier is not None:
                jobs.append((info.path, tier.get("slim"), section, info.size))
    return jobs


def _worker_init():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except Exception:
        pass


def _scan_one(job):
    """(sig, scan) of one file, or (None, None) when anything fails (the run then scans it itself)."""
    from .transcript import scan_transcript
    path, slim, policy = job
    try:
        with os.fdopen(open_nofollow(path), "rb") as f:
            before = sig(os.fstat(f.fileno()))
            scan = scan_transcript(f, check_level(slim), Limits.from_policy(policy))
        return before, scan
    except Exception:
        return None, None


class Prescans(object):
    """Scans made ahead by a pool of worker processes; see the module docstring."""

    def __init__(self, jobs, workers):
        import multiprocessing
        self.order = [path for path, _slim, _policy, _size in jobs]
        self.jobs = [(path, slim, policy) for path, slim, policy, _size in jobs]
        self.index = dict((path, i) for i, path in enumerate(self.order))
        self.pending = {}                   # index -> AsyncResult
        self.next = 0                       # the next job to hand out
        self.window = workers * WINDOW_PER_WORKER
        self.used = 0
        self.workers = workers
        self.pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init)
        self._top_up(0)

    def _top_up(self, at):
        while self.next < len(self.jobs) and self.next < at + self.window:
            self.pending[self.next] = self.pool.apply_async(_scan_one, (self.jobs[self.next],))
            self.next += 1

    def take(self, path, f):
        """The scan made ahead for `path`, when it was made on the file open as `f`; else None."""
        i = self.index.get(path)
        if i is None:
            return None
        for passed in [k for k in self.pending if k < i - self.window]:
            del self.pending[passed]       # files the run went past (skipped): let their scans go
        result = self.pending.pop(i, None)
        self._top_up(i + 1)
        if result is None:
            return None
        try:
            made_on, scan = result.get()
        except Exception:
            return None
        if made_on is None or made_on != sig(os.fstat(f.fileno())):
            return None
        self.used += 1
        return scan

    def summary(self):
        """The result's "prescan": workers, scans handed out to them, scans the run used."""
        return {"workers": self.workers, "made": self.next, "used": self.used}

    def close(self):
        self.pending.clear()
        self.pool.terminate()
        self.pool.join()


def start(agents, section, environ=None):
    """Prescans for the run's big transcripts, or None (one core, little work, or no fork).

    FLEET_AGENT_WORKERS in the agent's environment sets the number of workers (0: none; the
    bench compares both in one run); without it: the host's cores, at most MAX_WORKERS."""
    jobs = jobs_for(agents, section)
    wanted = (os.environ if environ is None else environ).get("FLEET_AGENT_WORKERS", "")
    workers = int(wanted) if wanted.isdigit() else (host_cpus() if host_cpus() > 1 else 0)
    workers = min(workers, MAX_WORKERS, len(jobs))
    if workers < 1 or len(jobs) < 2 or (not wanted and sum(j[3] for j in jobs) < MIN_BYTES):
        return None
    try:
        return Prescans(jobs, workers)
    except Exception:      # no fork, no semaphores (/dev/shm), a resource limit: scan in the run
        return None
