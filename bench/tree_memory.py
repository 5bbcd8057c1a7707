"""Memory of the agent's whole process tree during a weekly run, with and without prescan workers.

    .venv/bin/python bench/tree_memory.py                   # 1 GB / 15 agents, workers 0 and 2
    .venv/bin/python bench/tree_memory.py --total 200MB --workers 0,1,2,4

`/usr/bin/time` (agent_throughput.py) reports the largest single process. Workers are separate
processes, so this samples every 20 ms the proportional set size (Pss, /proc/PID/smaps_rollup: a
shared page counts once in all) of every process running the plan, and prints the peak of their sum
beside the peak RSS of the largest one and the wall time, for each FLEET_AGENT_WORKERS, on a fresh
copy of the same generated data each time. Linux only (smaps_rollup: kernel >= 4.14).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from agent_throughput import PYTHON, Host, fresh_copy, generate  # noqa: E402
from common import emit, machine, markdown_table  # noqa: E402
from fleet.config.playbook import load_playbook  # noqa: E402
from fleet.control.plan import build_plan  # noqa: E402


def _kb(path: str, field: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def sample_run(agent: Path, plan_path: Path, workers: str) -> tuple[float, float, float]:
    """(wall s, peak summed Pss MB, peak largest VmHWM MB) of one agent run."""
    env = dict(os.environ, FLEET_AGENT_WORKERS=workers)
    t0 = time.perf_counter()
    proc = subprocess.Popen([PYTHON, str(agent), "run", "--plan", str(plan_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    needle = str(plan_path).encode()
    peak_pss = peak_hwm = 0
    while proc.poll() is None:
        total = 0
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if needle not in Path(f"/proc/{name}/cmdline").read_bytes():
                    continue
                total += _kb(f"/proc/{name}/smaps_rollup", "Pss:")
                peak_hwm = max(peak_hwm, _kb(f"/proc/{name}/status", "VmHWM:"))
            except OSError:
                continue
        peak_pss = max(peak_pss, total)
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"the agent exited {proc.returncode}")
    return wall, peak_pss / 1024.0, peak_hwm / 1024.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--total", default="1GB")
    ap.add_argument("--agents", type=int, default=15)
    ap.add_argument("--workers", default="0,2", help="FLEET_AGENT_WORKERS values to compare (default 0,2)")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fleet-tree-memory-", dir=args.dir))
    now_ms = int(time.time() * 1000)
    rows = []
    try:
        agent = work / "agent.pyz"
        subprocess.run([sys.executable, "-m", "fleet", "agent", "export", str(agent)], check=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL)
        state, pristine = work / "state", work / "pristine"
        generate("gen", state, argparse.Namespace(total=args.total, agents=args.agents), now_ms)
        state.rename(pristine)
        plan = build_plan(Host(state), "run", "bench-tree-memory", now_ms, dry_run=False,
                          playbook=load_playbook("weekly"))
        plan_path = work / "plan.json"
        plan_path.write_text(json.dumps(plan))
        for workers in args.workers.split(","):
            fresh_copy(pristine, state)
            wall, pss, hwm = sample_run(agent, plan_path, workers.strip())
            rows.append([workers.strip(), f"{wall:.2f}", f"{pss:.0f}", f"{hwm:.0f}"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join([
        f"agent process tree memory, weekly on {args.total} / {args.agents} agents, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"machine: {machine()}", "",
        markdown_table(["FLEET_AGENT_WORKERS", "wall s", "peak summed Pss MB", "largest process peak RSS MB"], rows)])
    emit(text, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
