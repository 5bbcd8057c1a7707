"""`python -m fleet.demo.gen OUT_DIR ...`: write generated OpenClaw state for benchmarks and manual tries.

    python -m fleet.demo.gen OUT_DIR --agents 15 --total 1GB --seed 1   # one state dir, 15 agents, ~1 GB
    python -m fleet.demo.gen OUT_DIR --preset demo                       # OUT_DIR/pc-a, OUT_DIR/t440
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fleet.demo.gen.agent import AgentSpec, HostSpec, generate_host
from fleet.demo.gen.common import KB
from fleet.demo.gen.presets import PRESETS
from fleet.demo.gen.store import DEFAULT_KEY_MIX
from fleet.units import human_bytes, parse_size



def _agent_names(n: int) -> list:
    return ["main"] + [f"agent-{i:02d}" for i in range(2, n + 1)]


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fleet.demo.gen", description=(
        "Write deterministic OpenClaw JSON-era state (sessions.json, transcripts, trajectories, orphans, "
        "archives, a stale lock) for benchmarks and tries. Same seed and --now-ms: same bytes."))
    parser.add_argument("out_dir", type=Path, help="Where to write. Without --preset: the state dir itself "
                        "(OUT_DIR/agents/<id>/sessions); with --preset: one state dir per host, OUT_DIR/<host>.")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="demo: the field report (pc-a, t440); tiny: for tests.")
    parser.add_argument("--agents", type=int, default=1, help="Number of agents (default 1).")
    parser.add_argument("--total", type=_size, default=parse_size("10MB"),
                        help="About how much to write in all, e.g. 1GB, 200MB (default 10MB). Agents get uneven shares.")
    parser.add_argument("--records", type=int, default=None,
                        help="Records of each main transcript (default: its size / 2388 bytes, like the field report).")
    parser.add_argument("--bloat", type=float, default=1.0, help="Multiply the bulky store entry fields (default 1).")
    parser.add_argument("--trajectory-runs", type=int, default=0, help="Runs in each main session's trajectory.")
    parser.add_argument("--seed", default="1", help="Seed (default 1).")
    parser.add_argument("--now-ms", type=int, default=None, help="The clock all ages are relative to (default: now).")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    now_ms = args.now_ms if args.now_ms is not None else int(time.time() * 1000)
    began = time.monotonic()
    if args.preset:
        hosts = [(args.out_dir / spec.name, spec) for spec in PRESETS[args.preset]]
    else:
        if args.agents < 1:
            print("fleet.demo.gen: --agents must be at least 1", file=sys.stderr)
            return 2
        names = _agent_names(args.agents)
        weights = [1.0 / (i + 1) ** 0.8 for i in range(args.agents)]
        shares = [int(args.total * w / sum(weights)) for w in weights]
        specs = tuple(AgentSpec(name, share, args.records or 0,
                                bloat=args.bloat, trajectory_runs=args.trajectory_runs)
                      for name, share in zip(names, shares))
        hosts = [(args.out_dir, HostSpec(args.out_dir.name or "host", specs))]
        return _write_totals(hosts, shares, args.records, args.seed, now_ms, began)
    total = 0
    for state_dir, spec in hosts:
        summary = generate_host(state_dir, spec, args.seed, now_ms)
        total += summary.total_bytes
        for agent in summary.agents:
            print(f"{spec.name}\t{agent.agent_id}\tmain {human_bytes(agent.main_bytes)} / {agent.main_records} records"
                  f"\tstore {human_bytes(agent.store_bytes)}\tall {human_bytes(agent.total_bytes)}")
    print(f"wrote {human_bytes(total)} in {time.monotonic() - began:.1f}s", file=sys.stderr)
    return 0


def _proportions(share: int) -> dict:
    """Sizes of the store entries and side files for an agent of `share` bytes.

    A real store is about a fifth of an agent's bytes; with the full 20-150 KB per entry a small
    share would be all store and no main transcript.
    """
    entries = sum(DEFAULT_KEY_MIX.values())
    entry_hi = int(min(150, max(2, share * 0.2 / entries / KB * 2 / 1.1)))
    side_hi = int(min(40, max(3, share * 0.1 / entries / KB * 2)))
    return {"entry_kb": (max(1, min(20, entry_hi // 4)), entry_hi), "side_kb": (max(2, min(3, side_hi // 2)), side_hi),
            "trajectory_run_kb": int(min(180, max(4, share * 0.05 / 2 / KB)))}


def _write_totals(hosts, shares, records, seed, now_ms, began) -> int:
    """--total mode: each agent's main transcript takes what its share leaves after the rest."""
    from fleet.demo.gen.agent import generate_agent

    state_dir, spec = hosts[0]
    total = 0
    for agent_spec, share in zip(spec.agents, shares):
        summary = generate_agent(state_dir, agent_spec.agent_id, main_bytes=agent_spec.main_bytes,
                                 main_records=records or 0, seed=seed, now_ms=now_ms,
                                 bloat=agent_spec.bloat, trajectory_runs=agent_spec.trajectory_runs,
                                 total_bytes=share, **_proportions(share))
        total += summary.total_bytes
        print(f"{agent_spec.agent_id}\tmain {human_bytes(summary.main_bytes)} / {summary.main_records} records"
              f"\tstore {human_bytes(summary.store_bytes)}\tall {human_bytes(summary.total_bytes)}")
    print(f"wrote {human_bytes(total)} in {time.monotonic() - began:.1f}s to {state_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
