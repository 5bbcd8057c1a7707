"""OpenClaw's lock files: reading them, judging them stale, and taking the store lock.

Two lock files live in `agents/<id>/sessions/`:

- `sessions.json.lock` (the store lock). 2026.2.x writes `{"pid", "startedAt": ms}` and calls it
  stale when its mtime is over 30 s old; 2026.4.x writes `{pid, createdAt: ISO, starttime}`
  (`starttime` = field 22 of /proc/<pid>/stat) and calls it stale when the pid is dead or
  recycled or the lock is over 30 s old. 2026.5-2026.7 have no store lock at all.
- `<sid>.jsonl.lock` (a transcript lock), `{pid, createdAt, maxHoldMs, starttime?}`: stale after
  30 min, but a lock held by a live pid is never taken over. A transcript so locked is in use.

`StoreLock` takes the store lock the way both protocols understand it (O_EXCL create, body with
`pid`, `createdAt` and `startedAt`, plus `starttime` where /proc has it), waits up to ~5 s for a
held one, takes over only a lock whose owner is gone, and never one held by a live process.

Clocks: age decisions use the run's clock (`now_ms`), as everywhere in the agent. Two things
use the host's real clock on purpose: the times written into our own lock body (OpenClaw
judges them against its own clock, so a plan clock minutes old would make our lock look stale
to it), and the extra check before taking over a lock without a readable pid (that lock must
look old by the run's clock *and* the host's, so clock skew never lets us break a lock being
created right now).

A pid from another pid namespace (a gateway in a container) cannot be checked from here; such
a lock looks dead. Run the agent in the gateway's namespace in that setup.
"""
import calendar
import errno
import json
import os
import re
import stat
import time

from .fsutil import FileError, describe_oserror, open_nofollow

STORE_LOCK_STALE_MS = 30 * 1000
TRANSCRIPT_LOCK_STALE_MS = 30 * 60 * 1000
LOCK_WAIT_S = 5.0
LOCK_POLL_S = 0.05
MAX_LOCK_BODY = 64 * 1024
PID_MAX = 4194304  # Linux's pid_max ceiling (2**22); a bigger pid cannot be a live process

# ISO-8601 as OpenClaw writes it, its archive-name form ('-' for ':'), and a ' ' for the 'T'.
_ISO_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d)[:-](\d\d)[:-](\d\d)(?:\.(\d+))?"
                     r"(Z|[+-]\d\d:?\d\d)?$")


def iso_to_ms(text):
    """Epoch ms of an ISO-8601 time; also OpenClaw's archive form with '-' for ':'.

    Returns None when `text` is not such a time. A missing zone is read as UTC.
    """
    if not isinstance(text, str):
        return None
    m = _ISO_RE.match(text.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    ms = int((frac or "0")[:3].ljust(3, "0"))
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        secs -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return secs * 1000 + ms


def ms_to_iso(ms):
    """ISO-8601 UTC with milliseconds, as JavaScript's Date.toISOString writes it."""
    secs, rem = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + ".%03dZ" % rem


def proc_start_ticks(pid):
    """(starttime, state) of a live pid from /proc/<pid>/stat, or None where /proc lacks it."""
    try:
        with open("/proc/%d/stat" % int(pid), "rb") as f:
            data = f.read()
    except (OSError, ValueError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2:].split()
    if len(fields) < 20:
        return None
    try:
        return int(fields[19]), fields[0].decode("ascii", "replace")
    except ValueError:
        return None


def pid_status(pid, starttime=None):
    """(alive, why) for a pid named in a lock body.

    Dead: no such process, a zombie (it can never release the lock), or a recycled pid (the
    lock's `starttime` differs from the running process's). A process of another user counts
    as alive.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or pid > PID_MAX:
        return False, "no valid pid"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, "dead pid %d" % pid
    except PermissionError:
        pass
    except OSError:
        return False, "dead pid %d" % pid
    proc = proc_start_ticks(pid)
    if proc is not None:
        ticks, state = proc
        if state == "Z":
            return False, "dead pid %d (zombie)" % pid
        if starttime is not None and _as_int(starttime) is not None and _as_int(starttime) != ticks:
            return False, "recycled pid %d (start time differs)" % pid
    return True, "live pid %d" % pid


def _as_int(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 1e18:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def lock_kind(lock_path):
    """'store' for sessions.json.lock, else 'transcript'."""
    return "store" if os.path.basename(lock_path) == "sessions.json.lock" else "transcript"


def read_lock_body(lock_path):
    """(body dict or None, raw bytes, lstat) of a lock file; raises OSError when it cannot be read."""
    st = os.lstat(lock_path)
    if not stat.S_ISREG(st.st_mode):
        # A FIFO would block, /dev/zero never ends, a symlink may point anywhere: never opened.
        raise OSError(errno.EINVAL, "not a regular file (symlink, folder or special file), never opened",
                      lock_path)
    fd = open_nofollow(lock_path)
    with os.fdopen(fd, "rb") as f:
        raw = f.read(MAX_LOCK_BODY)
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        body = None
    return body, raw, st


def lock_state(lock_path, now_ms, kind=None):
    """Judge one lock file. Returns a dict:

    kind ('store'|'transcript'), pid (int or None), alive (True/False, None when no pid),
    stale (bool), age_s (float or None), body_ok (the body parsed and named a pid), reason
    (one line for a person), exists (False when the file vanished), ino and mtime_ns (which
    file was judged, so a takeover removes exactly that one).

    Age is measured from the youngest of the body's time (`createdAt` ISO or `startedAt` ms)
    and the file's mtime, against `now_ms`. Store lock: stale when its pid is dead or recycled,
    or when it is over 30 s old. Transcript lock: stale when its pid is dead or recycled; a lock
    without a readable pid is stale only after 30 min; a live pid's lock is never stale.
    """
    kind = kind or lock_kind(lock_path)
    state = {"kind": kind, "pid": None, "alive": None, "stale": False, "age_s": None,
             "body_ok": False, "reason": "", "exists": True, "ino": None, "mtime_ns": None}
    try:
        body, _raw, st = read_lock_body(lock_path)
    except FileNotFoundError:
        state.update(exists=False, reason="lock is gone")
        return state
    except OSError as exc:
        state["reason"] = describe_oserror(exc, "reading lock")
        return state
    state["ino"], state["mtime_ns"] = st.st_ino, st.st_mtime_ns
    times = [st.st_mtime_ns // 1000000]
    starttime = None
    if body is not None:
        pid = _as_int(body.get("pid"))
        if pid is not None and pid > 0:
            state["pid"] = pid
            state["body_ok"] = True
        for field in ("createdAt", "startedAt"):
            value = body.get(field)
            ms = iso_to_ms(value) if isinstance(value, str) else _as_int(value)
            if ms is not None:
                times.append(ms)
        starttime = body.get("starttime")
    age_ms = now_ms - max(times)
    state["age_s"] = round(age_ms / 1000.0, 3)
    limit = STORE_LOCK_STALE_MS if kind == "store" else TRANSCRIPT_LOCK_STALE_MS
    if state["pid"] is not None:
        alive, why = pid_status(state["pid"], starttime)
        state["alive"] = alive
        if not alive:
            state.update(stale=True, reason=why)
        elif kind == "store" and age_ms > limit:
            state.update(stale=True, reason="%s, but held %.0f s (over 30 s)" % (why, age_ms / 1000.0))
        else:
            state["reason"] = why
    else:
        if age_ms > limit:
            state.update(stale=True, reason="lock without a readable pid, %.0f s old" % (age_ms / 1000.0))
        else:
            state["reason"] = "lock without a readable pid, %.0f s old (may be being written)" % (
                age_ms / 1000.0)
    return state


def transcript_in_use(transcript_path, now_ms):
    """(True, detail) when `<transcript>.lock` exists and is not stale, i.e. a live process holds it.

    A lock without a readable pid that is younger than 30 min also counts as in use: it may be
    a lock being created this instant, and skipping a transcript loses nothing.
    """
    lock_path = transcript_path + ".lock"
    if not os.path.lexists(lock_path):
        return False, None
    state = lock_state(lock_path, now_ms, kind="transcript")
    if not state["exists"]:
        return False, None
    if state["stale"]:
        return False, "stale lock (%s)" % state["reason"]
    return True, "in use: locked by %s" % state["reason"]


def _not_regular(path):
    try:
        return not stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _can_take_over(state, wall_age_ms):
    """A stale store lock may be taken over when its owner is gone; never a live pid's."""
    if not state["stale"]:
        return False
    if state["alive"] is False:
        return True
    if state["pid"] is None:
        return wall_age_ms is not None and wall_age_ms > STORE_LOCK_STALE_MS
    return False


class StoreLock(object):
    """`with StoreLock(store_path, now_ms, dry_run): ...` holds `sessions.json.lock` briefly.

    Creates the lock with O_EXCL and a body both OpenClaw protocols read; polls up to `wait_s`
    for a held lock; takes over a stale one whose owner is gone (dead or recycled pid, or no
    readable pid and over 30 s old); raises FileError ("store locked by live pid N") for a lock
    a live process holds. On exit removes the lock only if it is still ours (same inode and
    body). In a dry run no lock file is created or removed, but a held lock is still waited for
    and reported exactly as the real run would. `notes` lists what happened (takeovers).
    Keep the body of the `with` short: OpenClaw's watchdogs free a lock after 15-30 s.
    """

    def __init__(self, store_path, now_ms, dry_run=False, wait_s=LOCK_WAIT_S, poll_s=LOCK_POLL_S):
        self.store_path = store_path
        self.lock_path = store_path + ".lock"
        self.now_ms = int(now_ms)
        self.dry_run = bool(dry_run)
        self.wait_s = float(wait_s)
        self.poll_s = float(poll_s)
        self.notes = []
        self._body = None
        self._ino = None
        self._acquired_at = None
        self.held_s = None

    def _run_clock(self, started):
        return self.now_ms + int((time.monotonic() - started) * 1000)

    def __enter__(self):
        started = time.monotonic()
        deadline = started + self.wait_s
        while True:
            if not self.dry_run:
                created = self._try_create()
                if created:
                    self._acquired_at = time.monotonic()
                    return self
            elif not os.path.lexists(self.lock_path):
                return self
            state = lock_state(self.lock_path, self._run_clock(started), kind="store")
            if state["exists"] and state["ino"] is None and _not_regular(self.lock_path):
                raise FileError("store lock %s is not a regular file (symlink, folder or special file), "
                                "so no process can hold or release it; left as it was — remove it by hand"
                                % os.path.basename(self.lock_path))
            if not state["exists"]:
                if self.dry_run:
                    return self
                continue
            wall_age = self._wall_age_ms()
            if _can_take_over(state, wall_age):
                if self.dry_run:
                    self.notes.append("would take over stale store lock (%s)" % state["reason"])
                    return self
                if self._remove_if_same(state):
                    self.notes.append("took over stale store lock (%s)" % state["reason"])
                continue
            if time.monotonic() >= deadline:
                raise FileError(self._held_message(state))
            time.sleep(self.poll_s)

    def _held_message(self, state):
        rel = os.path.basename(self.lock_path)
        if state["pid"] is not None and state["alive"]:
            return ("store locked by live pid %d (%s held %s s); left as it was — a gateway is "
                    "writing it: retry later, or stop the gateway" % (
                        state["pid"], rel, "?" if state["age_s"] is None else "%.0f" % state["age_s"]))
        return "store locked (%s: %s); left as it was — retry later" % (rel, state["reason"])

    def _wall_age_ms(self):
        try:
            st = os.lstat(self.lock_path)
        except OSError:
            return None
        return int(time.time() * 1000) - st.st_mtime_ns // 1000000

    def _try_create(self):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.lock_path, flags, 0o600)
        except FileExistsError:
            return False
        except OSError as exc:
            raise FileError(describe_oserror(exc, "taking the store lock " + os.path.basename(self.lock_path)))
        wall_ms = int(time.time() * 1000)
        body = {"pid": os.getpid(), "createdAt": ms_to_iso(wall_ms), "startedAt": wall_ms}
        proc = proc_start_ticks(os.getpid())
        if proc is not None:
            body["starttime"] = proc[0]
        data = json.dumps(body).encode("utf-8")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._ino = os.lstat(self.lock_path).st_ino
        except OSError as exc:
            try:
                os.unlink(self.lock_path)
            except OSError:
                pass
            raise FileError(describe_oserror(exc, "writing the store lock"))
        self._body = data
        return True

    def _remove_if_same(self, state):
        """Unlink a stale lock, unless it changed since it was judged (another taker won)."""
        try:
            st = os.lstat(self.lock_path)
        except OSError:
            return False
        if (st.st_ino, st.st_mtime_ns) != (state["ino"], state["mtime_ns"]):
            return False
        try:
            os.unlink(self.lock_path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise FileError(describe_oserror(exc, "removing a stale store lock"))
        return True

    def __exit__(self, exc_type, exc_value, tb):
        if self._acquired_at is not None:
            self.held_s = time.monotonic() - self._acquired_at
        if self._body is None:
            return False
        try:
            _body, raw, st = read_lock_body(self.lock_path)
            if raw == self._body and st.st_ino == self._ino:
                os.unlink(self.lock_path)
            else:
                self.notes.append("store lock was replaced by another process while held; left it")
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                self.notes.append("could not remove our store lock: %s" % describe_oserror(exc, "unlink"))
            else:
                self.notes.append("our store lock was removed by another process while held")
        self._body = None
        return False
