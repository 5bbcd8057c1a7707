"""Generate one agent's JSON-era sessions folder, and whole hosts of agents.

`generate_agent` writes `<state>/agents/<id>/sessions/`: the store with every key kind, one
transcript per session (the main one at the requested size and record count), trajectories,
orphan transcripts, `.deleted.<ts>` / `.reset.<ts>` archives, a compaction checkpoint, a stale
`sessions.json.lock` of a dead pid and a leftover temp file. Same arguments, same bytes.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from fleet.demo.gen.common import DAY_MS, HOUR_MS, KB, MINUTE_MS, archive_stamp, new_uuid, tree_bytes, write_file
from fleet.demo.gen.store import DEFAULT_KEY_MIX, PRUNABLE_KINDS, SessionPlan, make_entry, plan_sessions, prompt_blob
from fleet.demo.gen.trajectory import write_trajectory
from fleet.demo.gen.transcript import TranscriptFeatures, write_transcript

# The field report's main session: 9.2 MB over 4,040 records.
BYTES_PER_RECORD = int(9.2 * 1024 * 1024) // 4040
# Far above any pid_max a Linux kernel allows (4,194,304): never a live process.
DEAD_PID = 4_194_999
_ORPHAN_AGES_MS = (3 * DAY_MS, 2 * HOUR_MS, 10 * DAY_MS, 30 * HOUR_MS)
_ARCHIVE_AGES_MS = (40 * DAY_MS, 2 * DAY_MS, 9 * DAY_MS)


@dataclass(frozen=True)
class AgentSpec:
    """What to generate for one agent; sizes in bytes. See `generate_agent` for the fields."""

    agent_id: str
    main_bytes: int
    main_records: int
    key_mix: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_KEY_MIX))
    entry_kb: Tuple[int, int] = (20, 150)
    side_kb: Tuple[int, int] = (3, 40)
    bloat: float = 1.0
    age_days: float = 14.0
    n_orphans: int = 3
    n_archives: int = 3
    trajectory_runs: int = 0
    trajectory_run_kb: int = 180
    side_trajectories: int = 2


@dataclass(frozen=True)
class HostSpec:
    name: str
    agents: Tuple[AgentSpec, ...]


@dataclass
class AgentSummary:
    """What was written for one agent (paths absolute)."""

    agent_id: str
    sessions_dir: Path
    store_path: Path
    store_bytes: int
    main_key: str
    main_session_id: str
    main_transcript: Path
    main_bytes: int
    main_records: int
    keys_by_kind: Dict[str, List[str]]
    prunable_keys: List[str]
    transcripts: List[Path]
    trajectories: List[Path]
    orphans: List[Path]
    archives: List[Path]
    lock: Optional[Path]
    temp_files: List[Path]
    total_bytes: int


@dataclass
class HostSummary:
    name: str
    state_dir: Path
    agents: List[AgentSummary]
    total_bytes: int

    def agent(self, agent_id: str) -> AgentSummary:
        return next(a for a in self.agents if a.agent_id == agent_id)


def _side_size(rng: random.Random, side_kb: Tuple[int, int], kind: str) -> Tuple[int, int]:
    n_bytes = rng.randint(side_kb[0] * KB, side_kb[1] * KB)
    if kind == "cron_run":
        n_bytes //= 2
    n_records = max(4, min(60, n_bytes // 900))
    return n_bytes, n_records


def generate_agent(state_dir, agent_id: str, *, main_bytes: int, main_records: int, seed, now_ms: int,
                   key_mix: Optional[Mapping[str, int]] = None, entry_kb: Tuple[int, int] = (20, 150),
                   side_kb: Tuple[int, int] = (3, 40), bloat: float = 1.0, age_days: float = 14.0,
                   n_orphans: int = 3, n_archives: int = 3, trajectory_runs: int = 0, trajectory_run_kb: int = 180,
                   side_trajectories: int = 2, stale_lock: bool = True, temp_file: bool = True,
                   total_bytes: Optional[int] = None, n_cron_runs: Optional[int] = None) -> AgentSummary:
    """Write agent `agent_id` under `state_dir`; return what was written.

    main_bytes / main_records: the main session's transcript (records = lines after the header).
    key_mix: {kind: count} over store.KINDS (main is always 1); n_cron_runs overrides its cron_run. entry_kb: range of the bulky
    skillsSnapshot + systemPromptReport per store entry, times `bloat`. side_kb: range of the other
    transcripts. age_days: how far back sessions reach (about half the cron runs are > 24 h old).
    trajectory_runs: runs in the main session's trajectory (0: none); side_trajectories: how many
    cron-run/subagent sessions get a one-run trajectory. total_bytes: when given, main_bytes is
    whatever is left of it after everything else of the agent was written (and main_records <= 0
    means: as many as the field report's bytes per record give).
    Raises ValueError for an unsafe agent id.
    """
    if not agent_id or "/" in agent_id or agent_id.startswith("."):
        raise ValueError(f"unsafe agent id {agent_id!r}")
    rng = random.Random(f"fleet.gen:{seed}:{agent_id}")
    state_dir = Path(state_dir).resolve()
    sessions = state_dir / "agents" / agent_id / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    for folder in (state_dir / "agents" / agent_id, sessions):
        folder.chmod(0o700)
    mix = dict(key_mix if key_mix is not None else DEFAULT_KEY_MIX)
    mix["main"] = 1
    if n_cron_runs is not None:
        mix["cron_run"] = n_cron_runs
    plans = plan_sessions(rng, agent_id, mix, now_ms, age_days)
    main = plans[0]
    cwd = f"/home/linou/.openclaw/workspace-{agent_id}"
    summary = AgentSummary(agent_id, sessions, sessions / "sessions.json", 0, main.key, main.session_id,
                           sessions / main.file_name, 0, 0, {}, [], [], [], [], [], None, [], 0)
    stats: Dict[str, Tuple[int, int, int, int]] = {}

    # Every session but main: small transcripts, some with a one-run trajectory.
    traced = 0
    for plan in plans[1:]:
        summary.keys_by_kind.setdefault(plan.kind, []).append(plan.key)
        if plan.kind in PRUNABLE_KINDS:
            summary.prunable_keys.append(plan.key)
        if plan.shares_transcript:
            continue
        n_bytes, n_records = _side_size(rng, side_kb, plan.kind)
        features = TranscriptFeatures(prompt="cron" if plan.kind == "cron_run" else "chat")
        t = write_transcript(sessions / plan.file_name, session_id=plan.session_id, rng=rng, n_records=n_records,
                             n_bytes=n_bytes, start_ms=plan.started_at, end_ms=plan.updated_at, cwd=cwd, features=features)
        stats[plan.session_id] = (t.input_tokens, t.output_tokens, t.cache_read, t.compactions)
        summary.transcripts.append(t.path)
        if traced < side_trajectories and plan.kind in ("cron_run", "subagent"):
            traced += 1
            tr = write_trajectory(sessions, session_id=plan.session_id, session_key=plan.key, rng=rng, runs=1,
                                  run_bytes=trajectory_run_kb * KB, start_ms=plan.started_at, end_ms=plan.updated_at)
            summary.trajectories.append(tr.path)

    _write_leftovers(rng, summary, sessions, now_ms, cwd, n_orphans, n_archives, stale_lock, temp_file)

    # The store: bulk fields first (their size is known before the main transcript exists).
    lo, hi = entry_kb
    bulk = {p.key: int(rng.randint(lo * KB, hi * KB) * bloat) for p in plans}
    blob_refs = _prompt_blobs(rng, sessions, plans[-2:], lo * KB)
    if total_bytes is not None:
        store_estimate = _store_bytes(rng, plans, agent_id, sessions, bulk, stats, blob_refs)
        main_bytes = max(1024, total_bytes - tree_bytes(sessions.parent) - store_estimate)
        if main_records <= 0:
            main_records = max(4, main_bytes // BYTES_PER_RECORD)

    features = TranscriptFeatures(image=True, branch=main_records >= 20, compactions=min(3, main_records // 400),
                                  aborted=min(5, main_records // 200), big_line=main_bytes >= 4 * 1024 * 1024)
    t = write_transcript(sessions / main.file_name, session_id=main.session_id, rng=rng, n_records=main_records,
                         n_bytes=main_bytes, start_ms=now_ms - int(age_days * DAY_MS), end_ms=main.updated_at,
                         cwd=cwd, features=features)
    stats[main.session_id] = (t.input_tokens, t.output_tokens, t.cache_read, t.compactions)
    summary.transcripts.insert(0, t.path)
    summary.main_bytes, summary.main_records = t.bytes, t.records
    summary.keys_by_kind["main"] = [main.key]
    if t.compactions:
        checkpoint = sessions / f"{main.session_id}.checkpoint.{new_uuid(rng)}.jsonl"
        write_file(checkpoint, [line + b"\n" for line in t.head], mtime_ms=main.updated_at - DAY_MS)
    if trajectory_runs:
        tr = write_trajectory(sessions, session_id=main.session_id, session_key=main.key, rng=rng, runs=trajectory_runs,
                              run_bytes=trajectory_run_kb * KB, start_ms=now_ms - int(age_days * DAY_MS),
                              end_ms=main.updated_at, starts_mid_run=trajectory_runs >= 8)
        summary.trajectories.insert(0, tr.path)

    body = _store_body(rng, plans, agent_id, sessions, bulk, stats, blob_refs)
    summary.store_bytes = write_file(summary.store_path, [body], mtime_ms=max(p.updated_at for p in plans))
    summary.total_bytes = tree_bytes(sessions.parent)
    return summary


def _store_body(rng, plans: Sequence[SessionPlan], agent_id: str, sessions: Path, bulk: Mapping[str, int],
                stats, blob_refs) -> bytes:
    store = {}
    for plan in plans:
        tokens = stats.get(plan.session_id, (0, 0, 0, 0))
        store[plan.key] = make_entry(rng, plan, agent_id, str(sessions / plan.file_name), bulk[plan.key],
                                     tokens[:3], tokens[3], blob_refs.get(plan.key))
    return json.dumps(store, indent=2, ensure_ascii=False).encode()


def _store_bytes(rng, plans, agent_id, sessions, bulk, stats, blob_refs) -> int:
    """Size the store will have, from a throw-away rng (the real one must not advance here)."""
    probe = random.Random(rng.random())
    return len(_store_body(probe, plans, agent_id, sessions, bulk, stats, blob_refs))


def _prompt_blobs(rng, sessions: Path, plans: Sequence[SessionPlan], n_bytes: int) -> Dict[str, Tuple[str, int]]:
    """Newer builds store the skills prompt once under skills-prompts/ and point at it."""
    refs = {}
    for plan in plans:
        text, digest = prompt_blob(rng, max(512, n_bytes // 3))
        folder = sessions / "skills-prompts" / "sha256" / digest[:2]
        folder.mkdir(parents=True, exist_ok=True)
        data = text.encode()
        write_file(folder / f"{digest}.txt", [data], mtime_ms=plan.updated_at)
        refs[plan.key] = (digest, len(data))
    return refs


def _write_leftovers(rng, summary: AgentSummary, sessions: Path, now_ms: int, cwd: str, n_orphans: int,
                     n_archives: int, stale_lock: bool, temp_file: bool) -> None:
    for i in range(n_orphans):
        sid = new_uuid(rng)
        age = _ORPHAN_AGES_MS[i % len(_ORPHAN_AGES_MS)]
        t = write_transcript(sessions / f"{sid}.jsonl", session_id=sid, rng=rng, n_records=rng.randint(4, 30),
                             n_bytes=rng.randint(4 * KB, 24 * KB), start_ms=now_ms - age - HOUR_MS,
                             end_ms=now_ms - age, cwd=cwd)
        summary.orphans.append(t.path)
    for i in range(n_archives):
        sid = new_uuid(rng)
        age = _ARCHIVE_AGES_MS[i % len(_ARCHIVE_AGES_MS)]
        suffix = "reset" if i % 3 == 1 else "deleted"
        path = sessions / f"{sid}.jsonl.{suffix}.{archive_stamp(now_ms - age)}"
        write_transcript(path, session_id=sid, rng=rng, n_records=rng.randint(4, 30), n_bytes=rng.randint(4 * KB, 24 * KB),
                         start_ms=now_ms - age - HOUR_MS, end_ms=now_ms - age, cwd=cwd)
        summary.archives.append(path)
    if stale_lock:
        lock = sessions / "sessions.json.lock"
        started = now_ms - 2 * HOUR_MS
        write_file(lock, [json.dumps({"pid": DEAD_PID, "startedAt": started}).encode()], mtime_ms=started)
        summary.lock = lock
    if temp_file:
        temp = sessions / f"sessions.json.{DEAD_PID}.{new_uuid(rng)}.tmp"
        write_file(temp, [b'{\n  "agent:' + summary.agent_id.encode() + b':main": {\n    "sessionId": '],
                   mtime_ms=now_ms - 50 * MINUTE_MS)
        summary.temp_files.append(temp)


def _host_seed(seed, host: str) -> str:
    return f"{seed}:{host}"


def generate_host(state_dir, host_spec: HostSpec, seed, now_ms: int) -> HostSummary:
    """Write every agent of `host_spec` under `state_dir` plus a minimal `openclaw.json`."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    agents = []
    for spec in host_spec.agents:
        agents.append(generate_agent(
            state_dir, spec.agent_id, main_bytes=spec.main_bytes, main_records=spec.main_records,
            seed=_host_seed(seed, host_spec.name), now_ms=now_ms, key_mix=spec.key_mix, entry_kb=spec.entry_kb,
            side_kb=spec.side_kb, bloat=spec.bloat, age_days=spec.age_days, n_orphans=spec.n_orphans,
            n_archives=spec.n_archives, trajectory_runs=spec.trajectory_runs,
            trajectory_run_kb=spec.trajectory_run_kb, side_trajectories=spec.side_trajectories))
    config = {"agents": {"list": [{"id": s.agent_id} for s in host_spec.agents]},
              "session": {"maintenance": {"mode": "enforce", "pruneAfter": "30d", "maxEntries": 500}},
              "cron": {"sessionRetention": "24h"}}
    write_file(state_dir / "openclaw.json", [json.dumps(config, indent=2).encode() + b"\n"], mtime_ms=now_ms - 30 * DAY_MS)
    return HostSummary(host_spec.name, state_dir.resolve(), agents, tree_bytes(state_dir))


def scaled(spec: AgentSpec, **changes) -> AgentSpec:
    """A copy of `spec` with some fields changed (e.g. smaller sizes for a quick test)."""
    return replace(spec, **changes)
