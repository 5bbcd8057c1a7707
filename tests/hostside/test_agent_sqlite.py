"""SQLite-era agents (openclaw-agent.sqlite): read-only scans, verified online backups,
half-migrated hosts left alone. Runs the agent's real `main` in-process on real SQLite files.

The databases here carry the session tables of OpenClaw 2026.9.6's schema (columns the agent
reads, same names and constraints); tests/interop checks the same code on genuine OpenClaw data.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import time
from pathlib import Path

from fleet.hostside import sqlite_era, sqlite_run
from fleet.hostside.main import main

NOW_MS = int(time.time() * 1000)
DAY_MS = 86400 * 1000
SCHEMA = """
CREATE TABLE session_nodes (session_key TEXT NOT NULL PRIMARY KEY, current_session_id TEXT NOT NULL,
  entry_json TEXT NOT NULL, updated_at INTEGER NOT NULL) STRICT;
CREATE TABLE session_windows (session_id TEXT NOT NULL PRIMARY KEY, session_key TEXT NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL) STRICT;
CREATE TABLE transcript_events (session_id TEXT NOT NULL, seq INTEGER NOT NULL, event_json TEXT,
  created_at INTEGER NOT NULL, event_zstd BLOB, event_utf8_bytes INTEGER, navigation_json TEXT,
  PRIMARY KEY (session_id, seq),
  FOREIGN KEY (session_id) REFERENCES session_windows(session_id) ON DELETE CASCADE);
CREATE TABLE trajectory_runtime_events (session_id TEXT NOT NULL, seq INTEGER NOT NULL, run_id TEXT,
  event_json TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (session_id, seq),
  FOREIGN KEY (session_id) REFERENCES session_windows(session_id) ON DELETE CASCADE) STRICT;
"""
SESSIONS = {  # key -> (session id, transcript lines after the header, trajectory runs)
    "agent:main:main": ("s-main", 6, 3),
    "agent:main:cron:job1:run:s-cron": ("s-cron", 2, 1),
    "agent:main:telegram:group:-100:topic:7": ("s-topic", 3, 0),
}


def line(i: int, sid: str) -> str:
    return json.dumps({"type": "message", "id": "%08x" % i, "sessionId": sid, "pad": "é" * 40})


def make_db(path: Path, wal: bool = False, zstd_rows: int = 0, user_version: int = 23) -> sqlite3.Connection:
    """A database like OpenClaw's; with wal=True it stays open (so -wal/-shm exist) and is returned."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.executescript(SCHEMA)
    conn.execute("PRAGMA user_version = %d" % user_version)
    for n, (key, (sid, lines, runs)) in enumerate(SESSIONS.items()):
        updated = NOW_MS - n * DAY_MS
        conn.execute("INSERT INTO session_nodes VALUES (?, ?, ?, ?)", (key, sid, json.dumps({"sessionId": sid}), updated))
        conn.execute("INSERT INTO session_windows VALUES (?, ?, ?, ?)", (sid, key, updated, updated))
        conn.execute("INSERT INTO transcript_events (session_id, seq, event_json, created_at) VALUES (?, 0, ?, ?)",
                     (sid, json.dumps({"type": "session", "version": 3, "id": sid}), updated - 1000))
        for i in range(1, lines + 1):
            if i <= zstd_rows:
                conn.execute("INSERT INTO transcript_events (session_id, seq, event_zstd, event_utf8_bytes, "
                             "navigation_json, created_at) VALUES (?, ?, ?, ?, '{}', ?)",
                             (sid, i, b"\x28\xb5\x2f\xfd" + b"z" * 20, 5000, updated))
            else:
                conn.execute("INSERT INTO transcript_events (session_id, seq, event_json, created_at) VALUES (?, ?, ?, ?)",
                             (sid, i, line(i, sid), updated))
        for r in range(runs):
            for e in range(4):
                conn.execute("INSERT INTO trajectory_runtime_events VALUES (?, ?, ?, ?, ?)",
                             (sid, r * 4 + e, "run-%d" % r, json.dumps({"type": "context.compiled", "pad": "x" * 500}),
                              updated))
    if wal:
        return conn
    conn.close()
    return None


def run_main(args, stdin_text=None):
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdin=io.StringIO(stdin_text or ""), stdout=out, stderr=err)
    return code, json.loads(out.getvalue())


def scan(state: Path):
    return run_main(["scan", "--state-dir", str(state), "--now-ms", str(NOW_MS)])


def snapshot(root: Path) -> dict:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            if p.relative_to(root) == Path(".fleet-run.lock"):
                continue        # the host's run lock (held while a run works), not an agent's file
            out[str(p.relative_to(root))] = (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def db_path(state: Path, agent: str = "main") -> Path:
    return state / "agents" / agent / "agent" / "openclaw-agent.sqlite"


def test_scan_reports_every_session_in_the_database_and_bytes_add_up_to_the_file(tmp_path):
    make_db(db_path(tmp_path))
    before = snapshot(tmp_path)
    code, doc = scan(tmp_path)
    assert code == 0
    assert snapshot(tmp_path) == before, "a scan wrote something"
    assert not Path(str(db_path(tmp_path)) + "-wal").exists() and not Path(str(db_path(tmp_path)) + "-shm").exists()
    files = {f["path"]: f for f in doc["files"]}
    rel = "agents/main/agent/openclaw-agent.sqlite"
    main_t = files[rel + "#transcript/s-main"]
    assert main_t["kind"] == "transcript" and main_t["before"]["records"] == 6
    assert main_t["session_key"] == "agent:main:main"
    expected = sum(len((json.dumps({"type": "session", "version": 3, "id": "s-main"})).encode()) for _ in [0]) + \
        sum(len(line(i, "s-main").encode("utf-8")) for i in range(1, 7))
    assert main_t["before"]["bytes"] == expected
    traj = files[rel + "#trajectory/s-main"]
    assert traj["kind"] == "trajectory" and traj["before"]["records"] == 12
    assert rel + "#trajectory/s-topic" not in files  # no trajectory rows, no record
    assert sum(f["before"]["bytes"] for p, f in files.items() if p.startswith(rel)) == db_path(tmp_path).stat().st_size
    assert any("quick_check: ok" in n for n in files[rel]["notes"])
    (agent,) = doc["agents"]
    assert agent["era"] == "sqlite" and agent["sessions"] == 3
    assert agent["kinds"] == {"main": 1, "cron_run": 1, "topic": 1}
    assert agent["newest_ms"] == NOW_MS and agent["oldest_ms"] == NOW_MS - 2 * DAY_MS
    assert not [h for h in doc["health"] if h["severity"] == "critical"]


def test_scan_of_a_live_wal_database_reads_the_wal_and_changes_no_byte(tmp_path):
    writer = make_db(db_path(tmp_path), wal=True, zstd_rows=2)
    try:
        wal = Path(str(db_path(tmp_path)) + "-wal")
        assert wal.stat().st_size > 0
        before = snapshot(tmp_path)
        code, doc = scan(tmp_path)
        assert code == 0
        after = snapshot(tmp_path)
        shm = "agents/main/agent/openclaw-agent.sqlite-shm"
        # Readers only take read marks in the shared-memory file; the database and its WAL are untouched.
        assert {k: v for k, v in after.items() if k != shm} == {k: v for k, v in before.items() if k != shm}
        files = {f["path"]: f for f in doc["files"]}
        main_t = files["agents/main/agent/openclaw-agent.sqlite#transcript/s-main"]
        assert main_t["before"]["records"] == 6, "rows only in the WAL were not seen"
        assert "opened read-only" in files["agents/main/agent/openclaw-agent.sqlite"]["notes"][0]
        # zstd rows count their event_utf8_bytes as text, their blob as stored bytes.
        assert "events" in main_t["notes"][0]
        info = sqlite_era.inspect(str(db_path(tmp_path)))
        s = info["sessions"]["s-main"]
        assert s["transcript_text_bytes"] > s["transcript_bytes"]
    finally:
        writer.close()


def test_json_era_and_sqlite_era_scans_have_the_same_fields(tmp_path):
    make_db(db_path(tmp_path / "sq"))
    sessions = tmp_path / "js" / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    store = {}
    for n, (key, (sid, lines, runs)) in enumerate(SESSIONS.items()):
        store[key] = {"sessionId": sid, "updatedAt": NOW_MS - n * DAY_MS}
        (sessions / (sid + ".jsonl")).write_text("\n".join(
            [json.dumps({"type": "session", "version": 3, "id": sid})] + [line(i, sid) for i in range(1, lines + 1)]) + "\n")
    (sessions / "sessions.json").write_text(json.dumps(store, indent=2))
    _c1, sq = scan(tmp_path / "sq")
    _c2, js = scan(tmp_path / "js")
    assert set(sq["agents"][0]) == set(js["agents"][0])
    for key in ("sessions", "kinds", "oldest_ms", "newest_ms"):
        assert sq["agents"][0][key] == js["agents"][0][key], key
    sq_t = {f["path"].rsplit("/", 1)[1]: f for f in sq["files"] if f["kind"] == "transcript"}
    js_t = {f["path"].rsplit("/", 1)[1][:-len(".jsonl")]: f for f in js["files"] if f["kind"] == "transcript"}
    assert set(sq_t) == set(js_t)
    for sid in sq_t:
        assert set(sq_t[sid]) - {"session_key"} == set(js_t[sid]) - {"session_key"}
        assert sq_t[sid]["before"]["records"] == js_t[sid]["before"]["records"]


def test_online_backup_is_a_verified_consistent_private_copy(tmp_path):
    writer = make_db(db_path(tmp_path), wal=True)
    try:
        target = tmp_path / "backups" / "run1" / "agents/main/agent/openclaw-agent.sqlite"
        out = sqlite_run.backup_database(str(db_path(tmp_path)), str(target))
    finally:
        writer.close()
    assert out["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert oct(target.parent.stat().st_mode & 0o777) == "0o700"
    copy = sqlite3.connect(str(target))
    assert copy.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert copy.execute("SELECT COUNT(*) FROM transcript_events").fetchone()[0] == sum(
        1 + v[1] for v in SESSIONS.values())
    copy.close()


def plan(state: Path, ops: dict, dry_run: bool = False) -> str:
    return json.dumps({"protocol": 1, "mode": "run", "run_id": "20261121T000000Z-abcdef", "now_ms": NOW_MS,
                       "dry_run": dry_run, "state_dir": str(state), "agents": None,
                       "backup": {"dir": str(state.parent / "backups"), "gzip": False, "keep_runs": None,
                                  "max_age_s": None}, "operations": ops})


WEEKLY_LIKE = {"store": {"prune": {"cron_run": 86400}}, "orphans": {"archive_after_s": 0},
               "archives": {"delete_after_s": 0}, "transcripts": {"tiers": [{"over_bytes": 0, "keep_records": 1}]},
               "temp": {"remove_after_s": 0}, "sqlite": {}}


def test_a_run_without_an_openclaw_command_changes_nothing_and_says_so(tmp_path):
    state = tmp_path / "state"
    make_db(db_path(state))
    before = snapshot(state)
    code, doc = run_main(["run", "--plan", "-"], plan(state, WEEKLY_LIKE))
    assert code == 0, doc
    assert snapshot(state) == before
    assert all(f["action"] == "none" for f in doc["files"])
    assert any("openclaw_cmd" in n for n in doc["agents"][0]["notes"])
    assert any(f["path"].endswith("#transcript/s-main") for f in doc["files"])
    not_done = [h for h in doc["health"] if h["check"] == "sqlite-not-done"]
    assert all(h["severity"] == "warning" and h["agent"] == "main" for h in not_done)
    (pruning,) = [h for h in not_done if h["detail"].startswith("pruning disposable sessions")]
    assert "not done: no OpenClaw found" in pruning["detail"]
    (tiers,) = [h for h in not_done if h["detail"].startswith("transcript tiers (3 session(s) over 0 bytes)")]
    assert "not done: no OpenClaw found" in tiers["detail"]


def test_a_bad_openclaw_command_in_the_plan_is_refused(tmp_path):
    state = tmp_path / "state"
    make_db(db_path(state))
    code, doc = run_main(["run", "--plan", "-"], plan(state, {"sqlite": {"openclaw_cmd": "openclaw"}}))
    assert code == 2 and "operations.sqlite.openclaw_cmd" in doc["error"]


def test_half_migrated_agent_keeps_its_legacy_transcripts_and_orphans(tmp_path):
    """2026.9 installed, JSON-era files not imported: critical finding with the fix, nothing archived."""
    state = tmp_path / "state"
    make_db(db_path(state))
    sessions = state / "agents/main/sessions"
    sessions.mkdir(parents=True)
    (sessions / "sessions.json").write_text(json.dumps({"agent:main:main": {"sessionId": "old", "updatedAt": 1}}))
    (sessions / "old.jsonl").write_text('{"type":"session","version":3,"id":"old"}\n{"type":"message"}\n')
    (sessions / "orphan-1.jsonl").write_text('{"type":"session","version":3,"id":"orphan-1"}\n')
    (sessions / "gone.jsonl.deleted.2020-01-01T00-00-00.000Z").write_text("{}\n")
    os.utime(sessions / "orphan-1.jsonl", (1, 1))
    code, doc = scan(state)
    (half,) = [h for h in doc["health"] if h["check"] == "half-migrated"]
    assert half["severity"] == "critical" and "openclaw doctor --fix" in half["detail"]
    before = snapshot(state)
    code, doc = run_main(["run", "--plan", "-"], plan(state, WEEKLY_LIKE))
    assert code == 0
    assert snapshot(state) == before, "a half-migrated agent's files were changed"
    assert all(f["action"] == "none" for f in doc["files"])
    assert any("openclaw doctor --fix" in n for n in doc["agents"][0]["notes"])


def test_openclaw_reindex_leftovers_are_reported_and_left_alone(tmp_path):
    make_db(db_path(tmp_path))
    leftover = Path(str(db_path(tmp_path)) + ".memory-reindex-0f5d59ee-034e-47d9-ac97-d383e6c022b8-wal")
    leftover.write_bytes(b"w" * 5000)
    _code, doc = scan(tmp_path)
    (found,) = [h for h in doc["health"] if h["check"] == "sqlite-reindex-leftovers"]
    assert found["severity"] == "info" and "1 memory-reindex" in found["detail"]
    assert leftover.read_bytes() == b"w" * 5000


def test_trajectory_cap_keeps_the_last_runs_whole_and_touches_nothing_else(tmp_path):
    make_db(db_path(tmp_path))
    conn = sqlite3.connect(str(db_path(tmp_path)))
    before = conn.execute("SELECT COUNT(*), (SELECT COUNT(*) FROM transcript_events) FROM trajectory_runtime_events").fetchone()
    conn.close()
    removed = sqlite_run.cap_trajectories(str(db_path(tmp_path)), 1)
    conn = sqlite3.connect(str(db_path(tmp_path)))
    rows = conn.execute("SELECT session_id, run_id, COUNT(*) FROM trajectory_runtime_events GROUP BY 1, 2").fetchall()
    transcript_rows = conn.execute("SELECT COUNT(*) FROM transcript_events").fetchone()[0]
    conn.close()
    # s-main had runs 0..2 (4 events each): only run-2 is left, whole; s-cron's single run stays.
    assert sorted(rows) == [("s-cron", "run-0", 4), ("s-main", "run-2", 4)]
    assert removed == 8 and before[0] - removed == 8
    assert transcript_rows == before[1]
