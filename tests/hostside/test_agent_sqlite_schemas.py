"""SQLite era across OpenClaw releases: schemas read by what the database declares, unknown
schemas left alone with one warning, the OpenClaw that may run on a database, the space reclaim
beside a live writer. The host-side program's real `main` on real SQLite files.

Schema 19 (2026.8.1 - 2026.9.4) has `transcript_events (session_id, seq, event_json, created_at)`
and nothing else; schema 23 (2026.9.6) adds `event_zstd`, `event_utf8_bytes`, ... (see
test_agent_sqlite.py). tests/interop runs the same code on genuine databases of both.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from test_agent_sqlite import NOW_MS, SESSIONS, WEEKLY_LIKE, db_path, make_db, plan, run_main, scan, snapshot

from fleet.hostside import sqlite_clean, sqlite_schema

SCHEMA_19 = """
CREATE TABLE session_nodes (session_key TEXT NOT NULL PRIMARY KEY, current_session_id TEXT NOT NULL,
  entry_json TEXT NOT NULL, updated_at INTEGER NOT NULL, archived_at INTEGER) STRICT;
CREATE TABLE session_windows (session_id TEXT NOT NULL PRIMARY KEY, session_key TEXT NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL) STRICT;
CREATE TABLE transcript_events (session_id TEXT NOT NULL, seq INTEGER NOT NULL, event_json TEXT NOT NULL,
  created_at INTEGER NOT NULL, PRIMARY KEY (session_id, seq)) STRICT;
CREATE TABLE trajectory_runtime_events (session_id TEXT NOT NULL, seq INTEGER NOT NULL, run_id TEXT,
  event_json TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (session_id, seq)) STRICT;
PRAGMA user_version = 19;
"""


def make_db19(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.executescript(SCHEMA_19)
    for key, (sid, lines, runs) in SESSIONS.items():
        conn.execute("INSERT INTO session_nodes VALUES (?, ?, '{}', ?, NULL)", (key, sid, NOW_MS))
        conn.execute("INSERT INTO session_windows VALUES (?, ?, ?, ?)", (sid, key, NOW_MS, NOW_MS))
        for i in range(lines + 1):
            conn.execute("INSERT INTO transcript_events VALUES (?, ?, ?, ?)", (sid, i, '{"type":"message"}', NOW_MS))
        for r in range(runs):
            conn.execute("INSERT INTO trajectory_runtime_events VALUES (?, ?, ?, '{}', ?)", (sid, r, "run-%d" % r, NOW_MS))
    conn.close()


def test_schema_19_is_read_by_its_own_columns(tmp_path):
    make_db19(db_path(tmp_path))
    before = snapshot(tmp_path)
    code, doc = scan(tmp_path)
    assert code == 0 and snapshot(tmp_path) == before
    files = {f["path"]: f for f in doc["files"]}
    rel = "agents/main/agent/openclaw-agent.sqlite"
    assert files[rel]["error"] is None
    assert files[rel + "#transcript/s-main"]["before"]["records"] == 6
    assert files[rel + "#trajectory/s-main"]["before"]["records"] == 3
    assert "user_version 19" in files[rel]["notes"][0]
    assert not [h for h in doc["health"] if h["severity"] in ("warning", "critical")], doc["health"]


def test_an_unknown_schema_is_one_warning_naming_it_and_a_run_changes_nothing(tmp_path):
    state = tmp_path / "state"
    make_db(db_path(state), user_version=99)
    before = snapshot(state)
    code, doc = scan(state)
    assert code == 0 and snapshot(state) == before
    rel = "agents/main/agent/openclaw-agent.sqlite"
    (db,) = [f for f in doc["files"] if f["path"] == rel]
    assert db["error"] is None and db["before"]["bytes"] == db_path(state).stat().st_size
    assert not [f for f in doc["files"] if "#" in f["path"]], "rows of an unknown schema were read"
    (warning,) = [h for h in doc["health"] if h["severity"] in ("warning", "critical")]
    assert warning["check"] == "sqlite-schema" and "user_version 99" in warning["detail"]
    assert "nothing in it is changed" in warning["detail"]
    ops = dict(WEEKLY_LIKE, sqlite={"trajectory_keep_runs": 1})
    code, doc = run_main(["run", "--plan", "-"], plan(state, ops))
    assert code == 0 and snapshot(state) == before
    assert all(f["action"] == "none" and f["error"] is None for f in doc["files"])
    (not_done,) = [h for h in doc["health"] if h["check"] == "sqlite-not-done"]
    assert "user_version 99" in not_done["detail"]


def write_fake_openclaw(folder: Path, version: str) -> Path:
    """An `openclaw` program that only answers --version (an OpenClaw this test must never run)."""
    folder.mkdir(parents=True, exist_ok=True)
    prog = folder / "openclaw"
    prog.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo \"OpenClaw %s (test)\"; exit 0; }\n"
                    "echo \"ran $*\" >> \"%s\"; exit 3\n" % (version, folder / "calls"))
    prog.chmod(0o755)
    return prog


def test_openclaw_on_path_of_another_schema_is_not_run_and_the_report_says_why(tmp_path, monkeypatch):
    state = tmp_path / "state"
    make_db(db_path(state))  # schema 23
    bin_dir = tmp_path / "bin"
    write_fake_openclaw(bin_dir, "2026.8.2")
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    before = snapshot(state)
    code, doc = run_main(["run", "--plan", "-"], plan(state, WEEKLY_LIKE))
    assert code == 0 and snapshot(state) == before
    assert not (bin_dir / "calls").exists(), "an OpenClaw of another schema was run"
    (not_done,) = [h for h in doc["health"] if h["check"] == "sqlite-not-done" and "pruning" in h["detail"]]
    assert "OpenClaw 2026.8.2 writes schema 19 but the database declares 23" in not_done["detail"]


def test_find_openclaw_prefers_the_inventory_then_path(tmp_path, monkeypatch):
    assert sqlite_schema.find_openclaw(["/opt/oc/openclaw"], str(tmp_path))[0] == ["/opt/oc/openclaw"]
    prog = write_fake_openclaw(tmp_path / "bin", "2026.9.6")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    cmd, where = sqlite_schema.find_openclaw(None, str(tmp_path))
    assert cmd == [str(prog)] and "PATH" in where
    assert sqlite_schema.usable_openclaw(cmd, dict(os.environ), 23) is None
    assert "has not proved" in sqlite_schema.usable_openclaw(
        [str(write_fake_openclaw(tmp_path / "new", "2026.10.1"))], dict(os.environ), 23)


def test_judge_prune_accepts_only_the_playbooks_kinds_and_ages():
    day = 86400 * 1000
    before = {"agent:main:main": (NOW_MS - 40 * day, None),
              "agent:main:cron:j:run:r1": (NOW_MS - 2 * day, None),
              "agent:main:subagent:s1": (NOW_MS - 3600 * 1000, None)}
    prune = {"cron_run": 86400, "subagent": 86400}
    ok = dict(before)
    del ok["agent:main:cron:j:run:r1"]
    assert sqlite_clean.judge_prune(before, ok, prune, NOW_MS) == (["agent:main:cron:j:run:r1"], None)
    young = dict(ok)
    del young["agent:main:subagent:s1"]
    removed, why = sqlite_clean.judge_prune(before, young, prune, NOW_MS)
    assert "agent:main:subagent:s1 (subagent)" in why
    no_main = dict(ok)
    del no_main["agent:main:main"]
    assert "agent:main:main (main)" in sqlite_clean.judge_prune(before, no_main, prune, NOW_MS)[1]
    archived = dict(ok, **{"agent:main:main": (NOW_MS - 40 * day, NOW_MS)})
    assert "archive" in sqlite_clean.judge_prune(before, archived, prune, NOW_MS)[1]


def test_judge_prune_with_maintenance_caps_accepts_openclaws_own_stale_and_cap_choices():
    """maintenance (stale_after, max_entries): OpenClaw may remove or archive an unprotected entry
    idle longer than stale_after, and as many of the oldest as the store had over the cap; never a
    protected kind (main, topic, a heartbeat not named in prune), never more than the cap allows."""
    day = 86400 * 1000
    before = {"agent:main:main": (NOW_MS - 90 * day, None),
              "agent:main:explicit:old": (NOW_MS - 40 * day, None),
              "agent:main:explicit:mid": (NOW_MS - 5 * day, None),
              "agent:main:explicit:new": (NOW_MS - 1 * day, None),
              "agent:main:main:heartbeat": (NOW_MS - 60 * day, None)}
    caps = {"stale_after_s": 30 * 86400}
    archived = dict(before, **{"agent:main:explicit:old": (NOW_MS - 40 * day, NOW_MS)})
    assert sqlite_clean.judge_prune(before, archived, {}, NOW_MS, caps) == ([], None)
    young = dict(archived, **{"agent:main:explicit:mid": (NOW_MS - 5 * day, NOW_MS)})
    assert "agent:main:explicit:mid (explicit)" in sqlite_clean.judge_prune(before, young, {}, NOW_MS, caps)[1]
    beat = dict(archived)
    del beat["agent:main:main:heartbeat"]
    assert "heartbeat" in sqlite_clean.judge_prune(before, beat, {}, NOW_MS, caps)[1]
    # max_entries 4 over 5 entries: one of the unprotected may go, not two, never main.
    one = dict(before)
    del one["agent:main:explicit:mid"]
    assert sqlite_clean.judge_prune(before, one, {}, NOW_MS, {"max_entries": 4}) == (["agent:main:explicit:mid"], None)
    two = dict(one)
    del two["agent:main:explicit:new"]
    assert "would remove or archive 1" in sqlite_clean.judge_prune(before, two, {}, NOW_MS, {"max_entries": 4})[1]
    no_main = dict(before)
    del no_main["agent:main:main"]
    assert "agent:main:main (main)" in sqlite_clean.judge_prune(before, no_main, {}, NOW_MS, {"max_entries": 4})[1]


def test_reclaim_gives_space_back_while_a_writer_writes_and_loses_no_write(tmp_path):
    """OpenClaw's method (incremental_vacuum in short transactions) beside a writer with OpenClaw's
    5 s busy timeout: every insert lands, integrity_check is ok, the file shrinks."""
    path = db_path(tmp_path)
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE bulk (id INTEGER PRIMARY KEY, body BLOB)")
    conn.execute("CREATE TABLE writes (id INTEGER PRIMARY KEY, at INTEGER)")
    conn.execute("BEGIN")
    for i in range(3000):
        conn.execute("INSERT INTO bulk (body) VALUES (?)", (os.urandom(2000),))
    conn.execute("COMMIT")
    conn.execute("DELETE FROM bulk WHERE id % 10 != 0")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size_before = path.stat().st_size
    stop, written, errors = threading.Event(), [], []

    def writer():
        w = sqlite3.connect(str(path), isolation_level=None, timeout=5.0)
        n = 0
        while not stop.is_set():
            try:
                w.execute("INSERT INTO writes (at) VALUES (?)", (n,))
                written.append(n)
            except sqlite3.Error as exc:
                errors.append(str(exc))
            n += 1
            time.sleep(0.002)
        w.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.05)
        notes, _done = sqlite_clean.reclaim(str(path))
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[:3]
    check = sqlite3.connect(str(path), isolation_level=None)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("SELECT COUNT(*) FROM writes").fetchone()[0] == len(written) > 10
    assert check.execute("PRAGMA freelist_count").fetchone()[0] == 0
    check.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    check.close()
    assert path.stat().st_size < size_before / 3, (size_before, path.stat().st_size, notes)
    assert any("incremental_vacuum freed" in n for n in notes), notes


def test_reclaim_skips_with_the_reason_when_the_database_stays_busy(tmp_path, monkeypatch):
    path = db_path(tmp_path)
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE bulk (id INTEGER PRIMARY KEY, body BLOB)")
    conn.executemany("INSERT INTO bulk (body) VALUES (?)", [(b"x" * 3000,) for _ in range(200)])
    conn.execute("DELETE FROM bulk")
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    monkeypatch.setattr(sqlite_clean, "RECLAIM_BUSY_MS", 50)
    conn.execute("BEGIN IMMEDIATE")  # another writer holds the write lock for the whole reclaim
    try:
        notes, done = sqlite_clean.reclaim(str(path))
    finally:
        conn.execute("ROLLBACK")
    assert not done and any("stayed busy" in n for n in notes), notes
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == free
    conn.close()
