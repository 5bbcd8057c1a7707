"""Fleet against the tools users would pick instead: same job, same simulated fleet, same run.

    sh bench/setup-peers.sh                                   # once: the peers' own venv
    sudo .venv/bin/python bench/peers.py [--hosts 50] [--rtt 40] [--reps 3]

The job, on every host: push the exported fleet agent (`fleet agent export`) and run its scan of
that host's OpenClaw state (`python3 agent.pyz scan --state-dir STATE`), collecting the JSON it
prints. Tools, run round-robin per repetition (a b c d e f a b c ...), each as ONE subprocess
timed from its start to its exit, with its CPU (user+sys, children included) from
RUSAGE_CHILDREN around it:

  a. ssh loop      one `ssh` per host, one after the other, agent on stdin (how it is done by hand)
  b. parallel ssh  the same N `ssh` processes, all at once (`&` + `wait`)
  c. ansible       `ansible-playbook`, `script` module (executable=python3), forks=N, pipelining on,
                   host_key_checking on, ControlMaster=auto + ControlPersist=60s as Ansible ships them
                   (its default -C compression left out, as for every other tool)
  d. pyinfra       `pyinfra -y --parallel N`: files.put of the agent + server.shell running it
  e. asyncssh      a bare asyncio script: one connection per host, agent on stdin (a subprocess too)
  f. fleet         `python -m fleet scan -i INVENTORY --json --forks N`

Every tool checks host keys strictly against the generated known_hosts. a, b and e send the agent
on the channel's stdin into a temp file and run it there (one connection per host); c pushes it
every run (the script module); d and f push it once and skip it while it is unchanged (pyinfra
compares the remote file's sha1, fleet caches by sha256 in ~/.cache/fleet). One warm-up run of
every tool precedes the measured ones, so both caches are warm for the measurement.

Ansible's ControlPersist master ssh processes outlive ansible-playbook: this script is the
child subreaper, ends exactly those masters (by pid, after the run) and counts their CPU with
Ansible's. Needs root (network namespaces); the peers come from bench/.venv-peers.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import fleetsim  # noqa: E402
from common import emit, machine, markdown_table  # noqa: E402

PEERS_VENV = REPO / "bench" / ".venv-peers"
PEERS_BIN = PEERS_VENV / "bin"
TOOLS = ("ssh loop", "parallel ssh", "ansible", "pyinfra", "asyncssh", "fleet")

# Targets from issue 7 (N = 50 at 40 ms RTT): fleet's speed-up over a tool must be at least ...
SPEEDUP_TARGETS = {"ansible": 5.0, "pyinfra": 2.0}
ASYNCSSH_WITHIN = 1.2          # fleet's wall <= 1.2 x bare asyncssh
CPU_MS_PER_HOST_TARGET = 20.0

ASYNCSSH_JOB = r'''
"""Bare asyncssh: one connection per host, the agent on stdin, known_hosts checked."""
import asyncio, json, sys
import asyncssh

async def one(host, agent, key, known_hosts):
    async with asyncssh.connect(host["address"], port=22, username=host["user"], client_keys=[key],
                                known_hosts=known_hosts, agent_path=None, config=[]) as conn:
        result = await conn.run(host["command"], input=agent, encoding=None)
        json.loads(result.stdout)
        return result.exit_status

async def main():
    spec = json.load(open(sys.argv[1]))
    agent = open(spec["agent"], "rb").read()
    key = asyncssh.read_private_key(spec["key"])
    codes = await asyncio.gather(*(one(h, agent, key, spec["known_hosts"]) for h in spec["hosts"]),
                                 return_exceptions=True)
    bad = [(h["name"], c) for h, c in zip(spec["hosts"], codes) if c not in (0, 1)]
    for name, code in bad:
        print(name, repr(code), file=sys.stderr)
    sys.exit(1 if bad else 0)

asyncio.run(main())
'''

PYINFRA_DEPLOY = r'''
from pyinfra import host
from pyinfra.operations import files, server

dest = "/tmp/fleet-bench-agent-%s-%s.pyz" % (host.data.ssh_user, host.name)
files.put(name="push the fleet agent", src=host.data.agent, dest=dest, mode="600")
server.shell(name="run the agent's scan",
             commands=["python3 %s scan --state-dir %s" % (dest, host.data.state_dir)])
'''

ANSIBLE_PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: push and run the fleet agent's scan
      script:
        cmd: "{{ agent }} scan --state-dir {{ state_dir }}"
        executable: python3
"""


def remote_job(state_dir: str) -> str:
    """The per-host command of a, b, e: agent from stdin into a temp file, run it, remove it."""
    return ('f=$(mktemp) && cat > "$f" && python3 "$f" scan --state-dir ' + shlex.quote(state_dir)
            + '; rc=$?; rm -f "$f"; exit $rc')


class Subreaper:
    """Make orphaned descendants our children, to end and count them (or not).

    Two kinds arrive: a tool's ssh ControlPersist masters (Ansible's), which are ended and counted
    with that tool; and the simulated hosts' own processes, because their sshd were started from
    this process: with a non-root login, OpenSSH's per-connection monitor can exit before the
    session's user process, which then comes to us. Those run inside a host's network namespace;
    they are reaped once they end and their CPU (the agent's too) is taken back out of the tool's.
    """

    HZ = os.sysconf("SC_CLK_TCK")

    def __init__(self, keep: set[int]):
        self.keep = keep
        self.my_netns = os.readlink("/proc/self/ns/net")
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(36, 1, 0, 0, 0) != 0:       # PR_SET_CHILD_SUBREAPER
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")

    def adopted(self) -> list[int]:
        me, pids = os.getpid(), []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in self.keep:
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                pids.append(int(entry))
        return pids

    def _host_side(self, pid: int) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/ns/net") != self.my_netns
        except OSError:
            # A zombie has no namespace link any more; one that is not an ssh client is a host's.
            try:
                return Path(f"/proc/{pid}/comm").read_text().strip() != "ssh"
            except OSError:
                return False

    def end_adopted(self, settle_s: float = 5.0) -> float:
        """End our adopted ssh masters; reap the hosts' processes once they have ended. Returns
        the CPU seconds of the hosts' processes reaped, to take out of the tool's."""
        foreign = 0.0
        deadline = time.monotonic() + settle_s
        pending = {pid: self._host_side(pid) for pid in self.adopted()}
        while pending:
            for pid, host_side in list(pending.items()):
                if not host_side:
                    try:
                        os.kill(pid, signal.SIGTERM)
                        os.waitpid(pid, 0)
                    except (ProcessLookupError, ChildProcessError):
                        pass
                    del pending[pid]
                    continue
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    del pending[pid]
                    continue
                if fields[0] == "Z":
                    foreign += sum(int(f) for f in fields[11:15]) / self.HZ   # utime stime cutime cstime
                    try:
                        os.waitpid(pid, 0)
                    except ChildProcessError:
                        pass
                    del pending[pid]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return foreign


def timed(cmd: list[str], env: dict, reaper: Subreaper, cwd: Path) -> tuple[float, float, int, str]:
    """(wall s, CPU s of the process tree, exit code, stderr tail)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    foreign = reaper.end_adopted()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) - foreign
    tail = (proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace")[-800:])[-1500:]
    return wall, cpu, proc.returncode, tail


class Job:
    """Writes every tool's inputs for one simulated fleet, and knows how to start each tool."""

    def __init__(self, sim_dir: Path, work: Path, hosts: list[dict], forks: int, user: str = "root"):
        self.sim, self.work, self.hosts, self.forks, self.user = sim_dir, work, hosts, forks, user
        self.key, self.known = sim_dir / "client_key", sim_dir / "known_hosts"
        self.agent = work / "agent.pyz"
        self.fleet_state = work / "fleet-state"
        self.fleet_state.mkdir()
        subprocess.run([sys.executable, "-m", "fleet", "agent", "export", str(self.agent)], cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), check=True, stdout=subprocess.DEVNULL)
        self.ssh_opts = ["-F", "/dev/null", "-i", str(self.key), "-o", f"UserKnownHostsFile={self.known}",
                         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=no",
                         "-o", "LogLevel=ERROR"]
        self._write_ssh_scripts()
        self._write_ansible()
        self._write_pyinfra()
        self._write_asyncssh()
        self.rep = 0

    def _ssh_line(self, i: int, host: dict) -> str:
        out = self.work / "out" / f"{host['name']}.json"
        return " ".join(["ssh", *map(shlex.quote, self.ssh_opts), f"{self.user}@{host['address']}",
                         shlex.quote(remote_job(host["state_dir"])), "<", shlex.quote(str(self.agent)),
                         ">", shlex.quote(str(out))])

    def _write_ssh_scripts(self) -> None:
        (self.work / "out").mkdir()
        seq = ["#!/bin/sh", "rc=0"] + [f"{self._ssh_line(i, h)} || rc=1" for i, h in enumerate(self.hosts)]
        (self.work / "ssh_loop.sh").write_text("\n".join(seq + ["exit $rc", ""]))
        par = ["#!/bin/sh", "rc=0", "pids="]
        for i, h in enumerate(self.hosts):
            par += [f"{self._ssh_line(i, h)} &", 'pids="$pids $!"']
        par += ["for p in $pids; do wait $p || rc=1; done", "exit $rc", ""]
        (self.work / "parallel_ssh.sh").write_text("\n".join(par))

    def _write_ansible(self) -> None:
        lines = ["[sim]"] + [f"{h['name']} ansible_host={h['address']} state_dir={shlex.quote(h['state_dir'])}"
                             for h in self.hosts]
        lines += ["", "[sim:vars]", f"agent={self.agent}"]
        (self.work / "ansible_hosts.ini").write_text("\n".join(lines) + "\n")
        (self.work / "playbook.yml").write_text(ANSIBLE_PLAYBOOK)

    def ansible_cfg(self, control_dir: Path) -> Path:
        cfg = self.work / "ansible.cfg"
        ssh_args = (f"-F /dev/null -o UserKnownHostsFile={self.known} -o StrictHostKeyChecking=yes "
                    f"-o ControlMaster=auto -o ControlPersist=60s")
        cfg.write_text(f"""[defaults]
inventory = {self.work / 'ansible_hosts.ini'}
forks = {self.forks}
host_key_checking = True
gathering = explicit
remote_user = {self.user}
private_key_file = {self.key}
interpreter_python = /usr/bin/python3
local_tmp = {self.work / 'ansible-local'}
retry_files_enabled = False

[ssh_connection]
pipelining = True
ssh_args = {ssh_args}
control_path_dir = {control_dir}
""")
        return cfg

    def _write_pyinfra(self) -> None:
        hosts = [(h["address"], {"ssh_user": self.user, "ssh_key": str(self.key), "ssh_known_hosts_file": str(self.known),
                                 "ssh_strict_host_key_checking": "yes", "state_dir": h["state_dir"],
                                 "agent": str(self.agent)}) for h in self.hosts]
        (self.work / "pyinfra_inventory.py").write_text(f"sim = {hosts!r}\n")
        (self.work / "pyinfra_deploy.py").write_text(PYINFRA_DEPLOY)

    def _write_asyncssh(self) -> None:
        (self.work / "asyncssh_job.py").write_text(ASYNCSSH_JOB)
        spec = {"agent": str(self.agent), "key": str(self.key), "known_hosts": str(self.known),
                "hosts": [dict(h, command=remote_job(h["state_dir"]), user=self.user) for h in self.hosts]}
        (self.work / "asyncssh_hosts.json").write_text(json.dumps(spec))

    def command(self, tool: str) -> tuple[list[str], dict]:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if tool == "ssh loop":
            return ["/bin/sh", str(self.work / "ssh_loop.sh")], env
        if tool == "parallel ssh":
            return ["/bin/sh", str(self.work / "parallel_ssh.sh")], env
        if tool == "ansible":
            self.rep += 1
            control = self.work / f"cp{self.rep}"      # a fresh ControlPath: no connection from a previous run
            control.mkdir()
            env.update(ANSIBLE_CONFIG=str(self.ansible_cfg(control)), ANSIBLE_HOME=str(self.work / "ansible-home"),
                       ANSIBLE_NOCOLOR="1")
            return [str(PEERS_BIN / "ansible-playbook"), str(self.work / "playbook.yml")], env
        if tool == "pyinfra":
            return [str(PEERS_BIN / "pyinfra"), "-y", "--parallel", str(self.forks),
                    str(self.work / "pyinfra_inventory.py"), str(self.work / "pyinfra_deploy.py")], env
        if tool == "asyncssh":
            return [str(PEERS_BIN / "python"), str(self.work / "asyncssh_job.py"),
                    str(self.work / "asyncssh_hosts.json")], env
        if tool == "fleet":
            env.update(FLEET_STATE_DIR=str(self.fleet_state), PYTHONPATH=str(REPO))
            return [sys.executable, "-m", "fleet", "scan", "-i", str(self.sim / "inventory.toml"), "--json",
                    "--forks", str(self.forks)], env
        raise ValueError(tool)

    def check_outputs(self, tool: str) -> None:
        """a and b: every host's output must be the agent's JSON (a run that did nothing is no run)."""
        if tool not in ("ssh loop", "parallel ssh"):
            return
        for h in self.hosts:
            out = self.work / "out" / f"{h['name']}.json"
            json.loads(out.read_text())
            out.unlink()


def versions() -> dict[str, str]:
    peer = subprocess.run([str(PEERS_BIN / "python"), "-c", (
        "import json, sys\nfrom importlib.metadata import version\n"
        "print(json.dumps({**{n: version(n) for n in ('ansible-core', 'pyinfra', 'asyncssh', 'paramiko')},"
        " 'python': sys.version.split()[0]}))")], capture_output=True, text=True, check=True)
    peers = json.loads(peer.stdout)
    from importlib.metadata import version
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return {"fleet python": platform.python_version(), "paramiko (fleet)": version("paramiko"),
            "fabric (fleet)": version("fabric"), "peers python": peers["python"],
            "ansible-core": peers["ansible-core"], "pyinfra": peers["pyinfra"],
            "paramiko (pyinfra)": peers["paramiko"], "asyncssh": peers["asyncssh"], "OpenSSH": ssh}


def target_text(tool: str, fleet_wall: float, wall: float, fleet_cpu_ms: float) -> str:
    if tool in SPEEDUP_TARGETS:
        need = SPEEDUP_TARGETS[tool]
        return f"fleet >= {need:g}x faster: {'met' if wall / fleet_wall >= need else 'MISSED'}"
    if tool == "asyncssh":
        return f"fleet within {ASYNCSSH_WITHIN:g}x: {'met' if fleet_wall <= ASYNCSSH_WITHIN * wall else 'MISSED'}"
    if tool == "fleet":
        return (f"CPU <= {CPU_MS_PER_HOST_TARGET:g} ms/host: "
                f"{'met' if fleet_cpu_ms <= CPU_MS_PER_HOST_TARGET else 'MISSED'}")
    return ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--rtt", type=float, default=40.0, help="round trip in ms")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of: " + ", ".join(TOOLS))
    ap.add_argument("--dir", type=Path, default=Path("/tmp/fleetsim-peers"))
    ap.add_argument("--markdown", type=Path, help="also write the result table to this file")
    ap.add_argument("--user", default="root", help="the account every tool logs in as on the simulated hosts "
                    "(they are all this machine: see fleetsim.up on a heavy ~/.bashrc)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("peers needs root: the simulated fleet is network namespaces (run with sudo)")
    if not (PEERS_BIN / "python").exists():
        raise SystemExit(f"no peers venv at {PEERS_VENV}: run sh bench/setup-peers.sh first")
    tools = [t.strip() for t in args.tools.split(",")]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        raise SystemExit(f"unknown tools: {', '.join(sorted(unknown))}")
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rec = fleetsim.up(args.hosts, args.rtt, args.dir, user=args.user)
    work = Path(tempfile.mkdtemp(prefix="fleet-peers-"))
    keep = {pid for h in rec["hosts"] for pid in h["pids"]}
    reaper = Subreaper(keep)
    samples: dict[str, list[tuple[float, float, int]]] = {t: [] for t in tools}
    try:
        hosts = [{"name": h["name"], "address": h["address"], "state_dir": str(args.dir / h["name"] / "state")}
                 for h in rec["hosts"]]
        job = Job(args.dir, work, hosts, forks=args.hosts, user=args.user)
        for rep in range(args.reps + 1):           # repetition 0 is the warm-up, not counted
            for tool in tools:
                cmd, env = job.command(tool)
                wall, cpu, code, tail = timed(cmd, env, reaper, work)
                ok = code in (0, 1) if tool == "fleet" else code == 0
                if ok:
                    try:
                        job.check_outputs(tool)
                    except (OSError, ValueError) as exc:
                        ok, tail = False, f"output check failed: {exc}"
                print(f"{'warm-up' if rep == 0 else f'rep {rep}'}: {tool:13s} {wall:7.2f} s  "
                      f"{cpu * 1000 / args.hosts:6.1f} ms CPU/host  exit {code}", file=sys.stderr, flush=True)
                if not ok:
                    print(f"  {tool} failed:\n{tail}", file=sys.stderr)
                if rep > 0:
                    samples[tool].append((wall, cpu, code if ok else -1))
    finally:
        reaper.end_adopted()
        fleetsim.down(args.dir)
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    med = {t: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v) * 1000 / args.hosts)
           for t, v in samples.items()}
    fleet_wall, fleet_cpu = med.get("fleet", (float("nan"), float("nan")))
    rows = []
    for tool in tools:
        wall, cpu_ms = med[tool]
        rows.append([tool, f"{wall:.2f}", f"{wall / fleet_wall:.2f}", f"{cpu_ms:.1f}",
                     ",".join(str(s[2]) for s in samples[tool]), target_text(tool, fleet_wall, wall, fleet_cpu)])
    headers = ["tool", "wall s (median)", "wall / fleet's", "controller CPU ms/host", "exit codes", "target (issue 7)"]
    out = [f"peers: {args.hosts} hosts, RTT {args.rtt:g} ms (delay by {rec['delay']}), login user {args.user}, {args.reps} reps "
           f"interleaved after one warm-up each; {started}",
           f"machine: {machine()}; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}",
           "versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()), "", markdown_table(headers, rows)]
    text = "\n".join(out)
    emit(text, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
