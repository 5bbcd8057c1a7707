"""Deterministic OpenClaw state dirs (JSON era) for the demo, the tests and the benchmarks.

Everything follows docs/openclaw-format.md. Same seed and `now_ms`, same bytes: the
generator never reads the wall clock (the CLI passes the current time unless told otherwise).

    from fleet.demo.gen import generate_agent, generate_host, DEMO_FLEET, TINY_FLEET
    generate_agent(state_dir, "main", main_bytes=2 * MB, main_records=800, seed=1, now_ms=now)
    for spec in DEMO_FLEET: generate_host(root / spec.name, spec, seed=1, now_ms=now)
"""
from fleet.demo.gen.agent import AgentSpec, AgentSummary, HostSpec, HostSummary, generate_agent, generate_host, scaled
from fleet.demo.gen.common import KB, MB
from fleet.demo.gen.presets import DEMO_FLEET, DEMO_MAIN_BYTES, PRESETS, TINY_FLEET, tiny_agent
from fleet.demo.gen.store import DEFAULT_KEY_MIX, KINDS, PRUNABLE_KINDS

__all__ = ["AgentSpec", "AgentSummary", "HostSpec", "HostSummary", "generate_agent", "generate_host", "scaled",
           "KB", "MB", "DEMO_FLEET", "DEMO_MAIN_BYTES", "PRESETS", "TINY_FLEET", "tiny_agent",
           "DEFAULT_KEY_MIX", "KINDS", "PRUNABLE_KINDS", "generate_fleet"]


def generate_fleet(root, hosts, seed, now_ms):
    """Write each HostSpec of `hosts` to `root/<host name>`; return the HostSummary list."""
    from pathlib import Path

    return [generate_host(Path(root) / spec.name, spec, seed, now_ms) for spec in hosts]
