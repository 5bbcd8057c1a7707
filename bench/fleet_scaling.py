"""Fleet scaling on the simulated fleet: `fleet scan` and `fleet run weekly --dry-run`.

    sudo .venv/bin/python bench/fleet_scaling.py [--hosts 1,10,50] [--rtt 0,40] [--reps 3]

For each RTT and fleet size N it brings up N namespace hosts (bench/fleetsim.py), runs each
command --reps times and prints the median wall time, the controller's CPU (user+sys of the
fleet process) per host, and wall(N)/wall(1). On one 2-core machine the hosts' own sshd and
agents share the controller's CPU, so the ratio shows this machine as much as fleet.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import fleetsim  # noqa: E402
from common import compile_fleet  # noqa: E402

FLEET = [sys.executable, "-m", "fleet"]


def timed(cmd: list[str], env: dict) -> tuple[float, float, int, float, int]:
    """(wall seconds, CPU seconds, exit code, peak RSS in MB, failed hosts) of one fleet command.

    CPU and peak RSS are the fleet process's own: os.wait4 on its pid (fleet starts no child
    processes of its own; the simulated hosts are not its children). Failed hosts are counted from
    its --json document: a host not ok, or a host missing from it."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.PIPE)
        err = proc.stderr.read()
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        try:
            hosts = json.loads(out.read())["hosts"]
            failed = sum(1 for h in hosts if not h.get("ok"))
        except (ValueError, KeyError, TypeError):
            hosts, failed = [], -1
    if proc.returncode not in (0, 1):
        print(err.decode("utf-8", "replace")[-1500:], file=sys.stderr)
    return wall, usage.ru_utime + usage.ru_stime, proc.returncode, usage.ru_maxrss / 1024.0, failed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", default="1,10,50")
    ap.add_argument("--rtt", default="0,40")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/fleetsim-scaling"))
    ap.add_argument("--user", default="root", help="the account fleet logs in as (see fleetsim.up)")
    ap.add_argument("--forks", type=int, default=1000, help="fleet's --forks (at most the number of hosts)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("fleet_scaling needs root (network namespaces); run with sudo")
    sizes = [int(x) for x in args.hosts.split(",")]
    rtts = [float(x) for x in args.rtt.split(",")]
    rows = []
    compile_fleet(REPO)
    state = tempfile.mkdtemp(prefix="fleet-bench-state-")
    env = dict(os.environ, FLEET_STATE_DIR=state, PYTHONPATH=str(REPO))
    for rtt in rtts:
        base: dict[str, float] = {}
        for n in sizes:
            rec = fleetsim.up(n, rtt, args.dir, user=args.user)
            inv = str(args.dir / "inventory.toml")
            try:
                for label, cmd in (("scan", FLEET + ["scan", "-i", inv, "--json"]),
                                   ("run weekly --dry-run", FLEET + ["run", "weekly", "-i", inv, "--dry-run", "--json"])):
                    runs = [timed(cmd + ["--forks", str(min(n, args.forks))], env) for _ in range(args.reps)]
                    wall = statistics.median(r[0] for r in runs)
                    cpu = statistics.median(r[1] for r in runs)
                    base.setdefault(label, (n, wall))
                    rows.append([f"{rtt:g}", n, label, f"{wall:.2f}", f"{cpu * 1000 / n:.1f}",
                                 f"{max(r[3] for r in runs):.0f}", max(r[4] for r in runs),
                                 f"{wall / base[label][1]:.2f}", ",".join(str(r[2]) for r in runs), rec["delay"]])
                    print(tabulate([rows[-1]]), file=sys.stderr)
            finally:
                fleetsim.down(args.dir)
    print(tabulate(rows, headers=["RTT ms", "hosts", "command", "wall s (median)", "controller CPU ms/host",
                                  "peak controller RSS MB", "failed hosts", "wall / wall(first N)", "exit codes",
                                  "delay"]))
    print("\nwall / wall(first N): on one 2-core machine the simulated hosts' sshd and agents share the "
          "controller's CPU, so this ratio measures the machine as much as fleet.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
