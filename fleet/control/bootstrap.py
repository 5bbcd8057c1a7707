"""What runs on the host before the agent, and the conversation with it (no SSH here).

`remote_command` builds the one shell command line of a run: a POSIX `sh` wrapper, every value
`shlex.quote`d, that starts the host's python on `BOOTSTRAP` (below). `converse` speaks the
protocol over any byte stream (an SSH channel or a local subprocess, see fleet/control/transport.py):

1. send the plan (its length is on the command line) at once;
2. read the handshake: `fleet-agent: cached` (the cached agent's sha256 matches: it runs now,
   no extra round trip) or `fleet-agent: need` (send the agent's bytes on the same stdin; the
   bootstrap verifies and installs them atomically, then says `fleet-agent: installed`);
3. collect the agent's stdout/stderr/exit code, with a deadline and a cancel token.

Bootstrap failures (no python, python < 3.8, damaged transfer, unwritable cache) come back as an
`AgentExec.error` that names the host. docs/agent-protocol.md documents the handshake.
"""
from __future__ import annotations

import re
import shlex
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

HANDSHAKE = b"fleet-agent: "
# How long one read waits for output before the loop checks the deadline again. Output, the
# handshake, an exit and a cancel (it closes the channel) end the wait at once, so this only
# bounds the deadline check; at 0.05 s, 50 idle hosts woke the controller 1,000 times a second
# (about 4 ms of CPU per host on bench/peers.py's 50-host run).
_POLL_S = 0.5
STDERR_KEPT = 256 * 1024

# Runs on the host. Must parse on any python (2.7 too), so that an old one can say its version.
# The verified .pyz is also unpacked once into agent-<digest16>/ with hash-checked .pyc files:
# zipimport compiles every module on every run (~40 ms of CPU per host, far more on small boards).
# Installing a new agent forgets other versions untouched for 30 days (a fleet upgrade's leftovers).
BOOTSTRAP = r'''
import sys
if sys.version_info < (3, 8):
    sys.stdout.write("fleet-agent: python-too-old %s\n" % sys.version.split()[0])
    sys.exit(97)
import hashlib, io, os, runpy, tempfile
digest, agent_size, plan_size, cache_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def say(line):
    sys.stdout.write("fleet-agent: " + line + "\n")
    sys.stdout.flush()
def read_exact(n):
    parts = []
    while n > 0:
        part = sys.stdin.buffer.read(n)
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)
def read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None
def tree_ok(tree):
    try:
        manifest = (read_file(os.path.join(tree, ".manifest")) or b"").decode().splitlines()
        if not manifest or manifest[0] != digest:
            return False
        for line in manifest[1:]:
            sha, name = line.split(" ", 1)
            content = read_file(os.path.join(tree, name))
            if content is None or hashlib.sha256(content).hexdigest() != sha:
                return False
        return True
    except ValueError:
        return False
def unpack(data, tree):
    import compileall, py_compile, shutil, zipfile
    tmp = tempfile.mkdtemp(dir=cache_dir, prefix=".agent-")
    manifest = [digest]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            content = zf.read(info)
            target = os.path.join(tmp, *info.filename.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(content)
            manifest.append("%s %s" % (hashlib.sha256(content).hexdigest(), info.filename))
    compileall.compile_dir(tmp, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    with open(os.path.join(tmp, ".manifest"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    if os.path.isdir(tree):
        shutil.rmtree(tree, ignore_errors=True)
    try:
        os.rename(tmp, tree)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)   # another run unpacked it at the same moment
def forget_old_agents():
    import shutil, time
    for name in os.listdir(cache_dir):
        old = os.path.join(cache_dir, name)
        try:
            stale = time.time() - os.lstat(old).st_mtime > 30 * 86400
        except OSError:
            continue
        if name.startswith("agent-") and not name.startswith("agent-" + digest[:16]) and stale:
            if os.path.isdir(old) and not os.path.islink(old):
                shutil.rmtree(old, ignore_errors=True)
            else:
                try:
                    os.unlink(old)
                except OSError:
                    pass
plan = read_exact(plan_size)
if len(plan) != plan_size:
    say("error the plan arrived truncated")
    sys.exit(98)
if not cache_dir:
    cache_dir = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fleet")
cache_dir = os.path.expanduser(cache_dir)
tree = os.path.join(cache_dir, "agent-%s" % digest[:16])
path = tree + ".pyz"
data = read_file(path)
if data is not None and hashlib.sha256(data).hexdigest() == digest:
    say("cached")
else:
    say("need")
    data = read_exact(agent_size)
    if hashlib.sha256(data).hexdigest() != digest:
        say("error the agent arrived damaged (%d of %d bytes)" % (len(data), agent_size))
        sys.exit(98)
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        os.chmod(cache_dir, 0o700)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".agent-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        say("error cannot install the agent in %s: %s" % (cache_dir, exc))
        sys.exit(98)
    say("installed")
    forget_old_agents()
entry = tree
if not tree_ok(tree):
    try:
        unpack(data, tree)
    except (OSError, ValueError):
        pass
    if not tree_ok(tree):
        entry = path   # run the verified .pyz itself
sys.stdin = io.TextIOWrapper(io.BytesIO(plan), encoding="utf-8")
sys.argv = [path, "run", "--plan", "-"]
runpy.run_path(entry, run_name="__main__")
'''


@dataclass
class AgentExec:
    """What one exec of the agent produced. `error` is set when no agent result can exist."""

    stdout: str
    stderr: str
    exit_code: Optional[int]
    cached: Optional[bool]
    elapsed: float
    error: Optional[str] = None
    interrupted: bool = False


class CancelToken(threading.Event):
    """A cancel event that also closes registered connections at once (Ctrl-C mid-handshake)."""

    def __init__(self) -> None:
        super().__init__()
        self._closers: dict[int, Callable[[], Any]] = {}
        self._lock = threading.Lock()

    def register(self, closer: Callable[[], Any]) -> int:
        with self._lock:
            key = id(closer)
            self._closers[key] = closer
        if self.is_set():
            closer()
        return key

    def unregister(self, key: int) -> None:
        with self._lock:
            self._closers.pop(key, None)

    def set(self) -> None:
        super().set()
        with self._lock:
            closers = list(self._closers.values())
        for close in closers:
            try:
                close()
            except Exception:  # noqa: BLE001 - closing a dying socket may fail any way it likes
                pass


def remote_command(python: str, digest: str, agent_size: int, plan_size: int, cache_dir: str = "",
                   become_user: Optional[str] = None) -> str:
    """The one shell command line that runs the bootstrap (pure; every value quoted).

    python runs with -E -s -S: the agent is stdlib-only, so the host's PYTHONPATH, user site and
    site-packages are kept out, and skipping `site` saves a good part of the interpreter's start.
    """
    q = shlex.quote
    inner = (f"PY={q(python)}; command -v \"$PY\" >/dev/null 2>&1 || "
             f"{{ echo 'fleet-agent: no-python'; exit 127; }}; "
             f"exec \"$PY\" -E -s -S -c {q(BOOTSTRAP)} {q(digest)} {int(agent_size)} {int(plan_size)} {q(cache_dir)}")
    if become_user:
        return f"exec sudo -n -u {q(become_user)} -H -- /bin/sh -c {q(inner)}"
    # The login shell may not be POSIX (fish, csh): hand the script to sh.
    return f"exec /bin/sh -c {q(inner)}"


# --- the conversation, shared by SSH and local -----------------------------------------------

class Stream:
    """Both transports look like this to `_converse`."""

    def send(self, data: bytes) -> None: ...
    def close_stdin(self) -> None: ...
    def read(self, timeout: float) -> tuple[bytes, bytes, bool]: ...   # stdout, stderr, finished
    def exit_code(self) -> Optional[int]: ...
    def kill(self) -> None: ...


def converse(stream: Stream, host_name: str, python: str, plan_bytes: bytes, bundle: bytes,
              deadline: float, timeout_s: float, cancel: threading.Event,
              on_running: Optional[Callable[[], None]], frames: Any = None) -> AgentExec:
    """Send the plan, answer the handshake, collect the agent's output until it exits.

    With `frames` (a fleet.control.backupstream.BackupReceiver: backups to or from the controller) stdin
    stays open for its answers and the agent's stdout passes through it: the backup frames are
    taken out, the rest is the output as usual.
    """
    if frames is not None:
        frames.send = stream.send
        return _with_frames(stream, host_name, python, plan_bytes, bundle, deadline, timeout_s, cancel,
                            on_running, frames)
    return _converse(stream, host_name, python, plan_bytes, bundle, deadline, timeout_s, cancel, on_running)


def _with_frames(stream, host_name, python, plan_bytes, bundle, deadline, timeout_s, cancel, on_running, frames):
    try:
        run = _converse(stream, host_name, python, plan_bytes, bundle, deadline, timeout_s, cancel, on_running,
                        frames)
    except ValueError as exc:      # the frames made no sense: the agent's output cannot be trusted
        stream.kill()
        return AgentExec("", "", None, None, 0.0, f"{host_name}: broken backup stream from the agent: {exc}")
    finally:
        frames.close()
    return run


def _converse(stream: Stream, host_name: str, python: str, plan_bytes: bytes, bundle: bytes,
              deadline: float, timeout_s: float, cancel: threading.Event,
              on_running: Optional[Callable[[], None]], frames: Any = None) -> AgentExec:
    started = time.monotonic()
    out, err = bytearray(), bytearray()
    cached: Optional[bool] = None
    failure: Optional[str] = None      # a handshake word other than cached/need/installed
    running = False                    # after the handshake, stdout is the agent's alone
    stream.send(plan_bytes)
    finished = False
    while not finished:
        if cancel.is_set() or time.monotonic() > deadline:
            stream.kill()
            reason = "interrupted" if cancel.is_set() else (
                f"timed out after {timeout_s:g}s; fleet closed the session (the agent writes "
                f"atomically: no file is left half-written)")
            return AgentExec(out.decode(errors="replace"), err.decode(errors="replace"), None, cached,
                            time.monotonic() - started, reason, interrupted=cancel.is_set())
        chunk_out, chunk_err, finished = stream.read(_POLL_S)
        if running and frames is not None:
            chunk_out = frames.feed(chunk_out) + (frames.flush() if finished else b"")
        out += chunk_out
        err += chunk_err
        if len(err) > STDERR_KEPT:   # progress lines, one per file: only the end explains a failure
            del err[:len(err) - STDERR_KEPT]
        while failure is None and not running:
            word, out = _pop_handshake(out)
            if word is None:
                break
            if word == "need":
                cached = False
                stream.send(bundle)
                if frames is None:
                    stream.close_stdin()
            elif word in ("cached", "installed"):
                cached, running = word == "cached", True
                if cached and frames is None:
                    stream.close_stdin()
                if frames is not None:
                    out = bytearray(frames.feed(bytes(out)) + (frames.flush() if finished else b""))
                if on_running:
                    on_running()
            else:
                failure = word
    code = stream.exit_code()
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    if code is None and cancel.is_set():    # the token closed the connection under us
        return AgentExec(stdout, stderr, None, cached, time.monotonic() - started, "interrupted",
                        interrupted=True)
    error = None if running else _bootstrap_error(host_name, python, failure, stdout, stderr, code)
    return AgentExec(stdout, stderr, code, cached, time.monotonic() - started, error)


def _pop_handshake(out: bytearray) -> tuple[Optional[str], bytearray]:
    """Take the first complete `fleet-agent: WORD` line (at a line start) out of `out`."""
    start = 0
    while True:
        start = out.find(HANDSHAKE, start)
        if start < 0:
            return None, out
        if start == 0 or out[start - 1:start] == b"\n":
            break
        start += 1
    end = out.find(b"\n", start)
    if end < 0:
        return None, out
    word = out[start + len(HANDSHAKE):end].decode(errors="replace").strip()
    return word, out[:start] + out[end + 1:]


def _bootstrap_error(host: str, python: str, handshake: Optional[str], stdout: str, stderr: str,
                     code: Optional[int]) -> str:
    """The per-host message for a bootstrap (not agent) failure, from what it or the shell said."""
    if handshake and handshake.startswith("python-too-old"):
        version = handshake.split()[-1]
        return (f"{host}: {python} is Python {version}; the fleet agent needs Python >= 3.8 "
                f"(set python = \"/path/to/python3.8+\" for {host} in the inventory)")
    if handshake == "no-python":
        return (f"{host}: no python found as {python!r} (install Python >= 3.8, or set "
                f"python = \"/path/to/python3\" for {host} in the inventory)")
    if handshake and handshake.startswith("error "):
        return f"{host}: {handshake[6:]}"
    said = (stderr.strip() or stdout.strip()).splitlines()
    version = re.search(r"Python (\d+\.\d+(?:\.\d+)?)", stdout + stderr)
    if version:
        return (f"{host}: {python} is Python {version.group(1)} and did not run fleet's bootstrap; "
                f"the agent needs Python >= 3.8 (set python = \"/path/to/python3.8+\" in the inventory)")
    if said and said[-1].startswith("sudo:"):
        return f"{host}: sudo -n failed (become_user needs passwordless sudo): {said[-1]}"
    return f"{host}: the agent bootstrap failed (exit {code}): {said[-1] if said else 'no output'}"
