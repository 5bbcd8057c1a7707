"""fleet's weekly dry run on K hosts two ways: `fleet run` and Ansible with the fleet.openclaw collection.

    scripts/setup-ansible.sh && .venv/bin/python bench/ansible_module.py [--sizes 1,10,30] [--reps 3]

Each host is its own sshd on 127.0.0.1 (bench/scan_scaling.py's BenchSshd: own host key, own
agent cache) with a copy of one small generated OpenClaw state dir. For each K, interleaved
--reps times after one warm-up each:

  fleet     `fleet run weekly --dry-run --json -i inventory.toml` (forks = K)
  ansible   `ansible-playbook examples/weekly.yml --check` with the collection built from this
            checkout (forks = K, pipelining on, strict host keys, ControlMaster=no so no master
            outlives the run; the plan compiled once by `fleet playbook compile`, counted too)

Measured per tool: wall time, and controller CPU (user+sys of the tool's process tree, from
getrusage(RUSAGE_CHILDREN) around it; the sshd servers are this process's children too but are
only reaped at the end, so their CPU is not in it) per host, and per host beyond the first (the
fixed start-up taken out). Both runs must report the same before/after bytes, checked here.

The K sshd and the K agents run on the same cores as the controller: wall time measures this
machine; the controller CPU per host is what carries over to a real fleet.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine, markdown_table  # noqa: E402
from scan_scaling import BenchSshd, child_cpu  # noqa: E402

from fleet.control.collection import build_collection  # noqa: E402
from fleet.demo.gen import HostSpec, generate_host, tiny_agent  # noqa: E402
from fleet.demo.sshd import make_keypair, public_key_line, write_known_hosts  # noqa: E402

ANSIBLE_BIN = ROOT / ".venv-ansible" / "bin"


def timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    cpu0, t0 = child_cpu(), time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - t0, child_cpu() - cpu0, done


class Fleet:
    """K sshd hosts plus both tools' inventories."""

    def __init__(self, k: int, template: Path, base: Path, key: Path, collections: Path):
        self.k, self.work, self.servers = k, base / f"k{k}", []
        for i in range(k):
            shutil.copytree(template, self.work / f"h{i:02d}" / "state")
            server = BenchSshd(self.work / f"h{i:02d}" / "sshd", log_level="ERROR",
                               authorized_keys=[public_key_line(key.with_name(key.name + ".pub"))], users=["root"])
            self.servers.append(server.start())
        known = write_known_hosts(self.work / "known_hosts", self.servers)
        toml = ["[defaults]", 'user = "root"', f'identity_file = "{key}"', f'known_hosts = "{known}"']
        ini = ["[openclaw]"]
        for i, s in enumerate(self.servers):
            state = self.work / f"h{i:02d}" / "state"
            toml += ["", f"[hosts.h{i:02d}]", 'address = "127.0.0.1"', f"port = {s.port}", f'state_dir = "{state}"']
            ini.append(f"h{i:02d} ansible_host=127.0.0.1 ansible_port={s.port} ansible_user=root "
                       f"ansible_ssh_private_key_file={key} openclaw_state_dir={state}")
        (self.work / "inventory.toml").write_text("\n".join(toml) + "\n")
        (self.work / "hosts.ini").write_text("\n".join(ini) + "\n")
        (self.work / "ansible.cfg").write_text(
            f"[defaults]\nhost_key_checking = True\ninterpreter_python = /usr/bin/python3\nforks = {k}\n"
            "[ssh_connection]\npipelining = True\n"
            f"ssh_args = -F /dev/null -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes "
            "-o ControlMaster=no -o BatchMode=yes -o LogLevel=ERROR\n")
        self.env = dict(os.environ, FLEET_STATE_DIR=str(self.work / "fleet-state"), ANSIBLE_NOCOLOR="1",
                        ANSIBLE_CONFIG=str(self.work / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(collections),
                        ANSIBLE_LOCAL_TEMP=str(self.work / "ansible-tmp"),
                        ANSIBLE_CALLBACKS_ENABLED="fleet.openclaw.fleet_results",
                        FLEET_ANSIBLE_RESULTS=str(self.work / "results.json"))

    def run(self, tool: str) -> tuple[float, float, tuple[int, int]]:
        if tool == "fleet":
            wall, cpu, done = timed([sys.executable, "-m", "fleet", "run", "weekly", "--dry-run", "--json", "-i",
                                     str(self.work / "inventory.toml"), "--forks", str(self.k)], self.env, ROOT)
            if done.returncode != 0:
                raise SystemExit(f"fleet failed ({done.returncode}): {done.stderr[-2000:]}")
            totals = json.loads(done.stdout)["totals"]
        else:
            wall, cpu, done = timed([str(ANSIBLE_BIN / "ansible-playbook"), "-i", str(self.work / "hosts.ini"),
                                     str(ROOT / "examples" / "weekly.yml"), "--check",
                                     "-e", f"fleet_command='{sys.executable} -m fleet'"], self.env, self.work)
            if done.returncode != 0:
                raise SystemExit(f"ansible-playbook failed ({done.returncode}): {done.stdout[-2000:]}")
            results = json.loads((self.work / "results.json").read_text())["results"]
            totals = {"before_bytes": sum(r["result"]["summary"]["before_bytes"] for r in results),
                      "after_bytes": sum(r["result"]["summary"]["after_bytes"] for r in results)}
        return wall, cpu, (totals["before_bytes"], totals["after_bytes"])

    def close(self) -> None:
        for server in self.servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,10,30")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    if not (ANSIBLE_BIN / "ansible-playbook").exists():
        raise SystemExit("no .venv-ansible: run scripts/setup-ansible.sh first")
    sizes = [int(s) for s in args.sizes.split(",")]
    base = Path(tempfile.mkdtemp(prefix="fleet-bench-ansible-", dir="/tmp"))
    base.chmod(0o755)
    load_before = os.getloadavg()[0]
    rows, per_host = [], {}
    try:
        template = base / "template"
        generate_host(template, HostSpec("bench", (tiny_agent("main"), tiny_agent("ops", 24 * 1024, 30))),
                      seed=1, now_ms=int(time.time() * 1000))
        key = make_keypair(base / "client_key")
        tarball = build_collection(base / "dist", str(ANSIBLE_BIN / "ansible-galaxy"))
        subprocess.run([str(ANSIBLE_BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p",
                        str(base / "collections")], check=True, capture_output=True)
        for k in sizes:
            fleet = Fleet(k, template, base, key, base / "collections")
            try:
                samples: dict[str, list] = {"fleet": [], "ansible": []}
                for tool in samples:            # warm-up: agent caches, page cache, .pyc files
                    fleet.run(tool)
                for _ in range(args.reps):
                    for tool in samples:
                        samples[tool].append(fleet.run(tool))
                if len({s[2] for t in samples.values() for s in t}) != 1:
                    raise SystemExit(f"K={k}: the tools disagree on the numbers: {samples}")
            finally:
                fleet.close()
            for tool, runs in samples.items():
                wall = statistics.median(r[0] for r in runs)
                cpu = statistics.median(r[1] for r in runs)
                per_host[(tool, k)] = cpu
                rows.append([str(k), tool, f"{wall:.2f}", f"{cpu * 1000 / k:.0f}", ""])
        for row in rows:
            tool, k = row[1], int(row[0])
            if k != sizes[0]:
                extra = (per_host[(tool, k)] - per_host[(tool, sizes[0])]) / (k - sizes[0])
                row[4] = f"{extra * 1000:.0f}"
    finally:
        shutil.rmtree(base, ignore_errors=True)
    versions = subprocess.run([str(ANSIBLE_BIN / "python"), "-c", "from importlib.metadata import version; "
                               "print(version('ansible-core'))"], capture_output=True, text=True).stdout.strip()
    header = (f"fleet run weekly --dry-run vs ansible-playbook examples/weekly.yml --check (fleet.openclaw), "
              f"loopback sshd hosts, {args.reps} reps interleaved after a warm-up; "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
              f"machine: {machine()}; load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}; "
              f"python {sys.version.split()[0]}, ansible-core {versions}\n")
    table = markdown_table(["hosts", "tool", "wall s (median)", "controller CPU ms/host", "per extra host ms"], rows)
    text = header + "\n" + table + "\n\nBoth tools reported the same before/after bytes in every run."
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
