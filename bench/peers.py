"""Fleet against the tools users would pick instead: same job, same host-side work, same run.

    sh bench/setup-peers.sh                                   # once: the peers' own venv
    sudo .venv/bin/python bench/peers.py --hosts 50 --rtt 40 --reps 3 --user fleet-test [--modes tree,zip]

The job, on every host: run the fleet agent's read-only scan of that host's OpenClaw state and
bring its JSON back. Every tool runs the SAME agent file with the same interpreter flags as
fleet's bootstrap (`python3 -E -s -S AGENT scan --state-dir STATE`), taken from the cache fleet
itself keeps on that host, in one of two modes, both measured by default:

  tree  fleet's unpacked, byte-compiled agent tree (what fleet runs in production);
  zip   fleet's cached .pyz (zipimport compiles every module on every run); the tree is removed
        and the cache dir made read-only, so fleet's bootstrap runs the .pyz as well. (It still
        tries, and fails, to unpack it each run: a few ms more host CPU for fleet only.)

No tool pushes the agent in the measured runs (fleet finds it cached; it still sends its plan
and checks the cached file's sha256). Tools, run round-robin per repetition, each as ONE
subprocess timed from its start to its exit:

  a. ssh loop      one `ssh` per host, one after the other
  b. parallel ssh  the same N `ssh` processes, all at once (`&` + `wait`)
  c. ansible       ad-hoc `ansible all -m command --tree DIR`, forks=N, pipelining on, host_key_checking
                   on, ControlMaster=auto + ControlPersist=60s as Ansible ships them
  d. pyinfra       `pyinfra -y --parallel N`, server.shell
  e. asyncssh      a bare asyncio script: one connection per host
  f. fleet         `python -m fleet scan -i INVENTORY --json --forks N`

One success rule for every tool: exit status 0, and then every host's scan JSON parsed and checked
(mode scan, ok true, no error, at least one file, the right state dir; for fleet its --json host
entries: ok, no error, files). a, b, e and c bring the JSON back over SSH (c in its --tree files);
pyinfra returns no command output to its caller, so its hosts redirect it into a file the bench
reads (all simulated hosts are this machine).

Controller CPU is the tool's own process tree only: os.wait4's rusage of the tool's pid, plus the
ssh ControlPersist masters it leaves orphaned (Ansible's: this script is the child subreaper, ends
exactly those by pid after the run and adds their wait4 rusage). Processes of the simulated hosts
that the subreaper adopts (sshd sessions started from this process) are reaped and never counted.
Every tool checks host keys strictly against the generated known_hosts. One warm-up run of every
tool precedes the measured ones in each mode. Needs root (network namespaces); the peers come
from bench/.venv-peers.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
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
from common import compile_fleet, emit, machine, markdown_table  # noqa: E402

PEERS_VENV = REPO / "bench" / ".venv-peers"
PEERS_BIN = PEERS_VENV / "bin"
TOOLS = ("ssh loop", "parallel ssh", "ansible", "pyinfra", "asyncssh", "fleet")

ASYNCSSH_JOB = r'''
"""Bare asyncssh: one connection per host, the same remote command, known_hosts checked."""
import asyncio, json, sys
import asyncssh

async def one(host, key, known_hosts, out_dir):
    async with asyncssh.connect(host["address"], port=22, username=host["user"], client_keys=[key],
                                known_hosts=known_hosts, agent_path=None, config=[]) as conn:
        result = await conn.run(host["command"], stdin=asyncssh.DEVNULL, encoding=None)
        with open("%s/%s.json" % (out_dir, host["name"]), "wb") as f:
            f.write(result.stdout)
        return result.exit_status

async def main():
    spec = json.load(open(sys.argv[1]))
    key = asyncssh.read_private_key(spec["key"])
    codes = await asyncio.gather(*(one(h, key, spec["known_hosts"], spec["out"]) for h in spec["hosts"]),
                                 return_exceptions=True)
    bad = [(h["name"], c) for h, c in zip(spec["hosts"], codes) if c != 0]
    for name, code in bad:
        print(name, repr(code), file=sys.stderr)
    sys.exit(1 if bad else 0)

asyncio.run(main())
'''

PYINFRA_DEPLOY = r'''
from pyinfra import host
from pyinfra.operations import server

# pyinfra hands a command's output to no caller: the host (this machine) keeps it for the check.
server.shell(name="run the agent's scan", commands=[host.data.command + " > " + host.data.out])
'''

def remote_job(agent: str, state_dir: str) -> str:
    """Every tool's per-host command: the same interpreter flags as fleet's bootstrap, on the
    agent fleet itself cached on that host (its byte-compiled tree, or its .pyz)."""
    return f"python3 -E -s -S {shlex.quote(agent)} scan --state-dir {shlex.quote(state_dir)}"


def check_agent_json(text: str, state_dir: str) -> None:
    """The one output rule for a, b, c, d, e: the agent's scan JSON, ok, no error, files found."""
    doc = json.loads(text)
    if doc.get("mode") != "scan" or doc.get("ok") is not True or doc.get("error") is not None:
        raise ValueError(f"not a clean scan result: mode={doc.get('mode')!r} ok={doc.get('ok')!r}")
    if doc["host"]["state_dir"] != state_dir or not doc.get("files"):
        raise ValueError(f"scan of {doc['host']['state_dir']!r} with {len(doc.get('files') or ())} files")


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
        """End our adopted ssh masters (a tool's own: their CPU is returned, to add to that
        tool's); reap the hosts' processes once they end (their CPU is nobody's: not counted)."""
        own = 0.0
        deadline = time.monotonic() + settle_s
        pending = {pid: self._host_side(pid) for pid in self.adopted()}
        while pending:
            for pid, host_side in list(pending.items()):
                if not host_side:
                    try:
                        os.kill(pid, signal.SIGTERM)
                        _, _, ru = os.wait4(pid, 0)
                        own += ru.ru_utime + ru.ru_stime
                    except (ProcessLookupError, ChildProcessError):
                        pass
                    del pending[pid]
                    continue
                try:
                    done, _, _ = os.wait4(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    del pending[pid]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return own


def timed(cmd: list[str], env: dict, reaper: Subreaper, cwd: Path) -> tuple[float, float, int, str]:
    """(wall s, CPU s of the tool's own process tree, exit code, output tail).

    The CPU is os.wait4's rusage of the tool's pid (it and every descendant it waited for) plus
    its orphaned ssh masters; a simulated host's process adopted by this subreaper is reaped
    and never counted (RUSAGE_CHILDREN deltas charged those to whichever tool ran next)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        tail = out.read().decode(errors="replace")[-1500:]
    cpu = ru.ru_utime + ru.ru_stime + reaper.end_adopted()
    return wall, cpu, proc.returncode, tail


class Job:
    """Writes every tool's inputs for one simulated fleet, and knows how to start and check each.

    Every simulated host keeps fleet's agent cache in its own XDG_CACHE_HOME (on this machine's
    disk), and every tool runs the agent from there: `mode` "tree" runs its byte-compiled tree,
    "zip" its .pyz (the tree removed and the cache dir made read-only, so fleet's bootstrap cannot
    unpack it again and runs the .pyz too)."""

    def __init__(self, sim_dir: Path, work: Path, hosts: list[dict], forks: int, user: str = "root"):
        self.sim, self.work, self.hosts, self.forks, self.user = sim_dir, work, hosts, forks, user
        self.key, self.known = sim_dir / "client_key", sim_dir / "known_hosts"
        export = work / "agent.pyz"
        self.fleet_state = work / "fleet-state"
        self.fleet_state.mkdir()
        compile_fleet(REPO)
        subprocess.run([sys.executable, "-m", "fleet", "agent", "export", str(export)], cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), check=True, stdout=subprocess.DEVNULL)
        digest = hashlib.sha256(export.read_bytes()).hexdigest()
        # The simulated hosts' sshd give each host its own XDG_CACHE_HOME (fleet/demo/sshd.py).
        for h in hosts:
            h["cache"] = sim_dir / h["name"] / "sshd" / "cache" / "fleet"
            h["tree"] = h["cache"] / f"agent-{digest[:16]}"
        self.ssh_opts = ["-F", "/dev/null", "-i", str(self.key), "-o", f"UserKnownHostsFile={self.known}",
                         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=no",
                         "-o", "LogLevel=ERROR"]
        # pyinfra's hosts (logged in as `user`) write their output here themselves.
        work.chmod(0o711)
        (self.work / "out").mkdir()
        (self.work / "out").chmod(0o1777)
        self.rep = 0
        self.mode = ""

    def set_mode(self, mode: str) -> None:
        """Put the agent cache in `mode` and write every tool's inputs for it."""
        self.restore_cache()
        if mode == "zip":
            for h in self.hosts:
                shutil.rmtree(h["tree"], ignore_errors=True)
        code = subprocess.run(self.command("fleet")[0], env=self.command("fleet")[1], cwd=self.work,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        for h in self.hosts:
            if code != 0 or not Path(str(h["tree"]) + ".pyz").exists():
                raise SystemExit(f"fleet did not install its agent in {h['cache']} (exit {code})")
            if mode == "zip":
                shutil.rmtree(h["tree"], ignore_errors=True)
                h["cache"].chmod(0o500)
            elif not h["tree"].is_dir():
                raise SystemExit(f"fleet did not unpack its agent tree {h['tree']}")
            h["agent"] = str(h["tree"]) + (".pyz" if mode == "zip" else "")
        self.mode = mode
        self._write_ssh_scripts()
        self._write_ansible()
        self._write_pyinfra()
        self._write_asyncssh()

    def restore_cache(self) -> None:
        for h in self.hosts:
            if h["cache"].exists():
                h["cache"].chmod(0o700)

    def _ssh_line(self, host: dict) -> str:
        out = self.work / "out" / f"{host['name']}.json"
        return " ".join(["ssh", *map(shlex.quote, self.ssh_opts), f"{self.user}@{host['address']}",
                         shlex.quote(remote_job(host["agent"], host["state_dir"])), ">", shlex.quote(str(out))])

    def _write_ssh_scripts(self) -> None:
        seq = ["#!/bin/sh", "rc=0"] + [f"{self._ssh_line(h)} || rc=1" for h in self.hosts]
        (self.work / "ssh_loop.sh").write_text("\n".join(seq + ["exit $rc", ""]))
        par = ["#!/bin/sh", "rc=0", "pids="]
        for h in self.hosts:
            par += [f"{self._ssh_line(h)} &", 'pids="$pids $!"']
        par += ["for p in $pids; do wait $p || rc=1; done", "exit $rc", ""]
        (self.work / "parallel_ssh.sh").write_text("\n".join(par))

    def _write_ansible(self) -> None:
        lines = ["[sim]"] + [f"{h['name']} ansible_host={h['address']} state_dir={shlex.quote(h['state_dir'])} agent={shlex.quote(h['agent'])}"
                             for h in self.hosts]
        (self.work / "ansible_hosts.ini").write_text("\n".join(lines) + "\n")

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
                                 "ssh_strict_host_key_checking": "yes", "command": remote_job(h["agent"], h["state_dir"]),
                                 "out": str(self.work / "out" / f"{h['name']}.json")}) for h in self.hosts]
        (self.work / "pyinfra_inventory.py").write_text(f"sim = {hosts!r}\n")
        (self.work / "pyinfra_deploy.py").write_text(PYINFRA_DEPLOY)

    def _write_asyncssh(self) -> None:
        (self.work / "asyncssh_job.py").write_text(ASYNCSSH_JOB)
        spec = {"key": str(self.key), "known_hosts": str(self.known), "out": str(self.work / "out"),
                "hosts": [{"name": h["name"], "address": h["address"], "user": self.user,
                          "command": remote_job(h["agent"], h["state_dir"])} for h in self.hosts]}
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
            self.ansible_tree = self.work / f"tree{self.rep}"
            env.update(ANSIBLE_CONFIG=str(self.ansible_cfg(control)), ANSIBLE_HOME=str(self.work / "ansible-home"),
                       ANSIBLE_NOCOLOR="1")
            return [str(PEERS_BIN / "ansible"), "all", "-m", "ansible.builtin.command", "-a",
                    "python3 -E -s -S {{ agent }} scan --state-dir {{ state_dir }}", "--tree", str(self.ansible_tree)], env
        if tool == "pyinfra":
            return [str(PEERS_BIN / "pyinfra"), "-y", "--parallel", str(self.forks),
                    str(self.work / "pyinfra_inventory.py"), str(self.work / "pyinfra_deploy.py")], env
        if tool == "asyncssh":
            return [str(PEERS_BIN / "python"), str(self.work / "asyncssh_job.py"),
                    str(self.work / "asyncssh_hosts.json")], env
        if tool == "fleet":
            env.update(FLEET_STATE_DIR=str(self.fleet_state), PYTHONPATH=str(REPO))
            self.fleet_out = self.work / "fleet.json"
            return ["/bin/sh", "-c", 'exec "$0" -m fleet scan -i "$1" --json --forks "$2" > "$3"', sys.executable,
                    str(self.sim / "inventory.toml"), str(self.forks), str(self.fleet_out)], env
        raise ValueError(tool)

    def check_outputs(self, tool: str) -> None:
        """The same rule for every tool: each host's scan came back ok, no error, files found."""
        if tool == "fleet":
            doc = json.loads(self.fleet_out.read_text())
            by_host = {h["host"]: h for h in doc["hosts"]}
            for h in self.hosts:
                r = by_host[h["name"]]
                if r.get("ok") is not True or r.get("error") is not None or not r.get("files"):
                    raise ValueError(f"{h['name']}: ok={r.get('ok')!r} error={r.get('error')!r}")
            self.fleet_out.unlink()
            return
        for h in self.hosts:
            if tool == "ansible":
                text = json.loads((self.ansible_tree / h["name"]).read_text())["stdout"]
            else:
                out = self.work / "out" / f"{h['name']}.json"
                text = out.read_text()
                out.unlink()
            check_agent_json(text, h["state_dir"])


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



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--rtt", type=float, default=40.0, help="round trip in ms")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of: " + ", ".join(TOOLS))
    ap.add_argument("--modes", default="tree,zip", help="the agent every tool runs: fleet's cached byte-compiled "
                    "tree, its .pyz, or both (tree,zip)")
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
    modes = [m.strip() for m in args.modes.split(",")]
    if set(modes) - {"tree", "zip"}:
        raise SystemExit("--modes: tree, zip or both")
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rec = fleetsim.up(args.hosts, args.rtt, args.dir, user=args.user)
    work = Path(tempfile.mkdtemp(prefix="fleet-peers-"))
    keep = {pid for h in rec["hosts"] for pid in h["pids"]}
    reaper = Subreaper(keep)
    samples: dict[tuple[str, str], list[tuple[float, float, int]]] = {(m, t): [] for m in modes for t in tools}
    job = None
    try:
        hosts = [{"name": h["name"], "address": h["address"], "state_dir": str(args.dir / h["name"] / "state")}
                 for h in rec["hosts"]]
        job = Job(args.dir, work, hosts, forks=args.hosts, user=args.user)
        for mode in modes:
            job.set_mode(mode)
            reaper.end_adopted()
            for rep in range(args.reps + 1):           # repetition 0 is the warm-up, not counted
                for tool in tools:
                    cmd, env = job.command(tool)
                    wall, cpu, code, tail = timed(cmd, env, reaper, work)
                    ok = code == 0                      # one success rule for every tool
                    if ok:
                        try:
                            job.check_outputs(tool)
                        except (OSError, ValueError, KeyError, TypeError) as exc:
                            ok, tail = False, f"output check failed: {exc!r}"
                    print(f"{mode} {'warm-up' if rep == 0 else f'rep {rep}'}: {tool:13s} {wall:7.2f} s  "
                          f"{cpu * 1000 / args.hosts:6.1f} ms CPU/host  exit {code}{'' if ok else ' FAILED'}",
                          file=sys.stderr, flush=True)
                    if not ok:
                        print(f"  {tool} failed:\n{tail}", file=sys.stderr)
                    if rep > 0:
                        samples[(mode, tool)].append((wall, cpu, code if ok else -1))
    finally:
        if job is not None:
            job.restore_cache()
        reaper.end_adopted()
        fleetsim.down(args.dir)
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    rows = []
    for mode in modes:
        fleet_wall = statistics.median(s[0] for s in samples[(mode, "fleet")]) if "fleet" in tools else float("nan")
        for tool in tools:
            v = samples[(mode, tool)]
            wall = statistics.median(s[0] for s in v)
            cpu_ms = statistics.median(s[1] for s in v) * 1000 / args.hosts
            failed = sum(1 for s in v if s[2] != 0)
            rows.append([mode, tool, f"{wall:.2f}", f"{wall / fleet_wall:.2f}", f"{cpu_ms:.1f}",
                         f"{len(v) - failed}/{len(v)}"])
    headers = ["agent as", "tool", "wall s (median)", "wall / fleet's", "controller CPU ms/host (own tree)",
               "runs passing (exit 0 + every host's JSON checked)"]
    out = [f"peers: {args.hosts} hosts, RTT {args.rtt:g} ms (delay by {rec['delay']}), login user {args.user}, "
           f"{args.reps} reps interleaved after one warm-up each; {started}",
           f"machine: {machine()}; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}",
           "versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()), "", markdown_table(headers, rows)]
    emit("\n".join(out), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
