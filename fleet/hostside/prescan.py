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

Bounded: a worker hands its scans over a pipe and waits until the run reads each one, so it holds
at most the scan it finished and the one it is making (a scan keeps ~25 bytes per line), and the
run holds only the scan it asked for. Plain os.fork and pipes (no multiprocessing: no threads, no
queues, ~5 MB less in the run). Workers ignore SIGINT (the run's own handler decides when to
stop), die with the run (Linux PR_SET_PDEATHSIG) and are killed and reaped when it ends. Stdlib
only, Python >= 3.8.
"""
import os
import pickle
import signal
import struct

from .fsutil import open_nofollow, sig
from .slim import Limits, check_level
from .ops.transcripts import tiered

MIN_BYTES = 32 << 20      # below this in all, worker start-up costs more than it saves
MAX_WORKERS = 4           # a production host serves its users too
WORKER_MEMORY = 256 << 20  # each worker wants this much of the host's MemAvailable (its own use: ~10-20 MB)


def memory_allows(meminfo="/proc/meminfo"):
    """How many workers the host's available memory allows (MemAvailable / WORKER_MEMORY); no limit
    where /proc/meminfo is not there."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // WORKER_MEMORY
    except (OSError, ValueError, IndexError):
        pass
    return MAX_WORKERS


def host_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def jobs_for(agents, section):
    """[(path, slim level, the transcripts section, size)] of every JSON-era transcript the plan's
    tiers will trim, in the order the run reaches them (agents in order, files in discovery order)."""
    if not section or not section.get("tiers"):
        return []
    jobs = []
    for af in agents:
        if getattr(af, "error", None) or getattr(af, "era", None) != "json":
            continue
        readable = [info for info in af.files if info.rel not in af.problems]
        jobs.extend((info.path, tier.get("slim"), section, info.size)
                    for info, tier in tiered(readable, section["tiers"]))
    return jobs


def _die_with_parent():
    """Linux: this process gets SIGKILL when its parent dies (best effort elsewhere)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except Exception:
        pass


def _scan_one(path, slim, policy):
    """(sig, scan) of one file, or (None, None) when anything fails (the run then scans it itself)."""
    from .transcript import scan_transcript
    try:
        with os.fdopen(open_nofollow(path), "rb") as f:
            before = sig(os.fstat(f.fileno()))
            scan = scan_transcript(f, check_level(slim), Limits.from_policy(policy))
        return before, scan
    except Exception:
        return None, None


def _worker(jobs, out_fd):
    """A forked worker: scan `jobs` in order, each result framed on `out_fd` (8-byte length, then
    the pickle). Writing blocks until the run reads, so a worker holds at most one scan ahead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("SIGTERM", "SIGHUP", "SIGPIPE"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    _die_with_parent()
    with os.fdopen(out_fd, "wb") as out:
        for path, slim, policy in jobs:
            data = pickle.dumps(_scan_one(path, slim, policy), pickle.HIGHEST_PROTOCOL)
            out.write(struct.pack(">Q", len(data)))
            out.write(data)
            out.flush()


class Prescans(object):
    """Scans made ahead by forked worker processes; see the module docstring.

    Job k goes to worker k % workers; each worker scans its jobs in order and hands each scan over
    a pipe, so the run reads a worker's scans in the order it made them. The run holds only the
    scan it asked for; a worker holds at most the one it finished and the one it is making.
    """

    def __init__(self, jobs, workers):
        self.order = [path for path, _slim, _policy, _size in jobs]
        self.index = dict((path, i) for i, path in enumerate(self.order))
        self.workers = workers
        self.used = 0
        self.taken = [0] * workers            # per worker: how many of its results were read
        self.pipes, self.pids = [], []
        try:
            for w in range(workers):
                mine = [(path, slim, policy) for path, slim, policy, _size in jobs[w::workers]]
                r, wfd = os.pipe()
                pid = os.fork()
                if pid == 0:                   # the worker: never returns into the run
                    code = 0
                    try:
                        os.close(r)
                        for fd in self.pipes:
                            os.close(fd)
                        _worker(mine, wfd)
                    except BaseException:
                        code = 1
                    finally:
                        os._exit(code)
                os.close(wfd)
                self.pipes.append(r)
                self.pids.append(pid)
        except BaseException:
            self.close()
            raise

    def _read(self, w):
        """The next result of worker w: (sig, scan), or None when it has nothing more."""
        head = self._exactly(w, 8)
        if head is None:
            return None
        data = self._exactly(w, struct.unpack(">Q", head)[0])
        return None if data is None else pickle.loads(data)

    def _exactly(self, w, n):
        parts, left = [], n
        while left:
            part = os.read(self.pipes[w], min(left, 1 << 20))    # EINTR is retried (PEP 475)
            if not part:
                return None
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def take(self, path, f):
        """The scan made ahead for `path`, when it was made on the file open as `f`; else None."""
        i = self.index.get(path)
        if i is None or not self.pipes:
            return None
        w, nth = i % self.workers, i // self.workers
        if nth < self.taken[w]:
            return None                        # asked again, or after a later one of its worker
        result = None
        try:
            while self.taken[w] <= nth:        # results of files the run went past are let go
                result = self._read(w)
                self.taken[w] += 1
                if result is None:
                    return None
        except (OSError, ValueError, EOFError, pickle.UnpicklingError):
            return None
        made_on, scan = result
        if made_on is None or made_on != sig(os.fstat(f.fileno())):
            return None
        self.used += 1
        return scan

    def summary(self):
        """The result's "prescan": workers, files given to them, scans the run used."""
        return {"workers": self.workers, "made": len(self.order), "used": self.used}

    def close(self):
        """Stop every worker (they only read) and reap it."""
        for fd in self.pipes:
            try:
                os.close(fd)
            except OSError:
                pass
        self.pipes = []
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.waitpid(pid, 0)
            except OSError:
                pass
        self.pids = []


def start(agents, section, environ=None):
    """Prescans for the run's big transcripts, or None (one core, little work, or no fork).

    FLEET_AGENT_WORKERS in the agent's environment sets the number of workers (0: none; the
    bench compares both in one run); without it: the host's cores, no more than its available
    memory allows (memory_allows), at most MAX_WORKERS."""
    jobs = jobs_for(agents, section)
    wanted = (os.environ if environ is None else environ).get("FLEET_AGENT_WORKERS", "")
    workers = int(wanted) if wanted.isdigit() else (min(host_cpus(), memory_allows()) if host_cpus() > 1 else 0)
    workers = min(workers, MAX_WORKERS, len(jobs))
    if workers < 1 or len(jobs) < 2 or (not wanted and sum(j[3] for j in jobs) < MIN_BYTES):
        return None
    try:
        return Prescans(jobs, workers)
    except Exception:      # no fork, no semaphores (/dev/shm), a resource limit: scan in the run
        return None
