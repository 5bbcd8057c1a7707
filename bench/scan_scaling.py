"""How `fleet scan` scales with the number of hosts: K local sshd hosts, K = 1, 10, 30.

    .venv/bin/python bench/scan_scaling.py [--sizes 1,10,30] [--repeat 3]

Each host is its own sshd on 127.0.0.1 with its own host key, its own agent cache (sshd's
`SetEnv XDG_CACHE_HOME`) and a copy of one small generated OpenClaw state dir (fleet.demo.gen's tiny
agent). For each K it runs `fleet scan --json` as a subprocess: once cold (every host receives
the agent) and `--repeat` times warm (agent cached: one exec channel per host), and prints the wall
time, the controller's CPU (user+sys of the `fleet` process, from getrusage(RUSAGE_CHILDREN)
around it) per host and per host beyond the first (the fixed start-up cost taken out), wall(K) /
wall(1), and the median time one host took (connect + agent).

Caveat printed with the numbers: on one small machine the K sshd processes and the K agents run
on the same cores as the controller, so wall time measures the whole fleet's CPU, not the
network; the controller CPU per host is the number that carries over to real fleets.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet.demo.gen import HostSpec, generate_host, tiny_agent  # noqa: E402
from fleet.demo.sshd import SshdServer, make_keypair, public_key_line, write_known_hosts  # noqa: E402

NOW_MS = 1763700000000


class BenchSshd(SshdServer):
    """An sshd whose sessions get their own agent cache, as if it were a separate machine."""

    def config_text(self) -> str:
        cache = self.workdir.parent / "cache"
        cache.mkdir(exist_ok=True)
        return super().config_text() + f"SetEnv XDG_CACHE_HOME={cache}\n"


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_scan(inventory: Path, state: Path) -> tuple[float, float, dict]:
    env = dict(os.environ, FLEET_STATE_DIR=str(state))
    cpu0, t0 = child_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fleet", "scan", "--json", "-i", str(inventory)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    wall, cpu = time.perf_counter() - t0, child_cpu() - cpu0
    if done.returncode not in (0, 1):
        raise SystemExit(f"fleet scan failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, cpu, json.loads(done.stdout)


def cli_startup() -> tuple[float, float]:
    """Wall and CPU seconds of a process that only imports fleet's CLI, controller and transport."""
    cpu0, t0 = child_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-c", "import fleet.cli, fleet.control.controller, fleet.control.transport"],
                   check=True, cwd=ROOT)
    return time.perf_counter() - t0, child_cpu() - cpu0


def bench(k: int, template: Path, base: Path, client_key: Path, repeat: int) -> dict:
    servers = []
    work = base / f"k{k}"
    try:
        for i in range(k):
            host_dir = work / f"h{i:02d}"
            shutil.copytree(template, host_dir / "state")
            server = BenchSshd(host_dir / "sshd", log_level="ERROR",
                               authorized_keys=[public_key_line(client_key.with_name(client_key.name + ".pub"))],
                               users=["root"])
            servers.append(server.start())
        known = write_known_hosts(work / "known_hosts", servers)
        inventory = work / "inventory.toml"
        lines = ["[defaults]", 'user = "root"', f'identity_file = "{client_key}"', f'known_hosts = "{known}"']
        for i, server in enumerate(servers):
            lines += ["", f"[hosts.h{i:02d}]", 'address = "127.0.0.1"', f"port = {server.port}",
                      f'state_dir = "{work / f"h{i:02d}" / "state"}"']
        inventory.write_text("\n".join(lines) + "\n")
        cold_wall, cold_cpu, doc = run_scan(inventory, work / "fleet-state")
        ok = doc["totals"]["hosts_ok"]
        warm = [run_scan(inventory, work / "fleet-state") for _ in range(repeat)]
        walls = [w for w, _, _ in warm]
        cpus = [c for _, c, _ in warm]
        host_times = [h["elapsed_s"] for _, _, d in warm for h in d["hosts"]]
        return {"k": k, "ok": ok, "cold_wall": cold_wall, "cold_cpu_per_host": cold_cpu / k,
                "wall": statistics.median(walls), "cpu_per_host": statistics.median(cpus) / k,
                "host_s": statistics.median(host_times), "files": doc["totals"]["files"]}
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,10,30")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    base = Path(tempfile.mkdtemp(prefix="fleet-bench-", dir="/tmp"))
    base.chmod(0o755)
    try:
        template = base / "template"
        generate_host(template, HostSpec("bench", (tiny_agent("main"), tiny_agent("ops", 24 * 1024, 30))),
                      seed=1, now_ms=NOW_MS)
        client_key = make_keypair(base / "client_key")
        startup, startup_cpu = min(cli_startup() for _ in range(3))
        rows = [bench(k, template, base, client_key, args.repeat) for k in sizes]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end "
          f"(other work on the machine inflates wall times); python {sys.version.split()[0]}; "
          f"importing fleet's CLI+transport alone takes {startup:.2f}s, {startup_cpu * 1000:.0f}ms CPU "
          f"(in every number below; 'per extra host' is what each host beyond the first adds)")
    print(f"{'K':>3} {'ok':>3} {'files':>6} {'cold wall':>10} {'warm wall':>10} {'wall/wall(1)':>13} "
          f"{'ctrl CPU/host':>14} {'per extra host':>14} {'cold CPU/host':>14} {'host time':>10}")
    first = rows[0]["wall"]

    def marginal(row: dict) -> float:
        """Controller CPU each host beyond the first adds: (cpu(K) - cpu(1)) / (K - 1)."""
        return (row["cpu_per_host"] * row["k"] - rows[0]["cpu_per_host"] * rows[0]["k"]) / (row["k"] - rows[0]["k"])
    for r in rows:
        print(f"{r['k']:>3} {r['ok']:>3} {r['files']:>6} {r['cold_wall']:>9.2f}s {r['wall']:>9.2f}s "
              f"{r['wall'] / first:>13.2f} {r['cpu_per_host'] * 1000:>12.0f}ms "
              f"{'-' if r is rows[0] else f'{marginal(r) * 1000:.0f}ms':>14} "
              f"{r['cold_cpu_per_host'] * 1000:>12.0f}ms "
              f"{r['host_s']:>9.2f}s")
    print("note: the K sshd servers and K agents share this machine's cores with the controller, so wall "
          "time includes their CPU too; controller CPU per host is what carries over to a real fleet.")


if __name__ == "__main__":
    main()
