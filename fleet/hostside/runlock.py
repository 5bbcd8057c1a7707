"""One changing run per host at a time, decided on the host: an exclusive kernel lock.

`HostLock(state_dir).acquire(holder)` takes `fcntl.flock(LOCK_EX | LOCK_NB)` on
`<state_dir>/.fleet-run.lock` before the run's first write and holds it for the whole run.
The kernel releases it when the process ends, however it ends (SIGKILL included), so there is
never a stale lock to clean up. The file descriptor is close-on-exec: a subprocess the run starts
(OpenClaw's CLI) must not keep the lock alive after the agent died.

While held, the file holds one JSON line naming the holder (run id, controller user@host, pid,
start time), so a second run can say who is working: `HostBusy.message` is
"busy: run R from USER@HOST since T". The lock is taken by changing plans only (a real `run` or
`restore`); scans and dry runs never touch it, so they never wait. The file sits in the state dir itself, not among the backups: it must be per state
dir (two control hosts with different backup folders still exclude each other), and the state dir
is the one folder every run may write (a `fleet-backups` that is a symlink or a file must still
get its per-file refusals, not a failed lock). It is opened with O_NOFOLLOW. Stdlib only.
"""
import errno
import json
import os
import time

try:
    import fcntl
except ImportError:  # not POSIX: no host lock (fleet's hosts are POSIX; the agent still runs)
    fcntl = None

LOCK_NAME = ".fleet-run.lock"
HOLDER_READ_TRIES = 20       # the holder writes its line right after locking; wait up to ~0.2 s


class HostBusy(Exception):
    """Another run holds this host. `holder` is its JSON line (may be partial)."""

    def __init__(self, holder):
        self.holder = holder or {}
        Exception.__init__(self, self.message)

    @property
    def message(self):
        h = self.holder
        run = h.get("run_id") or "?"
        origin = h.get("origin") or "?"
        since = h.get("started_at") or "?"
        return "busy: run %s from %s since %s" % (run, origin, since)


def lock_path(state_dir):
    return os.path.join(state_dir, LOCK_NAME)


def read_holder(path, tries=HOLDER_READ_TRIES):
    """The holder's JSON line of the lock file at `path`, or {} (never raises)."""
    for _ in range(tries):
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return {}
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        finally:
            os.close(fd)
        try:
            doc = json.loads(data.decode("utf-8"))
            if isinstance(doc, dict):
                return doc
        except ValueError:
            pass
        time.sleep(0.01)
    return {}


class HostLock(object):
    """The host's run lock (see the module docstring). Use `acquire(holder)` then `release()`."""

    def __init__(self, state_dir):
        self.path = lock_path(state_dir)
        self.fd = None

    def acquire(self, holder):
        """Take the lock or raise HostBusy (nothing written then). OSError if the folder cannot be made."""
        if fcntl is None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise HostBusy(read_holder(self.path))
            raise
        self.fd = fd
        line = (json.dumps(holder, sort_keys=True) + "\n").encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, line, 0)

    def release(self):
        """Clear the holder line and unlock (the kernel does the same if we die first)."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass
        os.close(self.fd)   # closing the only descriptor drops the flock
        self.fd = None


def current_holder(state_dir):
    """The holder line when a live process holds the lock now, else None (read-only, never waits).

    A probe with flock would briefly hold the lock and make a run starting at that moment see
    "busy", so this reads the line and checks its pid instead; a released lock has no line.
    """
    holder = read_holder(lock_path(state_dir), tries=1)
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            return None
    return holder
