"""Ready-made fleets: the field report this tool was born from (`DEMO_FLEET`) and a tiny one for tests.

Sizes are the main session transcript's, in binary units (1 MB = 1,048,576 bytes); a record is one
transcript line after the header.
"""
from __future__ import annotations

from fleet.demo.gen.agent import AgentSpec, HostSpec
from fleet.demo.gen.common import KB, MB

# Bytes per record of the field report's main session (9.2 MB over 4,040 records).
_BYTES_PER_RECORD = int(9.2 * MB) // 4040
_LIGHT_MIX = {"main": 1, "direct": 1, "group": 1, "topic": 1, "cron_job": 1, "cron_run": 6, "subagent": 2,
              "probe": 1, "hook": 1, "heartbeat": 1, "dreaming": 1}


def _t440_agent(agent_id: str, mb: float, **extra) -> AgentSpec:
    n_bytes = int(mb * MB)
    return AgentSpec(agent_id, n_bytes, max(20, n_bytes // _BYTES_PER_RECORD), key_mix=dict(_LIGHT_MIX),
                     entry_kb=(20, 60), side_kb=(3, 16), n_orphans=2, n_archives=1, side_trajectories=1,
                     **extra)


DEMO_FLEET = (
    HostSpec("pc-a", (
        AgentSpec("main", int(9.2 * MB), 4040, trajectory_runs=12, age_days=40.0),
    )),
    HostSpec("t440", (
        _t440_agent("techsfree-web", 2.9, trajectory_runs=4),
        _t440_agent("learning", 1.8, trajectory_runs=2),
        _t440_agent("docomo-pj", 1.2),
        _t440_agent("health", 0.9),
        _t440_agent("main", 0.48),
        _t440_agent("research", 0.44),
        _t440_agent("finance", 0.39),
        _t440_agent("family", 0.35),
        _t440_agent("blog", 0.31),
        _t440_agent("home-automation", 0.27),
        _t440_agent("trading", 0.23),
        _t440_agent("english", 0.19),
        _t440_agent("recipes", 0.16),
        _t440_agent("travel", 0.13),
        _t440_agent("news", 0.11),
    )),
)

# Main transcript sizes the demo promises (bytes), per host and agent.
DEMO_MAIN_BYTES = {(h.name, a.agent_id): a.main_bytes for h in DEMO_FLEET for a in h.agents}

_TINY_MIX = {"main": 1, "direct": 1, "group": 1, "channel": 1, "topic": 1, "thread": 1, "cron_job": 1,
             "cron_run": 4, "subagent": 1, "acp": 1, "dashboard": 1, "probe": 1, "hook": 1, "heartbeat": 1,
             "dreaming": 1}


def tiny_agent(agent_id: str = "main", main_bytes: int = 48 * KB, main_records: int = 60, **extra) -> AgentSpec:
    """An agent small enough for unit tests (~100 KB on disk) that still has every feature."""
    options = dict(key_mix=dict(_TINY_MIX), entry_kb=(1, 3), side_kb=(2, 4), n_orphans=2, n_archives=2,
                   trajectory_runs=2, trajectory_run_kb=4, side_trajectories=1)
    options.update(extra)
    return AgentSpec(agent_id, main_bytes, main_records, **options)


TINY_FLEET = (
    HostSpec("alpha", (tiny_agent("main"),)),
    HostSpec("beta", (tiny_agent("main", 24 * KB, 30), tiny_agent("ops", 16 * KB, 24))),
)
PRESETS = {"demo": DEMO_FLEET, "tiny": TINY_FLEET}
