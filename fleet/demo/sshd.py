"""A private OpenSSH server on 127.0.0.1, for the demo fleet and the test fleet.

Each `SshdServer` is one real `/usr/sbin/sshd` with its own config, host key, port, pid file and
log, all under its own work directory. It only ever listens on the loopback address, accepts only
public keys listed in `<workdir>/authorized_keys/<user>`, and is stopped by its own pid.

Stdlib and subprocess only: the transport (Paramiko) is for talking *to* these servers.

Raises `SshdUnavailable` (a FleetError) when sshd is not installed or will not start; callers such
as the demo turn that into a plain explanation and a fallback.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple, Union

from fleet.errors import FleetError

SSHD_BINARY = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
PRIVSEP_DIR = Path("/run/sshd")
LOOPBACK = "127.0.0.1"
DEFAULT_USERS = ("root", "fleet-test")


class SshdUnavailable(FleetError):
    """sshd is missing or could not be started; the message says why."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def make_keypair(path: Union[str, Path], comment: str = "fleet") -> Path:
    """Create an ed25519 key pair without passphrase at `path` and `path`.pub; return `path`.

    An existing pair at that path is replaced. Raises SshdUnavailable when ssh-keygen is missing
    or fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in (path, path.with_name(path.name + ".pub")):
        if old.exists():
            old.unlink()
    try:
        subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                       check=True, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise SshdUnavailable("ssh-keygen is not installed (Debian: apt-get install openssh-client)") from exc
    except subprocess.CalledProcessError as exc:
        raise SshdUnavailable(f"ssh-keygen failed for {path}: {exc.stderr.strip()}") from exc
    return path


def public_key_line(pub_path: Union[str, Path]) -> str:
    """Return "TYPE BASE64" of an OpenSSH .pub file (the comment is dropped)."""
    fields = Path(pub_path).read_text().split()
    return f"{fields[0]} {fields[1]}"


KnownHostEntry = Union["SshdServer", Tuple[str, int, str]]


def known_hosts_line(address: str, port: int, key_line: str) -> str:
    """One known_hosts line: `[127.0.0.1]:PORT ssh-ed25519 AAAA...` (bare address on port 22)."""
    host = address if port == 22 else f"[{address}]:{port}"
    return f"{host} {key_line}"


def write_known_hosts(path: Union[str, Path], entries: Iterable[KnownHostEntry]) -> Path:
    """Write a known_hosts file for `entries` (SshdServer objects or (address, port, key_line)).

    Mode 0644: it holds only public keys and must be readable by unprivileged test users.
    """
    lines = []
    for entry in entries:
        if isinstance(entry, SshdServer):
            lines.append(known_hosts_line(LOOPBACK, entry.port, entry.host_public_key_line()))
        else:
            address, port, key_line = entry
            lines.append(known_hosts_line(address, int(port), key_line))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    path.chmod(0o644)
    return path


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != b"Z"


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _descendants(pid: int) -> list:
    """Every process below `pid` as (pid, start time): its children, theirs, and so on."""
    parents, started = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if len(fields) > 19:
            parents[int(entry)], started[int(entry)] = int(fields[1]), fields[19]
    found, frontier = [], {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found += [(child, started[child]) for child in sorted(frontier)]
    return found


def _same_process_alive(pid: int, start: bytes) -> bool:
    """True while `pid` runs and is still the process that started at `start` (no reused pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != b"Z" and fields[19] == start


def stop_sshd_pid(pid: int, config_path: Union[str, Path, None] = None, timeout: float = 5.0) -> bool:
    """Stop the sshd listener `pid` and every process under it (connections and the commands they
    run), waiting until they are gone; True if it was running.

    With `config_path`, the pid is only signalled when its command line names that config: a pid
    recorded long ago may belong to another program by now, and that one must not be touched.
    """
    if not pid_alive(pid):
        return False
    cmdline = _cmdline(pid)
    if "sshd" not in cmdline or (config_path is not None and str(config_path) not in cmdline):
        return False
    # Connection processes call setsid(), so killing the listener's group would miss them; and
    # what a connection runs (a shell, its `sleep 30`) outlives its connection process: without a
    # tty nothing hangs it up. So the whole tree, collected first (a killed parent's children are
    # handed to init and could no longer be found).
    tree = _descendants(pid)
    for child, _ in tree:
        try:
            os.kill(child, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.02)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        while pid_alive(pid):
            _reap(pid)
            time.sleep(0.02)
    _reap(pid)
    _wait_gone(tree, deadline)
    return True


def _wait_gone(tree: list, deadline: float) -> None:
    """Wait until no process of `tree` runs (init reaps them, they are not ours); SIGKILL at `deadline`."""
    while any(_same_process_alive(*p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid, start in tree:
        if _same_process_alive(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    while any(_same_process_alive(*p) for p in tree):
        time.sleep(0.02)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class SshdServer:
    """One sshd on 127.0.0.1 with everything it needs under `workdir`.

    `authorized_keys`: public key lines allowed to log in; they are written for every user in
    `users` to `<workdir>/authorized_keys/<user>`. Those files and their folders are made
    world-readable, because sshd reads them with the target user's uid: put `workdir` somewhere
    that user can traverse (not under a 0700 directory) when logging in as a non-root user.
    `log_level`: sshd's LogLevel; "DEBUG" logs every channel request, so a test can count execs.
    `detach`: start sshd in its own session so it outlives this Python process (the demo).
    """

    def __init__(self, workdir: Union[str, Path], port: Optional[int] = None, log_level: str = "VERBOSE",
                 authorized_keys: Sequence[str] = (), users: Sequence[str] = DEFAULT_USERS,
                 detach: bool = False, env: Optional[dict] = None):
        self.workdir = Path(workdir).resolve()
        self._requested_port = port
        self.port: Optional[int] = port
        self.log_level = log_level
        self.authorized_keys = list(authorized_keys)
        self.users = list(users)
        self.detach = detach
        self.env = dict(env or {})      # more SetEnv for the logins (e.g. OPENCLAW_STATE_DIR)
        self.process: Optional[subprocess.Popen] = None
        self.config_path = self.workdir / "sshd_config"
        self.host_key_path = self.workdir / "ssh_host_ed25519_key"
        self.pid_file = self.workdir / "sshd.pid"
        self.log_path = self.workdir / "sshd.log"
        self.cache_dir = self.workdir / "cache"

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process else None

    def host_public_key_line(self) -> str:
        """"ssh-ed25519 AAAA..." of this server's host key."""
        return public_key_line(self.host_key_path.with_name(self.host_key_path.name + ".pub"))

    def config_text(self) -> str:
        """The sshd_config this server runs with."""
        return "\n".join([
            f"ListenAddress {LOOPBACK}",
            f"Port {self.port}",
            f"HostKey {self.host_key_path}",
            f"PidFile {self.pid_file}",
            f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}/%u",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            # Tests and the demo open many connections at once; the default 10:30:100 drops some.
            "MaxStartups 200:30:300",
            "MaxSessions 50",
            # Work dirs live in /tmp; StrictModes would refuse keys in group/world-writable parents.
            "StrictModes no",
            "PrintMotd no",
            "UseDNS no",
            "Subsystem sftp internal-sftp",
            f"LogLevel {self.log_level}",
            # Each server is one simulated machine: its logins get their own ~/.cache, so the
            # agent cache (~/.cache/fleet) is per host, as on a real fleet.
            "SetEnv " + " ".join(f'"{k}={v}"' for k, v in {"XDG_CACHE_HOME": self.cache_dir, **self.env}.items()),
            "",
        ])

    def _prepare(self) -> None:
        if not os.access(SSHD_BINARY, os.X_OK):
            raise SshdUnavailable(f"{SSHD_BINARY} is not installed (Debian: apt-get install openssh-server)")
        if not PRIVSEP_DIR.is_dir():
            try:
                PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
            except OSError as exc:
                raise SshdUnavailable(f"sshd needs {PRIVSEP_DIR} and it cannot be created: {exc}") from exc
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        if not self.host_key_path.exists():
            make_keypair(self.host_key_path, comment=f"fleet-sshd@{self.workdir.name}")
        self.cache_dir.mkdir(exist_ok=True)
        self.cache_dir.chmod(0o1777)   # root and fleet-test logins both write their agent cache here
        keys_dir = self.workdir / "authorized_keys"
        keys_dir.mkdir(exist_ok=True)
        keys_dir.chmod(0o755)
        body = "".join(line.strip() + "\n" for line in self.authorized_keys)
        for user in self.users:
            target = keys_dir / user
            target.write_text(body)
            target.chmod(0o644)

    def start(self, timeout: float = 10.0) -> "SshdServer":
        """Start sshd and wait until it answers with its SSH banner; return self.

        With no port given, a free one is picked, and picked again if another process took it in
        the meantime. Raises SshdUnavailable with sshd's own log lines when it will not start.
        """
        self._prepare()
        attempts = 1 if self._requested_port else 5
        last_error = ""
        for _ in range(attempts):
            self.port = self._requested_port or free_port()
            self.config_path.write_text(self.config_text())
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            if self.pid_file.exists():
                self.pid_file.unlink()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [SSHD_BINARY, "-D", "-e", "-f", str(self.config_path), "-E", str(self.log_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True,
                    start_new_session=self.detach)
            if self._wait_ready(timeout):
                return self
            last_error = self._log_tail(log_start)
            self.stop()
            if "Address already in use" not in last_error:
                break
        raise SshdUnavailable(f"sshd did not start on {LOOPBACK}:{self.port}: {last_error or 'no output'}")

    def _wait_ready(self, timeout: float) -> bool:
        # sshd writes its PidFile only after it has bound the port: without that check another
        # server on the same port could answer the banner for ours.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if not self._pid_file_is_ours():
                time.sleep(0.02)
                continue
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=1.0) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def _pid_file_is_ours(self) -> bool:
        try:
            return int(self.pid_file.read_text().strip() or 0) == self.process.pid
        except (OSError, ValueError):
            return False

    def _log_tail(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.splitlines()[-5:] if line.strip())

    def stop(self) -> None:
        """Stop exactly this server's sshd (and its connection processes); idempotent."""
        if self.process is None:
            return
        stop_sshd_pid(self.process.pid, self.config_path)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> "SshdServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc_info) -> None:
        self.stop()
