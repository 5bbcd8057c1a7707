"""Write a 2026.7.x run trace: `<sid>.trajectory.jsonl` and its `<sid>.trajectory-path.json` pointer.

Each line is a trace event grouped by `runId`. The bytes sit where OpenClaw puts them:
`context.compiled` (~43 %), `trace.metadata` (~36 %), `prompt.submitted` (~19 %).
With `starts_mid_run`, the file begins inside its first run, as OpenClaw's own ~10 MB bound leaves it.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import List

from fleet.demo.gen.common import new_uuid, write_file
from fleet.demo.gen.text import pools

_RUN_SHARE = (("trace.metadata", 0.36), ("context.compiled", 0.43), ("prompt.submitted", 0.19),
              ("model.completed", 0.01), ("trace.artifacts", 0.01))


@dataclass
class TrajectorySummary:
    path: Path
    pointer: Path
    bytes: int
    runs: int
    events: int
    run_ids: List[str]


def _data(rng: random.Random, kind: str, n_bytes: int) -> dict:
    p = pools()
    if kind == "trace.metadata":
        return {"harness": {"name": "openclaw", "version": "2026.7.1"}, "plugins": ["telegram", "cron", "memory"],
                "config": p["prose"].take(rng, n_bytes)}
    if kind == "context.compiled":
        return {"systemPrompt": p["prose"].take(rng, n_bytes // 2),
                "messages": p["tool"].take(rng, n_bytes - n_bytes // 2)}
    if kind == "prompt.submitted":
        return {"prompt": p["prose"].take(rng, n_bytes)}
    if kind == "model.completed":
        return {"stopReason": "stop", "usage": {"input": rng.randint(1000, 150000), "output": rng.randint(10, 3000)},
                "text": p["prose"].take(rng, n_bytes)}
    return {"artifacts": [{"kind": "file", "path": "/home/linou/notes/out.md"}], "note": p["tool"].take(rng, n_bytes)}


def write_trajectory(sessions_dir: Path, *, session_id: str, session_key: str, rng: random.Random, runs: int,
                     run_bytes: int, start_ms: int, end_ms: int, starts_mid_run: bool = False) -> TrajectorySummary:
    """Write `runs` runs of about `run_bytes` each; both files get mtime `end_ms`."""
    path = sessions_dir / f"{session_id}.trajectory.jsonl"
    pointer = sessions_dir / f"{session_id}.trajectory-path.json"
    trace_id = new_uuid(rng)
    lines: List[bytes] = []
    run_ids: List[str] = []
    seq = 0
    span = max(1, end_ms - start_ms)
    for run in range(runs):
        run_id = new_uuid(rng)
        run_ids.append(run_id)
        kinds = [(k, share) for k, share in _RUN_SHARE]
        if run == 0:
            kinds.insert(0, ("session.started", 0.0))
        if run == runs - 1:
            kinds.append(("session.ended", 0.0))
        if run == 0 and starts_mid_run:
            kinds = kinds[3:]
        for kind, share in kinds:
            seq += 1
            ts = start_ms + span * run // max(1, runs) + seq
            event = {"traceSchema": "openclaw-trajectory", "schemaVersion": 1, "traceId": trace_id, "type": kind,
                     "ts": ts, "seq": seq, "sessionId": session_id, "sessionKey": session_key, "runId": run_id,
                     "data": _data(rng, kind, int(run_bytes * share)) if share else {}}
            lines.append(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    size = write_file(path, lines, mtime_ms=end_ms)
    body = json.dumps({"traceSchema": "openclaw-trajectory-pointer", "schemaVersion": 1, "sessionId": session_id,
                       "runtimeFile": str(path)}, indent=2).encode() + b"\n"
    write_file(pointer, [body], mtime_ms=end_ms)
    return TrajectorySummary(path=path, pointer=pointer, bytes=size, runs=runs, events=len(lines), run_ids=run_ids)
