"""Agent throughput: the exported agent's scan and a real weekly run against `cp -r` + `sync`.

    .venv/bin/python bench/agent_throughput.py                  # 1 GB / 15 agents, and 444 MB of 600 KB lines
    .venv/bin/python bench/agent_throughput.py --total 100MB --big-mb 50   # small scale

Two data sets, each a whole OpenClaw state dir:

- gen: `python -m fleet.demo.gen STATE --agents 15 --total 1GB --seed 1` (fleet.demo.gen's realistic mix);
- big: a one-agent state (fleet.demo.gen, 2 MB) whose main transcript is replaced by one of `--big-mb`
  MB made of `--line-kb` KB tool results (the size that hangs OpenClaw's gateway).

For each: `cp -r` + `sync` of the state dir (a backup must read and write every byte it keeps),
two floors on the files a weekly run rewrites (found by a dry run first; bench/floor_pass.py: read +
sha256, as a verified backup needs; and that plus every line through the C JSON scanner, as the
rule "a line that is not JSON makes a per-file error" needs), the agent's scan (`python3 agent.pyz
scan --state-dir STATE`), and a real run of the shipped `weekly` playbook's plan (`python3
agent.pyz run --plan PLAN`, then `sync`) on a fresh copy of the data before each repetition. Every
step is a subprocess under `/usr/bin/time -v` (peak RSS); throughput is the state dir's bytes over
the wall time. The page cache is warm for all of them alike (the copy before each run just read
the data). Medians over --reps. Targets from issue 18 are printed beside: the run >= 50 % of
cp + sync's throughput; peak RSS <= 64 MB plus twice the longest line. Needs about 4 x the data's size free on --dir's disk (checked first);
everything written is removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fleet.control.plan import build_plan  # noqa: E402
from fleet.config.playbook import load_playbook  # noqa: E402
from fleet.units import parse_size  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from agent_trim import big_transcript  # noqa: E402
from common import emit, machine, markdown_table  # noqa: E402

PYTHON = shutil.which("python3") or "/usr/bin/python3"   # the host's python, as fleet would find it
FLOOR = REPO / "bench" / "floor_pass.py"
RATIO_TARGET = 0.50
RSS_BASE_MB = 64.0


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, bytes]:
    """(wall s, peak RSS MB, stdout) of `cmd` under /usr/bin/time -v (the largest RSS of its tree)."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=None if env is None else dict(os.environ, **env))
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-1500:]}")
    found = re.search(rb"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return wall, int(found.group(1)) / 1024.0 if found else float("nan"), proc.stdout


def tree_bytes(path: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def longest_line(path: Path) -> int:
    longest = 0
    for d, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(d, name), "rb") as f:
                for line in f:
                    longest = max(longest, len(line))
    return longest


def generate(kind: str, state: Path, args: argparse.Namespace, now_ms: int) -> None:
    """Write the data set at `state` (its final path: sessions.json names transcripts absolutely)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    total = args.total if kind == "gen" else "2MB"
    agents = args.agents if kind == "gen" else 1
    subprocess.run([sys.executable, "-m", "fleet.demo.gen", str(state), "--agents", str(agents), "--total", total,
                    "--seed", "1", "--now-ms", str(now_ms)], env=env, check=True, stdout=subprocess.DEVNULL)
    if kind == "big":
        store = state / "agents" / "main" / "sessions" / "sessions.json"
        entry = json.loads(store.read_text())["agent:main:main"]
        big_transcript(entry["sessionFile"], args.big_mb, args.line_kb, session_id=entry["sessionId"], now_ms=now_ms)


class Host:
    def __init__(self, state: Path):
        self.name, self.state_dir, self.agents = "bench", str(state), None
        self.backup_to, self.openclaw_cmd = "host", None   # the inventory's defaults


def fresh_copy(pristine: Path, state: Path) -> None:
    shutil.rmtree(state, ignore_errors=True)
    subprocess.run(["cp", "-a", str(pristine), str(state)], check=True)
    subprocess.run(["sync"], check=True)


def measure(kind: str, work: Path, agent: Path, args: argparse.Namespace, now_ms: int) -> dict:
    state, pristine, floor = work / f"{kind}-state", work / f"{kind}-pristine", work / f"{kind}-cp"
    t0 = time.perf_counter()
    generate(kind, state, args, now_ms)
    size = tree_bytes(state)
    print(f"[{kind}] generated {size / 1048576:.0f} MB in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    longest = longest_line(state)
    state.rename(pristine)
    plan = build_plan(Host(state), "run", f"bench-{kind}", now_ms, dry_run=False, playbook=load_playbook("weekly"))
    plan_path = work / f"{kind}-plan.json"
    plan_path.write_text(json.dumps(plan))
    rewritten = rewritten_files(plan, plan_path, pristine, state, agent)
    cp, hashed, checked, scan, alone, run, after = [], [], [], [], [], [], None
    for rep in range(args.reps):
        shutil.rmtree(floor, ignore_errors=True)
        subprocess.run(["sync"], check=True)
        cp.append(timed(["sh", "-c", 'cp -r "$1" "$2" && sync', "cp-sync", str(pristine), str(floor)])[:2])
        shutil.rmtree(floor)
        fresh_copy(pristine, state)
        hashed.append(timed([PYTHON, str(FLOOR), "hash", *[str(state / r) for r in rewritten]])[:2])
        checked.append(timed([PYTHON, str(FLOOR), "json", *[str(state / r) for r in rewritten]])[:2])
        scan.append(timed([PYTHON, str(agent), "scan", "--state-dir", str(state)])[:2])
        # The same run with the first passes in the run's own process (no workers), side by side.
        t0 = time.perf_counter()
        alone_rss = timed([PYTHON, str(agent), "run", "--plan", str(plan_path)], env={"FLEET_AGENT_WORKERS": "0"})[1]
        subprocess.run(["sync"], check=True)
        alone.append((time.perf_counter() - t0, alone_rss))
        fresh_copy(pristine, state)
        t0 = time.perf_counter()
        wall, rss, out = timed([PYTHON, str(agent), "run", "--plan", str(plan_path)])
        subprocess.run(["sync"], check=True)
        run.append((time.perf_counter() - t0, rss))
        result = json.loads(out)
        files = result.get("files", [])
        if not result.get("ok", False) and result.get("error"):
            raise RuntimeError(f"[{kind}] the agent's run failed: {result['error']}")
        errors = [f for f in files if f.get("error")]
        after = tree_bytes(state)
        changed = sum(1 for f in files if f.get("action") not in (None, "none"))
        print(f"[{kind}] rep {rep + 1}: cp+sync {cp[-1][0]:.1f} s, scan {scan[-1][0]:.1f} s, "
              f"run+sync {run[-1][0]:.1f} s ({changed} files changed, {len(errors)} errors, "
              f"state {after / 1048576:.0f} MB after incl. backups)", file=sys.stderr)
        if errors:
            print(f"[{kind}] errors: {errors[:3]}", file=sys.stderr)
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(pristine, ignore_errors=True)
    med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
    return {"kind": kind, "bytes": size, "longest": longest, "rewritten": len(rewritten),
            "cp": (med(cp, 0), med(cp, 1)), "hash": (med(hashed, 0), max(x[1] for x in hashed)),
            "json": (med(checked, 0), max(x[1] for x in checked)),
            "scan": (med(scan, 0), max(x[1] for x in scan)),
            "alone": (med(alone, 0), max(x[1] for x in alone)), "run": (med(run, 0), max(x[1] for x in run))}


def rewritten_files(plan: dict, plan_path: Path, pristine: Path, state: Path, agent: Path) -> list[str]:
    """The files (relative to the state dir) a weekly run rewrites, from a dry run on a fresh copy:
    what it trims, prunes, caps or strips (archives and deletes are renames and unlinks)."""
    fresh_copy(pristine, state)
    dry = dict(plan, dry_run=True)
    dry_path = plan_path.with_name(plan_path.stem + "-dry.json")
    dry_path.write_text(json.dumps(dry))
    out = subprocess.run([PYTHON, str(agent), "run", "--plan", str(dry_path)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL).stdout
    files = json.loads(out).get("files", [])
    return sorted({f["path"] for f in files if f.get("action") not in (None, "none", "archive", "delete")
                   and not f.get("error") and (state / f["path"]).is_file()})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--total", default="1GB", help="size of the generated data set (default 1GB)")
    ap.add_argument("--agents", type=int, default=15)
    ap.add_argument("--big-mb", type=float, default=444.0, help="size of the one big transcript (MB)")
    ap.add_argument("--line-kb", type=int, default=600)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", choices=("gen", "big"), help="measure one data set only")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--markdown", type=Path, help="also write the result table to this file")
    args = ap.parse_args(argv)
    if not os.path.exists("/usr/bin/time"):
        raise SystemExit("needs GNU time at /usr/bin/time (Debian: apt-get install time)")
    need = 4 * max(parse_size(args.total), int(args.big_mb * 1048576)) + (1 << 30)
    free = shutil.disk_usage(args.dir).free
    if free < need:
        raise SystemExit(f"{args.dir}: {free / 2**30:.1f} GB free, this needs about {need / 2**30:.1f} GB")
    work = Path(tempfile.mkdtemp(prefix="fleet-throughput-", dir=args.dir))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()
    now_ms = int(time.time() * 1000)
    try:
        agent = work / "agent.pyz"
        subprocess.run([sys.executable, "-m", "fleet", "agent", "export", str(agent)], check=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL)
        results = [measure(kind, work, agent, args, now_ms) for kind in ("gen", "big") if args.only in (None, kind)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for r in results:
        mb = r["bytes"] / 1048576
        rss_limit = RSS_BASE_MB + 2 * r["longest"] / 1048576
        label = (f"gen: {args.agents} agents, {mb:.0f} MB" if r["kind"] == "gen"
                 else f"big: one {args.big_mb:g} MB transcript, {args.line_kb} KB lines")
        cp_rate = mb / r["cp"][0]
        for step in ("cp", "hash", "json", "scan", "alone", "run"):
            wall, rss = r[step]
            rate = mb / wall
            if step == "cp":
                target = ""
            else:
                ratio = f"{rate / cp_rate * 100:.0f} % of cp+sync"
                if step == "run":
                    ratio += f" (>= {RATIO_TARGET * 100:.0f} %: {'met' if rate >= RATIO_TARGET * cp_rate else 'MISSED'})"
                target = ratio if step in ("hash", "json") else (
                    f"{ratio}; RSS <= {rss_limit:.0f} MB: {'met' if rss <= rss_limit else 'MISSED'}")
            name = {"cp": "cp -r + sync", "scan": "agent scan", "run": "agent weekly run + sync",
                    "alone": "agent weekly run + sync, FLEET_AGENT_WORKERS=0",
                    "hash": f"floor: read + sha256 of the {r['rewritten']} files weekly rewrites",
                    "json": "floor: that + every line JSON-checked (stdlib)"}[step]
            rows.append([label, name, f"{wall:.2f}", f"{rate:.0f}", f"{rss:.0f}", target])
        rows.append(["", f"(longest line {r['longest'] / 1024:.0f} KB)", "", "", "", ""])
    text = "\n".join([
        f"agent throughput, {started}; medians of {args.reps} (peak RSS: the largest); MB = 1,048,576 bytes",
        f"machine: {machine()}; "
        f"load average at start {load[0]:.2f}; agent python {subprocess.run([PYTHON, '-V'], capture_output=True, text=True).stdout.strip()}",
        "", markdown_table(["data", "step", "wall s", "MB/s", "peak RSS MB", "target (issue 18)"], rows)])
    emit(text, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
