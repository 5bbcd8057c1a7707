"""Restore of a SQLite-era run: the agent's real `run` (trajectory cap + reclaim, verified online
backup), then `run_restore` puts the backup back through SQLite's backup API while a connection
holds the database open in WAL mode, or refuses with the exact reason and writes nothing."""
from __future__ import annotations

import hashlib
import io
import sqlite3

from test_agent_sqlite import db_path, make_db, plan, run_main

from fleet.hostside.context import RunContext
from fleet.hostside.fsutil import BackupStore
from fleet.hostside.restore import CHANGED, run_restore

RESTORE = "20261121T130000Z-bbbbbb"
REL = "agents/main/agent/openclaw-agent.sqlite"


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def rows(path):
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return (sorted(r[0] for r in conn.execute("SELECT session_key FROM session_nodes")),
                conn.execute("SELECT COUNT(*) FROM trajectory_runtime_events").fetchone()[0])
    finally:
        conn.close()


def ran(tmp_path, keep_open=False):
    """(state, restore section, the database's rows before the run[, the WAL connection OpenClaw
    would hold open]) after a run that capped trajectories."""
    state = tmp_path / "state"
    live = make_db(db_path(state), wal=keep_open)
    before = rows(db_path(state))
    code, doc = run_main(["run", "--plan", "-"], plan(state, {"sqlite": {"trajectory_keep_runs": 1}}))
    assert code == 0, doc
    (db,) = [f for f in doc["files"] if f["path"] == REL]
    assert db["backup"] and "trim" in db["actions"], db
    assert rows(db_path(state)) != before
    section = {"files": [{"path": REL, "backup": db["backup"], "backup_sha256": db["backup_sha256"],
                          "expect_sha256": db["after"]["sha256"], "archived_to": None, "agent": "main",
                          "kind": "sqlite"}], "force": False}
    if keep_open:
        return state, section, before, live
    return state, section, before


def context(state, tmp_path, dry_run=False):
    store = BackupStore(str(tmp_path / "backups" / RESTORE), dry_run=dry_run)
    return RunContext(str(state), RESTORE, 0, dry_run, store, {}, progress_stream=io.StringIO())


def test_restore_puts_the_backup_back_while_a_reader_has_the_database_open(tmp_path):
    state, section, before, reader = ran(tmp_path, keep_open=True)  # open in WAL mode, as OpenClaw keeps it
    try:
        (rec,) = run_restore(context(state, tmp_path), section)
        assert rec["error"] is None and rec["action"] == "restore", rec
        assert rows(db_path(state)) == before
        assert reader.execute("SELECT COUNT(*) FROM trajectory_runtime_events").fetchone()[0] == before[1]
        assert reader.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        reader.close()
    assert any("session keys as in the backup: yes" in n for n in rec["notes"]), rec["notes"]
    # What the restore overwrote is itself backed up, verified.
    assert rec["backup"] and sha(rec["backup"]) == rec["backup_sha256"]
    (again,) = run_restore(context(state, tmp_path), section)
    assert again["action"] in ("none", "restore") and again["error"] is None


def test_a_database_changed_since_the_run_is_refused_and_untouched(tmp_path):
    state, section, _before = ran(tmp_path)
    conn = sqlite3.connect(str(db_path(state)), isolation_level=None)
    conn.execute("UPDATE session_nodes SET updated_at = updated_at + 1")
    conn.close()
    now = sha(db_path(state))
    (rec,) = run_restore(context(state, tmp_path), section)
    assert rec["error"] == CHANGED and sha(db_path(state)) == now


def test_a_database_migrated_since_the_run_is_refused_with_both_schemas(tmp_path):
    state, section, _before = ran(tmp_path)
    conn = sqlite3.connect(str(db_path(state)), isolation_level=None)
    conn.execute("PRAGMA user_version = 25")
    conn.close()
    now = sha(db_path(state))
    (rec,) = run_restore(context(state, tmp_path), dict(section, force=True))
    assert "declares schema 25, the backup 23" in rec["error"] and sha(db_path(state)) == now


def test_a_busy_database_is_refused_and_a_dry_run_writes_nothing(tmp_path, monkeypatch):
    from fleet.hostside import sqlite_restore
    state, section, _before, writer = ran(tmp_path, keep_open=True)
    now = sha(db_path(state))
    (dry,) = run_restore(context(state, tmp_path, dry_run=True), section)
    assert dry["action"] == "restore" and dry["error"] is None and sha(db_path(state)) == now
    monkeypatch.setattr(sqlite_restore, "RESTORE_BUSY_MS", 50)
    writer.execute("BEGIN IMMEDIATE")  # a gateway in the middle of a write, for the whole restore
    try:
        (rec,) = run_restore(context(state, tmp_path), section)
        assert sha(db_path(state)) == now
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert rec["error"] and "busy" in rec["error"], rec


def test_a_damaged_backup_is_never_restored(tmp_path):
    state, section, _before = ran(tmp_path)
    with open(section["files"][0]["backup"], "r+b") as f:
        f.seek(200)
        f.write(b"\xff\xff")
    now = sha(db_path(state))
    (rec,) = run_restore(context(state, tmp_path), section)
    assert "damaged" in rec["error"] and sha(db_path(state)) == now
