"""A fleet of real OpenSSH servers on loopback, for transport and end-to-end tests.

`SshFleet.start(n, user=...)` starts `n` sshd processes on free 127.0.0.1 ports, each with its own
host key and its own (empty or populated) OpenClaw state dir, one client key for all of them, a
generated known_hosts and an `inventory.toml` that uses only the contract's keys. Everything lives in
one directory made with `tempfile.mkdtemp(dir="/tmp")` (mode 0755), not under pytest's 0700
tmp_path, so the unprivileged `fleet-test` user can read its keys and own its state dirs.

Use it through the `ssh_fleet` fixture in conftest.py: `fleet = ssh_fleet(3, user="fleet-test")`.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from fleet.demo.sshd import LOOPBACK, SshdServer, make_keypair, public_key_line, write_known_hosts

TEST_USER = "fleet-test"
Populate = Callable[[Path, int], object]
# The clock generated test data is relative to (2026-11-18); pass it as the plan's now_ms.
GEN_NOW_MS = 1_795_000_000_000


def generated(hosts=None, seed: int = 1, now_ms: int = GEN_NOW_MS) -> Populate:
    """A `populate` callable: host i gets `hosts[i % len(hosts)]` (default: fleet.demo.gen.TINY_FLEET).

        fleet = ssh_fleet(2, populate=generated())      # small but complete OpenClaw state per host
    """
    from fleet.demo.gen import TINY_FLEET, generate_host

    specs = tuple(hosts or TINY_FLEET)

    def populate(state_dir: Path, index: int) -> None:
        generate_host(state_dir, specs[index % len(specs)], seed, now_ms)

    return populate


@dataclass
class FleetHost:
    """One host of the test fleet."""

    name: str
    address: str
    port: int
    state_dir: Path
    server: SshdServer

    @property
    def log(self) -> Path:
        """sshd's log file (LogLevel DEBUG shows every exec channel)."""
        return self.server.log_path


def ensure_login_allowed(user: str) -> None:
    """Make `user`'s account loginable by key with `UsePAM no`.

    `useradd` leaves the password field as "!", which sshd (without PAM) reads as a locked account
    and refuses even public-key logins. "*" means "no password" without the lock. Idempotent.
    """
    if user == "root" or os.geteuid() != 0:
        return
    with open("/etc/shadow") as f:
        for line in f:
            fields = line.split(":")
            if fields[0] == user and fields[1].startswith("!"):
                break
        else:
            return
    for _ in range(50):
        done = subprocess.run(["usermod", "-p", "*", user], capture_output=True, text=True)
        if done.returncode == 0:
            return
        time.sleep(0.1)  # another test process holds the passwd lock
    raise RuntimeError(f"cannot unlock {user} for key logins: {done.stderr.strip()}")


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.lchown(os.path.join(folder, name), uid, gid)


class SshFleet:
    """N running sshd hosts plus the files a controller needs to reach them."""

    def __init__(self, base: Path, user: str):
        self.base = base
        self.user = user
        self.hosts: List[FleetHost] = []
        self.identity_file = base / "client_key"
        self.known_hosts = base / "known_hosts"
        self.inventory = base / "inventory.toml"

    @classmethod
    def start(cls, n: int, user: str = "root", populate: Optional[Populate] = None,
              log_level: str = "VERBOSE", names: Optional[Sequence[str]] = None,
              state_env: bool = False) -> "SshFleet":
        """Start the fleet; on any failure, stop what was started and re-raise.

        `state_env`: each host's logins get OPENCLAW_STATE_DIR=<its state dir> (sshd SetEnv), as on
        a machine where OpenClaw's state dir was moved; the inventory then needs no state_dir."""
        base = Path(tempfile.mkdtemp(prefix="fleet-sshfleet-", dir="/tmp"))
        base.chmod(0o755)
        fleet = cls(base, user)
        try:
            fleet._build(n, populate, log_level, list(names) if names else [f"host{i + 1}" for i in range(n)],
                         state_env)
        except BaseException:
            fleet.close()
            raise
        return fleet

    def _build(self, n: int, populate: Optional[Populate], log_level: str, names: List[str],
               state_env: bool = False) -> None:
        if len(names) != n:
            raise ValueError(f"{n} hosts but {len(names)} names")
        ensure_login_allowed(TEST_USER)
        owner = pwd.getpwnam(self.user)
        make_keypair(self.identity_file, comment="fleet-test-client")
        client_key = public_key_line(self.identity_file.with_name("client_key.pub"))
        for i, name in enumerate(names):
            host_dir = self.base / "hosts" / name
            state_dir = host_dir / "state"
            state_dir.mkdir(parents=True)
            if populate is not None:
                populate(state_dir, i)
            if self.user != "root":
                _chown_tree(state_dir, owner.pw_uid, owner.pw_gid)
            host_dir.chmod(0o755)
            (self.base / "hosts").chmod(0o755)
            # Both accounts accept the client key, so a test can also look as root (or as the user).
            server = SshdServer(host_dir / "sshd", log_level=log_level, authorized_keys=[client_key],
                                users=sorted({"root", TEST_USER, self.user}),
                                env={"OPENCLAW_STATE_DIR": str(state_dir)} if state_env else None)
            self.hosts.append(FleetHost(name, LOOPBACK, 0, state_dir, server))
            server.start()
            self.hosts[-1].port = server.port
        if self.user != "root":
            os.chown(self.identity_file, owner.pw_uid, owner.pw_gid)
        write_known_hosts(self.known_hosts, [h.server for h in self.hosts])
        self.write_inventory()

    def write_inventory(self, extra_defaults: str = "") -> Path:
        """(Re)write inventory.toml for the fleet; `extra_defaults` is appended to [defaults]."""
        lines = ["[defaults]",
                 f'user = "{self.user}"',
                 f'identity_file = "{self.identity_file}"',
                 f'known_hosts = "{self.known_hosts}"']
        if extra_defaults:
            lines.append(extra_defaults.rstrip("\n"))
        for host in self.hosts:
            lines += ["", f"[hosts.{host.name}]",
                      f'address = "{host.address}"',
                      f"port = {host.port}",
                      f'state_dir = "{host.state_dir}"']
        self.inventory.write_text("\n".join(lines) + "\n")
        self.inventory.chmod(0o644)
        return self.inventory

    def host(self, name: str) -> FleetHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def stop(self, name: str) -> None:
        """Stop one host's sshd (a host that is down); the port stays in the inventory."""
        self.host(name).server.stop()

    @property
    def pids(self) -> List[int]:
        return [h.server.pid for h in self.hosts if h.server.pid]

    def close(self) -> None:
        """Stop every sshd of this fleet by pid, then remove its directory."""
        for host in self.hosts:
            host.server.stop()
        shutil.rmtree(self.base, ignore_errors=True)
