"""Trajectory cap on real files: whole runs only, the partial first run and old runs go first."""
import hashlib
import json
import os
import random
from pathlib import Path

import pytest

from fleet.hostside import fsutil
from fleet.hostside.context import FileInfo, RunContext
from fleet.hostside.trajectory import cap_trajectory, parse_ts
from fleet.demo.gen.trajectory import write_trajectory

NOW_MS = 1763700000000
DAY_MS = 86400000
SID = "0f5d59ee-034e-47d9-ac97-d383e6c022b8"


def generated(tmp_path, runs=6, starts_mid_run=False, start_ms=NOW_MS - 6 * DAY_MS, end_ms=NOW_MS):
    sessions = tmp_path / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    return write_trajectory(Path(str(sessions)), session_id=SID, session_key="agent:main:main",
                            rng=random.Random(runs), runs=runs, run_bytes=6000, start_ms=start_ms,
                            end_ms=end_ms, starts_mid_run=starts_mid_run)


def cap(tmp_path, path, policy, dry_run=False):
    ctx = RunContext(str(tmp_path), "run1", NOW_MS, dry_run,
                     fsutil.BackupStore(str(tmp_path / ("backups-dry" if dry_run else "backups")), dry_run=dry_run), {})
    st = os.stat(str(path))
    info = FileInfo("main", str(path), os.path.relpath(str(path), str(tmp_path)), "trajectory",
                    st.st_size, st.st_mtime_ns, session_id=SID)
    return cap_trajectory(ctx, "main", info, policy)


def events(data):
    return [json.loads(line) for line in data.splitlines()]


def runs_in(data):
    order = []
    for event in events(data):
        if event.get("runId") not in order:
            order.append(event.get("runId"))
    return order


def assert_whole_runs(original, out, run_ids):
    """`out` is exactly the lines of `run_ids` in `original`, byte for byte, in order."""
    want = b"".join(line for line in original.splitlines(True) if json.loads(line).get("runId") in run_ids)
    assert out == want


def test_keeps_the_last_runs_whole(tmp_path):
    summary = generated(tmp_path, runs=6)
    original = summary.path.read_bytes()
    record = cap(tmp_path, summary.path, {"keep_runs": 2, "max_age_s": None})
    out = summary.path.read_bytes()
    assert record["error"] is None and record["action"] == "trim"
    assert runs_in(out) == summary.run_ids[-2:]
    assert_whole_runs(original, out, summary.run_ids[-2:])
    assert record["before"] == {"bytes": len(original), "records": summary.events,
                                "sha256": hashlib.sha256(original).hexdigest()}
    assert record["after"] == {"bytes": len(out), "records": len(events(out)),
                               "sha256": hashlib.sha256(out).hexdigest()}
    assert open(record["backup"], "rb").read() == original


def test_partial_first_run_is_dropped_even_when_under_the_cap(tmp_path):
    summary = generated(tmp_path, runs=4, starts_mid_run=True)
    original = summary.path.read_bytes()
    assert events(original)[0]["type"] not in ("session.started", "trace.metadata")
    record = cap(tmp_path, summary.path, {"keep_runs": 10, "max_age_s": None})
    assert runs_in(summary.path.read_bytes()) == summary.run_ids[1:]
    assert_whole_runs(original, summary.path.read_bytes(), summary.run_ids[1:])
    assert any("partial first run" in note for note in record["notes"])


def test_old_runs_expire_whole(tmp_path):
    summary = generated(tmp_path, runs=6)                      # one run a day, the last one today
    original = summary.path.read_bytes()
    last_ts = {}
    for event in events(original):
        last_ts[event["runId"]] = max(last_ts.get(event["runId"], 0), event["ts"])
    young = [r for r in summary.run_ids if last_ts[r] >= NOW_MS - int(2.5 * DAY_MS)]
    assert 0 < len(young) < len(summary.run_ids)
    record = cap(tmp_path, summary.path, {"keep_runs": None, "max_age_s": int(2.5 * 86400)})
    assert runs_in(summary.path.read_bytes()) == young
    assert_whole_runs(original, summary.path.read_bytes(), young)
    assert record["action"] == "trim"


def test_nothing_left_keeps_the_last_run(tmp_path):
    summary = generated(tmp_path, runs=3, start_ms=NOW_MS - 90 * DAY_MS, end_ms=NOW_MS - 60 * DAY_MS)
    record = cap(tmp_path, summary.path, {"keep_runs": 5, "max_age_s": 86400})
    assert runs_in(summary.path.read_bytes()) == summary.run_ids[-1:]
    assert any("kept the last run" in note for note in record["notes"])


def test_within_policy_is_left_alone(tmp_path):
    summary = generated(tmp_path, runs=3)
    original = summary.path.read_bytes()
    record = cap(tmp_path, summary.path, {"keep_runs": 3, "max_age_s": 30 * 86400})
    assert record["action"] == "none" and record["backup"] is None and record["error"] is None
    assert summary.path.read_bytes() == original and not (tmp_path / "backups").exists()


def test_pointer_file_is_reported_untouched(tmp_path):
    summary = generated(tmp_path, runs=2)
    original = summary.pointer.read_bytes()
    record = cap(tmp_path, summary.pointer, {"keep_runs": 1, "max_age_s": 1})
    assert record["action"] == "none" and record["error"] is None
    assert record["before"]["sha256"] == hashlib.sha256(original).hexdigest()
    assert summary.pointer.read_bytes() == original


def test_dry_run_reports_what_the_real_run_writes(tmp_path):
    summary = generated(tmp_path, runs=5, starts_mid_run=True)
    original = summary.path.read_bytes()
    dry = cap(tmp_path, summary.path, {"keep_runs": 2, "max_age_s": None}, dry_run=True)
    assert summary.path.read_bytes() == original and dry["backup"] is None
    real = cap(tmp_path, summary.path, {"keep_runs": 2, "max_age_s": None})
    assert (dry["before"], dry["after"], dry["action"]) == (real["before"], real["after"], real["action"])


def _event(run, kind, ts, seq, **extra):
    event = {"traceSchema": "openclaw-trajectory", "schemaVersion": 1, "traceId": SID, "source": "runtime",
             "type": kind, "ts": ts, "seq": seq, "sessionId": SID, "data": {"x": "y" * 50}}
    if run:
        event["runId"] = run
    event.update(extra)
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def test_events_without_run_id_stay_with_their_run_and_truncated_tail_is_kept(tmp_path):
    lines = [_event(None, "session.started", "2026-11-20T08:00:00.000Z", 1),
             _event("r1", "trace.metadata", "2026-11-20T08:00:01.000Z", 2),
             _event("r1", "model.completed", "2026-11-20T08:00:02.000Z", 3),
             _event(None, "trace.artifacts", "2026-11-20T08:00:03.000Z", 4),
             _event(None, "session.started", "2026-11-21T08:00:00.000Z", 1),
             _event("r2", "trace.metadata", "2026-11-21T08:00:01+00:00", 2),
             _event("r2", "model.completed", "2026-11-21T08:00:02.500Z", 3)]
    fragment = b'{"traceSchema":"openclaw-trajectory","type":"context.comp'
    path = tmp_path / "agents" / "main" / "sessions" / ("%s.trajectory.jsonl" % SID)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(lines) + fragment)
    record = cap(tmp_path, path, {"keep_runs": 1, "max_age_s": None})
    assert path.read_bytes() == b"".join(lines[4:]) + fragment
    assert record["before"]["records"] == 8 and record["after"]["records"] == 4
    assert any("truncated" in note for note in record["notes"])


def test_bad_line_in_the_middle_is_an_error_and_no_write(tmp_path):
    summary = generated(tmp_path, runs=3)
    data = summary.path.read_bytes().splitlines(True)
    data[2] = b"{broken\n"
    summary.path.write_bytes(b"".join(data))
    record = cap(tmp_path, summary.path, {"keep_runs": 1, "max_age_s": None})
    assert record["error"] == "line 3 is not a JSON object; left untouched"
    assert summary.path.read_bytes() == b"".join(data) and not (tmp_path / "backups").exists()


@pytest.mark.parametrize("value,expected", [
    ("2025-11-21T04:40:00.000Z", 1763700000000),
    ("2025-11-21T05:40:00.5+01:00", 1763700000500),
    (1763700000000, 1763700000000),
    (1763700000, 1763700000000),
    ("yesterday", None),
    (None, None),
])
def test_parse_ts(value, expected):
    assert parse_ts(value) == expected
