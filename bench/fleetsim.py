"""A simulated fleet: N hosts as Linux network namespaces, each with its own sshd and OpenClaw data.

    sudo .venv/bin/python bench/fleetsim.py up   --hosts 10 --rtt 40 --dir /tmp/fleetsim
    sudo .venv/bin/python bench/fleetsim.py down --dir /tmp/fleetsim

Each host `simNNN` is a namespace `fleetsim-NNN` joined to this machine by a veth pair, with
addresses from 10.213.0.0/16 (a private range used only inside this machine: nothing is routed
anywhere else). Its sshd listens inside the namespace. A round-trip delay comes from `tc netem`
where the kernel has it; this machine's kernel does not (CONFIG_NET_SCH_NETEM unset), so then a
delaying TCP relay (bench/delay_relay.py) runs in the namespace in front of sshd and holds every
byte RTT/2 each way. `up` checks the delay: the time to the SSH banner must be at least the RTT.

`up` writes `<dir>/inventory.toml` (strict host keys against a generated known_hosts) and
`<dir>/fleetsim.json` (namespaces, links and pids). `down` kills exactly those pids and deletes
exactly those namespaces (which removes their veth links). Needs root.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fleet.demo.gen import TINY_FLEET, generate_host  # noqa: E402
from fleet.demo.sshd import (SshdServer, known_hosts_line, make_keypair, pid_alive, public_key_line,  # noqa: E402
                        stop_sshd_pid)

NET = ipaddress.ip_network("10.213.0.0/16")
SSHD_INNER_PORT = 2222


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def host_addresses(index: int) -> tuple[str, str]:
    """(this machine's side, the namespace's side) of host `index`'s /30 link."""
    base = int(NET.network_address) + 4 * index
    return str(ipaddress.ip_address(base + 1)), str(ipaddress.ip_address(base + 2))


def netem_available() -> bool:
    """True when `tc ... netem` works here (checked in a throwaway namespace)."""
    ns = f"fleetsim-probe-{os.getpid()}"
    _ip("netns", "add", ns)
    try:
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        probe = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root",
                                "netem", "delay", "1ms"], capture_output=True, text=True)
        return probe.returncode == 0
    finally:
        _ip("netns", "del", ns, check=False)


class NamespaceSshd(SshdServer):
    """An sshd started inside a network namespace, listening on `listen` (address, port)."""

    def __init__(self, workdir: Path, namespace: str, listen: tuple[str, int], reach: tuple[str, int], **kw):
        super().__init__(workdir, port=listen[1], **kw)
        self.namespace = namespace
        self.listen = listen
        self.reach = reach      # where this machine reaches it (through the relay, if any)

    def config_text(self) -> str:
        return super().config_text().replace("ListenAddress 127.0.0.1", f"ListenAddress {self.listen[0]}")

    def start(self, timeout: float = 10.0) -> "NamespaceSshd":
        self._prepare()
        self.config_path.write_text(self.config_text())
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, "/usr/sbin/sshd", "-D", "-e", "-f", str(self.config_path),
                 "-E", str(self.log_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.pid_file.exists():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"sshd in {self.namespace} did not start: see {self.log_path}")


def banner_seconds(address: str, port: int, timeout: float = 10.0) -> float:
    """Seconds from connect() to the first bytes of the SSH banner."""
    t0 = time.perf_counter()
    with socket.create_connection((address, port), timeout=timeout) as sock:
        data = sock.recv(64)
    if not data.startswith(b"SSH-"):
        raise RuntimeError(f"{address}:{port} answered {data!r}, not an SSH banner")
    return time.perf_counter() - t0


def up(hosts: int, rtt_ms: float, directory: Path, data: bool = True, user: str = "root") -> dict:
    """Bring the fleet up; every tool logs in to every host as `user`.

    All simulated hosts are this machine, so they share its accounts: a user whose login shell
    runs a heavy ~/.bashrc on every non-interactive ssh command (this machine's root runs
    `pyenv init` there, ~150 ms of CPU per session) makes every host look slow. Another user
    (`--user fleet-test`: Debian's skeleton .bashrc returns at once when not interactive) owns
    the state dirs, so its agents can read them.
    """
    if os.geteuid() != 0:
        raise SystemExit("fleetsim needs root: it creates network namespaces and veth links (run with sudo)")
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise SystemExit(f"fleetsim: no user {user!r} on this machine to log in as: create it "
                         "(`scripts/setup.sh test` creates fleet-test) or pass another --user")
    if (directory / "fleetsim.json").exists():
        down(directory)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    client_key = make_keypair(directory / "client_key", comment="fleetsim")
    client_pub = public_key_line(str(client_key) + ".pub")
    use_netem = rtt_ms > 0 and netem_available()
    now_ms = int(time.time() * 1000)
    record: dict = {"hosts": [], "rtt_ms": rtt_ms, "user": user,
                    "delay": "none" if rtt_ms <= 0 else ("netem" if use_netem else "relay")}
    known, inventory = [], ["[defaults]", f'user = "{user}"', f'identity_file = "{client_key}"',
                            f'known_hosts = "{directory / "known_hosts"}"', "connect_timeout = 30", ""]
    try:
        for i in range(hosts):
            name, ns, veth = f"sim{i:03d}", f"fleetsim-{i:03d}", f"fsim{i:03d}"
            outer, inner = host_addresses(i)
            entry = {"name": name, "namespace": ns, "link": veth, "address": inner, "pids": []}
            record["hosts"].append(entry)
            _ip("netns", "add", ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("addr", "add", f"{outer}/30", "dev", veth)
            _ip("link", "set", veth, "up")
            for args in (("ip", "addr", "add", f"{inner}/30", "dev", "eth0"), ("ip", "link", "set", "eth0", "up"),
                         ("ip", "link", "set", "lo", "up")):
                _ip("netns", "exec", ns, *args)
            if use_netem:
                subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                                "delay", f"{rtt_ms / 2}ms"], check=True)
                subprocess.run(["tc", "qdisc", "add", "dev", veth, "root", "netem", "delay", f"{rtt_ms / 2}ms"],
                               check=True)
            relayed = rtt_ms > 0 and not use_netem
            listen = ("127.0.0.1", SSHD_INNER_PORT) if relayed else (inner, 22)
            state = directory / name / "state"
            if data:
                generate_host(state, TINY_FLEET[i % len(TINY_FLEET)], seed=i, now_ms=now_ms)
            else:
                state.mkdir(parents=True)
            if user != "root":
                subprocess.run(["chown", "-R", f"{user}:", str(state)], check=True)
            server = NamespaceSshd(directory / name / "sshd", ns, listen, (inner, 22), authorized_keys=[client_pub],
                                   users=(user,), log_level="ERROR")
            server.start()
            entry["pids"].append(server.pid)
            entry["sshd_config"] = str(server.config_path)
            if relayed:
                relay = subprocess.Popen(
                    ["ip", "netns", "exec", ns, sys.executable, str(REPO / "bench" / "delay_relay.py"), inner, "22",
                     "127.0.0.1", str(SSHD_INNER_PORT), str(rtt_ms)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True)
                entry["pids"].append(relay.pid)
            _wait_banner(inner, 22)
            known.append(known_hosts_line(inner, 22, server.host_public_key_line()))
            inventory += [f"[hosts.{name}]", f'address = "{inner}"', f'state_dir = "{state}"', ""]
        (directory / "known_hosts").write_text("\n".join(known) + "\n")
        (directory / "inventory.toml").write_text("\n".join(inventory))
        if rtt_ms > 0:
            measured = banner_seconds(record["hosts"][0]["address"], 22)
            record["banner_s"] = measured
            if measured * 1000 < rtt_ms:
                raise RuntimeError(f"delay check failed: banner after {measured * 1000:.1f} ms, RTT {rtt_ms} ms")
    finally:
        (directory / "fleetsim.json").write_text(json.dumps(record, indent=2))
    return record


def _wait_banner(address: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            banner_seconds(address, port, timeout=timeout)
            return
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def down(directory: Path) -> int:
    """Kill exactly the recorded pids, delete exactly the recorded namespaces; return how many hosts."""
    path = directory / "fleetsim.json"
    if not path.exists():
        return 0
    record = json.loads(path.read_text())
    for entry in record["hosts"]:
        pids = entry.get("pids", [])
        if pids:
            stop_sshd_pid(pids[0], entry.get("sshd_config"))
        for pid in pids[1:]:
            if pid_alive(pid):
                try:
                    os.kill(pid, 15)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
        _ip("netns", "del", entry["namespace"], check=False)
        _ip("link", "del", entry["link"], check=False)
    path.unlink()
    return len(record["hosts"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="create the simulated fleet")
    p_up.add_argument("--hosts", type=int, default=10)
    p_up.add_argument("--rtt", type=float, default=0.0, help="round trip in ms")
    p_up.add_argument("--dir", type=Path, default=Path("/tmp/fleetsim"))
    p_up.add_argument("--no-data", action="store_true", help="empty state dirs (transport-only runs)")
    p_up.add_argument("--user", default="root", help="the account every tool logs in as (default root; see up())")
    p_down = sub.add_parser("down", help="tear it down (exactly what up started)")
    p_down.add_argument("--dir", type=Path, default=Path("/tmp/fleetsim"))
    args = parser.parse_args(argv)
    if args.cmd == "up":
        rec = up(args.hosts, args.rtt, args.dir, data=not args.no_data, user=args.user)
        print(f"{len(rec['hosts'])} hosts up, delay by {rec['delay']}"
              + (f", banner after {rec['banner_s'] * 1000:.0f} ms" if "banner_s" in rec else "")
              + f"; inventory: {args.dir / 'inventory.toml'}")
    else:
        print(f"{down(args.dir)} hosts down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
