"""Fleet scaling on the simulated fleet: `fleet scan` and `fleet run weekly --dry-run`.

    sudo .venv/bin/python bench/fleet_scaling.py [--hosts 1,10,50] [--rtt 0,40] [--reps 3]

For each RTT and fleet size N it brings up N namespace hosts (bench/fleetsim.py), runs each
command --reps times and prints the median wall time, the controller's CPU (user+sys of the
fleet process) per host, and wall(N)/wall(1). On one 2-core machine the hosts' own sshd and
agents share the controller's CPU, so the ratio shows this machine as much as fleet.
"""
from __future__ import annotations

import argparse
import os
import resource
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

FLEET = [sys.executable, "-m", "fleet"]


def timed(cmd: list[str], env: dict) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the child, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):
        print(proc.stderr[-1500:], file=sys.stderr)
    return wall, cpu, proc.returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", default="1,10,50")
    ap.add_argument("--rtt", default="0,40")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/fleetsim-scaling"))
    ap.add_argument("--user", default="root", help="the account fleet logs in as (see fleetsim.up)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("fleet_scaling needs root (network namespaces); run with sudo")
    sizes = [int(x) for x in args.hosts.split(",")]
    rtts = [float(x) for x in args.rtt.split(",")]
    rows = []
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
                    runs = [timed(cmd + ["--forks", str(n)], env) for _ in range(args.reps)]
                    wall = statistics.median(r[0] for r in runs)
                    cpu = statistics.median(r[1] for r in runs)
                    base.setdefault(label, wall)
                    rows.append([f"{rtt:g}", n, label, f"{wall:.2f}", f"{cpu * 1000 / n:.0f}",
                                 f"{wall / base[label]:.2f}", ",".join(str(r[2]) for r in runs), rec["delay"]])
                    print(tabulate([rows[-1]]), file=sys.stderr)
            finally:
                fleetsim.down(args.dir)
    print(tabulate(rows, headers=["RTT ms", "hosts", "command", "wall s (median)", "controller CPU ms/host",
                                  "wall(N)/wall(1)", "exit codes", "delay"]))
    print("\nwall(N)/wall(1): on one 2-core machine the simulated hosts' sshd and agents share the "
          "controller's CPU, so this ratio measures the machine as much as fleet.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
