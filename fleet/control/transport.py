"""Reach a host and run one plan there: over SSH (fabric/paramiko) or locally (subprocess).

The only module that imports fabric/paramiko. `exec_agent(host, plan, ...)` opens ONE exec channel
running `fleet.control.bootstrap.remote_command` and speaks `fleet.control.bootstrap.converse` over it: a host
with the cached agent costs that one channel and no extra round trip; a host without it gets
the agent on the same channel's stdin after one handshake line. `connection = "local"` runs the
same command with subprocess, so both share one code path.

Host keys are strict: known hosts come from the host's `known_hosts` file (else the ssh config's
UserKnownHostsFile, else ~/.ssh/known_hosts); an unknown key is refused unless
`accept_new_host_keys` (CLI) or `host_key_policy = "accept-new"` (inventory) says to record it
(our own policy appends it to that file; never paramiko's silent AutoAddPolicy); a changed key
is always refused, naming the known_hosts file and line.

Connection-level failures raise `ConnectionFailed` (`.retryable` for a missing banner or a reset
during the handshake, what sshd's MaxStartups does under bursts) or `HostKeyRefused`; everything
after the channel opened comes back as an `AgentExec` value.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import fabric
import paramiko
from paramiko.hostkeys import HostKeyEntry, HostKeys

from fleet.control.bootstrap import AgentExec, CancelToken, Stream, converse, remote_command
from fleet.config.inventory import Host
from fleet.errors import ConnectionFailed

__all__ = ["AgentExec", "CancelToken", "ConnectionFailed", "HostKeyRefused", "exec_agent"]

# paramiko logs a failed handshake as a traceback; the host's error already says what happened.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
log = logging.getLogger("fleet.transport")     # -v / --log-file (fleet.logs)

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_COMMAND_TIMEOUT = 3600.0
SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")


class HostKeyRefused(ConnectionFailed):
    """The host's key is unknown (and accepting new keys was not asked for) or has changed."""


# --- SSH ----------------------------------------------------------------------------------

class _ChannelStream(Stream):
    def __init__(self, channel: paramiko.Channel):
        self.channel = channel

    def send(self, data: bytes) -> None:
        try:
            self.channel.sendall(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass   # the remote side ended early; what it said explains why

    def close_stdin(self) -> None:
        try:
            self.channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def read(self, timeout: float) -> tuple[bytes, bytes, bool]:
        chan = self.channel
        out = b""
        if not chan.eof_received or chan.recv_ready():
            chan.settimeout(timeout)
            try:
                out = chan.recv(65536)
            except socket.timeout:
                pass
        else:
            chan.status_event.wait(timeout)    # stdout is done; wait for the exit status
        err = b""
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        finished = ((chan.eof_received or chan.closed) and chan.exit_status_ready()
                    and not chan.recv_ready() and not chan.recv_stderr_ready())
        return out, err, finished

    def exit_code(self) -> Optional[int]:
        code = self.channel.recv_exit_status() if self.channel.exit_status_ready() else None
        return None if code is None or code < 0 else code

    def kill(self) -> None:
        self.channel.close()


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


_KNOWN_HOSTS_LOCK = threading.Lock()


class _RecordNewKey(paramiko.MissingHostKeyPolicy):
    """accept-new: record the key of a host that has none yet (changed keys never get here).

    Written the way ssh would: hashed when ssh_config says `HashKnownHosts yes` (Debian's default).
    """

    def __init__(self, path: Path, hashed: bool):
        self.path, self.hashed = path, hashed

    def missing_host_key(self, client, hostname, key):
        name = HostKeys.hash_host(hostname) if self.hashed else hostname
        line = f"{name} {key.get_name()} {key.get_base64()}\n"
        with _KNOWN_HOSTS_LOCK:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(self.path, "a+", encoding="utf-8") as f:
                fcntl.flock(f, fcntl.LOCK_EX)   # another fleet process may record at once
                f.seek(0)
                known = f.read()
                recorded = HostKeys()
                recorded.load(str(self.path))
                if key.get_name() not in (recorded.lookup(hostname) or {}):
                    f.write(("\n" if known and not known.endswith("\n") else "") + line)
        client.get_host_keys().add(hostname, key.get_name(), key)
        # Accepting is never silent: say what was trusted, where it was written.
        print(f"fleet: recorded the new host key of {hostname} ({_fingerprint(key)}) in {self.path}",
              file=sys.stderr)


class _RefuseUnknownKey(paramiko.MissingHostKeyPolicy):
    def __init__(self, path: Path, host_name: str):
        self.path, self.host_name = path, host_name

    def missing_host_key(self, client, hostname, key):
        raise HostKeyRefused(
            f"{self.host_name}: host key of {hostname} ({_fingerprint(key)}) is not in {self.path}; "
            f"check the fingerprint, then run again with --accept-new-host-keys or set "
            f"host_key_policy = \"accept-new\" for this host in the inventory to record it")


def _known_hosts_line(path: Path, hostname: str) -> Optional[int]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for number, line in enumerate(lines, 1):
        entry = HostKeyEntry.from_line(line, number) if line.strip() and not line.startswith("#") else None
        for name in entry.hostnames if entry else ():
            if name == hostname or (name.startswith("|1|") and
                                    HostKeys.hash_host(hostname, name.split("|")[2]) == name):
                return number
    return None


def _known_hosts_path(host: Host, ssh_config: dict) -> Path:
    if host.known_hosts:
        return Path(str(host.known_hosts)).expanduser()
    configured = ssh_config.get("userknownhostsfile")
    if configured:
        return Path(configured.split()[0]).expanduser()
    return Path("~/.ssh/known_hosts").expanduser()


class _PatientTransport(paramiko.Transport):
    """paramiko's Transport, its thread waking once a second instead of ten times when idle.

    The wake-up only polls for close(), and close() also closes the socket and does not wait
    for the thread (Transport.stop_thread), so nothing waits longer. With 0.1 s, a fleet of 50
    hosts waiting on their agents woke the controller 500 times a second.
    """

    _active_check_timeout = 1.0


_PARSED_KNOWN_HOSTS: dict = {}
_PARSED_KNOWN_HOSTS_LOCK = threading.Lock()


def parsed_known_hosts(path: Path) -> HostKeys:
    """`path` parsed once per content (inode, size, mtime) and shared by every host of a run.

    Each connection used to parse the whole file (paramiko's load_host_keys): N hosts sharing one
    known_hosts cost N parses of N lines, which grows with the square of the fleet. A file
    changed meanwhile (another fleet recording a key) is parsed again.
    """
    st = path.stat()
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _PARSED_KNOWN_HOSTS_LOCK:
        cached = _PARSED_KNOWN_HOSTS.get(str(path))
        if cached is None or cached[0] != stamp:
            cached = _PARSED_KNOWN_HOSTS[str(path)] = (stamp, HostKeys(str(path)))
        return cached[1]


def _known_host_names(conn: fabric.Connection) -> list[str]:
    """The names paramiko looks a server's key up by (ssh's `[host]:port` form off port 22)."""
    return [conn.host] if int(conn.port or 22) == 22 else [f"[{conn.host}]:{conn.port}"]


def _prepare_client(conn: fabric.Connection, host: Host, accept_new: bool, timeout: float) -> Path:
    """Strict host keys and our timeouts on `conn` (fabric's default is a silent AutoAddPolicy)."""
    path = _known_hosts_path(host, conn.ssh_config)
    client = conn.client
    if path.exists():
        # Only this host's entries go into its client; the parse is shared (parsed_known_hosts).
        known, mine = parsed_known_hosts(path), client.get_host_keys()
        for name in _known_host_names(conn):
            for key_type, key in (known.lookup(name) or {}).items():
                mine.add(name, key_type, key)
    if not host.known_hosts and SYSTEM_KNOWN_HOSTS.exists():
        client.load_system_host_keys(str(SYSTEM_KNOWN_HOSTS))   # as ssh does; never written to
    if accept_new or host.host_key_policy == "accept-new":
        hashed = str(conn.ssh_config.get("hashknownhosts", "no")).lower() == "yes"
        client.set_missing_host_key_policy(_RecordNewKey(path, hashed))
    else:
        client.set_missing_host_key_policy(_RefuseUnknownKey(path, host.name))
    conn.connect_timeout = timeout
    conn.connect_kwargs.update(banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
                               allow_agent=True, transport_factory=_PatientTransport)
    return path


def _connection(host: Host, accept_new: bool, timeout: float) -> tuple[fabric.Connection, list]:
    """A fabric Connection (ssh config, ProxyJump hops) with every hop made strict.

    fabric resolves ~/.ssh/config (HostName, Port, User, IdentityFile, ProxyJump) and builds the
    jump chain as direct-tcpip channels; what it gets wrong for us (AutoAddPolicy, integer-only
    timeouts, its own command runner) is replaced on the paramiko client underneath.
    """
    ssh_config = host.ssh_config
    config = fabric.Config(runtime_ssh_path=str(Path(str(ssh_config)).expanduser())) if ssh_config \
        else fabric.Config()
    kwargs: dict = {}
    keys = list(host.identity_files)
    if keys:
        kwargs["key_filename"] = [str(Path(k).expanduser()) for k in keys]
    gateway = None
    if host.proxy_jump:
        # ssh's ProxyJump order: hop1 is reached directly, each later hop through the one before.
        for hop in str(host.proxy_jump).split(","):
            gateway = fabric.Connection(hop.strip(), config=config.clone(),
                                        **({"gateway": gateway} if gateway else {}))
    conn = fabric.Connection(host.address or host.name, user=host.user,
                             port=host.port, config=config, connect_kwargs=kwargs,
                             **({"gateway": gateway} if gateway else {}))
    hops, hop = [], conn
    while isinstance(hop, fabric.Connection):
        if hop is not conn and keys:
            # ssh uses the same identities for jump hosts; fabric gives hops only ssh_config's.
            hop.connect_kwargs.setdefault("key_filename", []).extend(kwargs["key_filename"])
        hops.append((hop, _prepare_client(hop, host, accept_new, timeout)))
        hop = hop.gateway
    return conn, hops


def _describe(host: Host, conn: fabric.Connection) -> str:
    return f"{host.name} ({conn.user}@{conn.host}:{conn.port})"


def _connect(conn: fabric.Connection, hops: list, host: Host, timeout: float) -> None:
    """Open the connection; translate failures into ConnectionFailed with a reason a person can act on."""
    where = _describe(host, conn)
    began = time.monotonic()
    try:
        conn.open()
    except paramiko.BadHostKeyException as exc:
        hop, path = next(((c, p) for c, p in hops if c.host == exc.hostname), hops[0])
        name = exc.hostname if hop.port == 22 else f"[{exc.hostname}]:{hop.port}"
        line = _known_hosts_line(path, name) if path else None
        raise HostKeyRefused(
            f"{where}: REMOTE HOST IDENTIFICATION HAS CHANGED: it offers {_fingerprint(exc.key)}, but "
            f"{path}{f' line {line}' if line else ''} says {_fingerprint(exc.expected_key)}. Someone could "
            f"be intercepting, or the host was reinstalled: if you are sure, remove that line "
            f"(ssh-keygen -R '{name}' -f {path}) and accept the new key with --accept-new-host-keys") from exc
    except HostKeyRefused:
        raise
    except paramiko.AuthenticationException as exc:
        raise ConnectionFailed(f"{where}: authentication failed ({exc}); check user and identity_file, "
                               f"or load the key into ssh-agent") from exc
    except paramiko.ssh_exception.NoValidConnectionsError as exc:
        raise ConnectionFailed(f"{where}: connection refused (is sshd running there?)") from exc
    except socket.timeout as exc:
        raise ConnectionFailed(f"{where}: no answer within {timeout:g}s (connect timeout)") from exc
    except socket.gaierror as exc:
        raise ConnectionFailed(f"{where}: cannot resolve the address: {exc.strerror}") from exc
    except (EOFError, ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
        raise _retryable(f"{where}: connection dropped during the handshake ({type(exc).__name__})") from exc
    except paramiko.SSHException as exc:
        text = str(exc) or type(exc).__name__
        transport = conn.client.get_transport()
        if transport is None or not transport.remote_version:
            if time.monotonic() - began < 0.9 * timeout:
                text = f"the connection was dropped before the SSH banner (sshd's MaxStartups under a burst?): {text}"
            else:
                text = f"no SSH banner within {timeout:g}s ({text})"
        failed = ConnectionFailed(f"{where}: {text}")
        # What sshd's MaxStartups does under a burst: banner never comes, or the socket resets.
        failed.retryable = bool(re.search(r"banner|reset|EOF|not active|closed|no existing session", text, re.I))
        raise failed from exc
    except OSError as exc:
        if getattr(exc, "filename", None):
            # Opening a key file is the only file access of a connect: say which one and where it came from.
            raise ConnectionFailed(f"{where}: identity file {exc.filename}: {exc.strerror or exc} (set by identity_file "
                                   f"in the inventory or IdentityFile in ssh_config)") from exc
        raise ConnectionFailed(f"{where}: {exc.strerror or exc}") from exc


def _log_connecting(host: Host, conn: fabric.Connection, hops: list) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    keys = conn.connect_kwargs.get("key_filename") or []
    via = f" via {' -> '.join(f'{h.host}:{h.port}' for h, _ in hops[1:][::-1])}" if len(hops) > 1 else ""
    log.info("%s: connecting to %s@%s:%s%s (identity: %s; known_hosts: %s; connect timeout %gs)",
             host.name, conn.user, conn.host, conn.port, via,
             ", ".join(str(k) for k in keys) or "ssh-agent or ~/.ssh defaults", hops[0][1], conn.connect_timeout)


def _retryable(message: str) -> ConnectionFailed:
    failed = ConnectionFailed(message)
    failed.retryable = True
    return failed


def _run_ssh(host: Host, command: str, plan_bytes: bytes, bundle: bytes, accept_new: bool,
             connect_timeout: float, command_timeout: float, cancel: threading.Event,
             on_running: Optional[Callable[[], None]], python: str, frames: Any = None) -> AgentExec:
    conn, hops = _connection(host, accept_new, connect_timeout)
    key = cancel.register(conn.close) if isinstance(cancel, CancelToken) else None
    try:
        _log_connecting(host, conn, hops)
        _connect(conn, hops, host, connect_timeout)
        log.debug("%s: authenticated as %s; opening a session for the agent's bootstrap (%d bytes of sh)",
                  host.name, conn.user, len(command))
        if cancel.is_set():
            return AgentExec("", "", None, None, 0.0, "interrupted", interrupted=True)
        try:
            channel = conn.transport.open_session(timeout=connect_timeout)
            channel.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _retryable(f"{_describe(host, conn)}: cannot open a session channel: {exc}") from exc
        return converse(_ChannelStream(channel), host.name, python, plan_bytes, bundle,
                         time.monotonic() + command_timeout, command_timeout, cancel, on_running, frames)
    finally:
        if key is not None:
            cancel.unregister(key)
        conn.close()
        for hop, _ in hops[1:]:
            hop.close()


# --- local ---------------------------------------------------------------------------------

class _ProcessStream(Stream):
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.selector = selectors.DefaultSelector()
        for pipe in (proc.stdout, proc.stderr):
            os.set_blocking(pipe.fileno(), False)
            self.selector.register(pipe, selectors.EVENT_READ)

    def send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def close_stdin(self) -> None:
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def read(self, timeout: float) -> tuple[bytes, bytes, bool]:
        chunks = {self.proc.stdout: b"", self.proc.stderr: b""}
        if not self.selector.get_map():
            # Both pipes are closed: wait for the exit itself (an empty selector would sleep).
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            return b"", b"", self.proc.poll() is not None
        for key, _ in self.selector.select(timeout):
            data = os.read(key.fileobj.fileno(), 65536)
            if data:
                chunks[key.fileobj] += data
            else:
                self.selector.unregister(key.fileobj)
        finished = not self.selector.get_map() and self.proc.poll() is not None
        return chunks[self.proc.stdout], chunks[self.proc.stderr], finished

    def exit_code(self) -> Optional[int]:
        code = self.proc.wait()
        return code if code >= 0 else None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _run_local(host: Host, command: str, plan_bytes: bytes, bundle: bytes, command_timeout: float,
               cancel: threading.Event, on_running: Optional[Callable[[], None]], python: str,
               frames: Any = None) -> AgentExec:
    proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, close_fds=True)
    key = cancel.register(proc.kill) if isinstance(cancel, CancelToken) else None
    try:
        return converse(_ProcessStream(proc), host.name, python, plan_bytes, bundle,
                         time.monotonic() + command_timeout, command_timeout, cancel, on_running, frames)
    finally:
        if key is not None:
            cancel.unregister(key)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe and not pipe.closed:
                try:
                    pipe.close()
                except BrokenPipeError:
                    pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def exec_agent(host: Host, plan: dict, *, bundle: bytes, digest: str, accept_new_host_keys: bool = False,
              connect_timeout: Optional[float] = None, command_timeout: Optional[float] = None,
              cancel: Optional[threading.Event] = None,
              on_running: Optional[Callable[[], None]] = None, frames: Any = None) -> AgentExec:
    """Run `plan` on `host` with the agent `bundle` (sha256 `digest`); one exec channel.

    `frames`: a fleet.control.backupstream.BackupReceiver when the plan streams backups to the controller
    (or fetches them back); they travel on this same channel (bootstrap.converse).

    Returns an AgentExec (also for a bootstrap failure, a timeout or an interruption: `.error`).
    Raises ConnectionFailed (`.retryable` for banner/reset failures) or HostKeyRefused when no
    channel could be opened. `on_running` is called once the agent starts.
    """
    cancel = cancel if cancel is not None else threading.Event()
    python = host.python
    plan_bytes = json.dumps(plan).encode("utf-8")
    command = remote_command(python, digest, len(bundle), len(plan_bytes),
                             "", host.become_user)
    connect_timeout = float(connect_timeout or host.connect_timeout or DEFAULT_CONNECT_TIMEOUT)
    command_timeout = float(command_timeout or host.command_timeout or DEFAULT_COMMAND_TIMEOUT)
    if host.is_local:
        return _run_local(host, command, plan_bytes, bundle, command_timeout, cancel, on_running, python, frames)
    return _run_ssh(host, command, plan_bytes, bundle, accept_new_host_keys, connect_timeout,
                    command_timeout, cancel, on_running, python, frames)
