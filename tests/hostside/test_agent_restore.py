"""Agent-side restore on real files: a "run" made of the agent's own safe primitives (verified
backup, trim, archive by rename, delete), then restore brings every file back byte-identical,
refuses files changed since the run unless forced, and never trusts a damaged backup."""
from __future__ import annotations

import hashlib
import io
import json
import os

import pytest

from fleet.hostside.context import RunContext
from fleet.hostside.fsutil import BackupStore, safe_rename, safe_rewrite
from fleet.hostside.restore import CHANGED, run_restore

NOW_MS = 1_795_262_400_000
RUN = "20261121T120000Z-aaaaaa"
RESTORE = "20261121T130000Z-bbbbbb"


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def transcript(n: int) -> bytes:
    lines = [json.dumps({"type": "session", "id": "s1"})]
    lines += [json.dumps({"type": "message", "n": i, "text": "x" * 200}) for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def ran(tmp_path):
    """A state dir after a run: a.jsonl trimmed, b.jsonl archived, c.tmp deleted, d untouched."""
    state = tmp_path / "state"
    sessions = state / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    originals = {"a.jsonl": transcript(50), "b.jsonl": transcript(5), "c.tmp": b"temp", "d.jsonl": transcript(2)}
    for name, data in originals.items():
        (sessions / name).write_bytes(data)
        os.chmod(sessions / name, 0o600)
    before = {name: hashlib.sha256(data).hexdigest() for name, data in originals.items()}

    def run(gzip: bool):
        store = BackupStore(str(state / "fleet-backups" / RUN), use_gzip=gzip)

        def keep_header_and_last_two(src, sink):
            lines = list(src)
            for line in lines[:1] + lines[-2:]:
                sink.write(line)

        rel = "agents/main/sessions/"
        a = safe_rewrite(str(sessions / "a.jsonl"), rel + "a.jsonl", keep_header_and_last_two, store, False)
        archived = rel + "b.jsonl.deleted.2026-11-21T12-00-00.000Z"
        b = safe_rename(str(sessions / "b.jsonl"), str(state / archived), rel + "b.jsonl", store, False)
        c = store.backup(str(sessions / "c.tmp"), rel + "c.tmp")
        os.unlink(sessions / "c.tmp")
        return {"files": [
            {"path": rel + "a.jsonl", "backup": a["backup"]["path"], "backup_sha256": a["backup"]["sha256"],
             "expect_sha256": a["after"]["sha256"], "archived_to": None, "agent": "main", "kind": "transcript"},
            {"path": rel + "b.jsonl", "backup": b["backup"]["path"], "backup_sha256": b["backup"]["sha256"],
             "expect_sha256": None, "archived_to": archived, "agent": "main", "kind": "orphan"},
            {"path": rel + "c.tmp", "backup": c["path"], "backup_sha256": c["sha256"],
             "expect_sha256": None, "archived_to": None, "agent": "main", "kind": "temp"},
        ], "force": False}

    return state, sessions, before, run


def context(state, dry_run=False):
    store = BackupStore(str(state / "fleet-backups" / RESTORE), dry_run=dry_run)
    return RunContext(str(state), RESTORE, NOW_MS, dry_run, store, {}, progress_stream=io.StringIO())


@pytest.mark.parametrize("gzip", [False, True])
def test_restore_brings_every_changed_file_back_byte_identical(ran, gzip):
    state, sessions, before, run = ran
    section = run(gzip)
    assert sha(sessions / "a.jsonl") != before["a.jsonl"]

    records = run_restore(context(state), section)

    assert [r["error"] for r in records] == [None, None, None]
    assert [r["action"] for r in records] == ["restore"] * 3
    for name in ("a.jsonl", "b.jsonl", "c.tmp", "d.jsonl"):
        assert sha(sessions / name) == before[name], name
    assert os.stat(sessions / "c.tmp").st_mode & 0o777 == 0o600
    # The archive was an exact duplicate of the restored file, so it is gone.
    assert not list(sessions.glob("b.jsonl.deleted.*"))
    # Its bytes were on disk before (as the archive) and are after (at the path): no growth.
    assert records[1]["before"] == records[1]["after"]
    assert any("removed archive" in n for n in records[1]["notes"])
    assert records[2]["before"]["bytes"] == 0 and records[2]["after"]["bytes"] == 4
    a = records[0]
    assert a["after"]["sha256"] == before["a.jsonl"] and a["after"]["records"] == 50
    assert a["before"]["records"] == 2
    # What restore overwrote (the trimmed a.jsonl) was itself backed up, verified.
    assert a["backup"] and sha(a["backup"]) == a["before"]["sha256"]
    assert not list(sessions.glob(".*.tmp"))


def test_restore_again_is_a_no_op(ran):
    state, sessions, before, run = ran
    section = run(False)
    run_restore(context(state), section)
    again = run_restore(context(state), section)
    assert [r["action"] for r in again] == ["none"] * 3
    assert all(r["error"] is None for r in again)


def test_file_changed_after_the_run_is_refused_then_restored_with_force(ran):
    state, sessions, before, run = ran
    section = run(False)
    newer = (sessions / "a.jsonl").read_bytes() + b'{"type":"message","n":"new"}\n'
    (sessions / "a.jsonl").write_bytes(newer)

    records = run_restore(context(state), section)
    assert records[0]["error"] == CHANGED
    assert (sessions / "a.jsonl").read_bytes() == newer
    assert records[1]["error"] is None          # the others are still restored

    forced = run_restore(context(state), dict(section, force=True))
    assert forced[0]["error"] is None and forced[0]["action"] == "restore"
    assert sha(sessions / "a.jsonl") == before["a.jsonl"]
    # The newer content lost nothing: it sits in the restore run's own backups.
    assert open(forced[0]["backup"], "rb").read() == newer


def test_recreated_file_is_refused_without_force(ran):
    state, sessions, before, run = ran
    section = run(False)
    (sessions / "c.tmp").write_bytes(b"new temp")
    records = run_restore(context(state), section)
    assert records[2]["error"] == CHANGED
    assert (sessions / "c.tmp").read_bytes() == b"new temp"


def test_damaged_backup_is_never_restored(ran):
    state, sessions, before, run = ran
    section = run(False)
    trimmed = (sessions / "a.jsonl").read_bytes()
    with open(section["files"][0]["backup"], "r+b") as f:
        f.write(b"X")
    records = run_restore(context(state), section)
    assert "damaged" in records[0]["error"]
    assert (sessions / "a.jsonl").read_bytes() == trimmed


def test_store_is_restored_under_the_store_lock(ran):
    state, sessions, before, run = ran
    store = sessions / "sessions.json"
    store.write_bytes(b'{"agent:main:main": {"sessionId": "s1", "updatedAt": 1}}\n')
    original = store.read_bytes()
    backups = BackupStore(str(state / "fleet-backups" / RUN))
    b = backups.backup(str(store), "agents/main/sessions/sessions.json")
    store.write_bytes(b"{}\n")
    item = {"path": "agents/main/sessions/sessions.json", "backup": b["path"], "backup_sha256": b["sha256"],
            "expect_sha256": hashlib.sha256(b"{}\n").hexdigest(), "archived_to": None, "agent": "main",
            "kind": "store"}
    # A live process (this test) holds the lock: refused, untouched.
    lock = sessions / "sessions.json.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "createdAt": "2026-11-21T12:00:00.000Z"}))
    held = run_restore(context(state), {"files": [item], "force": False}, lock_wait_s=0.2)
    assert "store locked by live pid" in held[0]["error"]
    assert store.read_bytes() == b"{}\n"
    lock.unlink()
    done = run_restore(context(state), {"files": [item], "force": False})
    assert done[0]["error"] is None and store.read_bytes() == original
    assert (done[0]["before"]["records"], done[0]["after"]["records"]) == (0, 1)   # store entries
    assert not lock.exists()                 # our own lock is gone again


def test_transcript_held_by_a_live_session_is_not_replaced_even_with_force(ran):
    state, sessions, before, run = ran
    section = run(False)
    trimmed = (sessions / "a.jsonl").read_bytes()
    (sessions / "a.jsonl.lock").write_text(json.dumps({"pid": os.getpid(), "createdAt": "2026-11-21T12:00:00.000Z"}))
    records = run_restore(context(state), dict(section, force=True))
    assert "in use" in records[0]["error"] and "idle" in records[0]["error"]
    assert (sessions / "a.jsonl").read_bytes() == trimmed


def test_expired_backup_says_so(ran):
    state, sessions, before, run = ran
    section = run(False)
    os.unlink(section["files"][0]["backup"])
    records = run_restore(context(state), section)
    assert "backup no longer exists" in records[0]["error"]


def test_paths_outside_the_state_dir_or_backups_are_refused(ran, tmp_path):
    state, sessions, before, run = ran
    section = run(False)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"elsewhere")
    good = section["files"][0]
    escape = dict(good, path="../outside.txt")
    foreign_backup = dict(good, backup=str(outside),
                          backup_sha256=hashlib.sha256(b"elsewhere").hexdigest())
    records = run_restore(context(state), {"files": [escape, foreign_backup], "force": True})
    assert "outside the state dir" in records[0]["error"]
    assert "outside the backup folders" in records[1]["error"]
    assert outside.read_bytes() == b"elsewhere"
    assert sha(sessions / "a.jsonl") != before["a.jsonl"]


def test_dry_run_reports_the_restore_and_writes_nothing(ran):
    state, sessions, before, run = ran
    section = run(False)
    snapshot = {p.name: p.read_bytes() for p in sessions.iterdir()}
    records = run_restore(context(state, dry_run=True), section)
    assert [r["action"] for r in records] == ["restore"] * 3
    assert records[0]["after"]["sha256"] == before["a.jsonl"]
    assert {p.name: p.read_bytes() for p in sessions.iterdir()} == snapshot
    assert not (state / "fleet-backups" / RESTORE).exists()


def test_a_sqlite_backup_that_is_no_database_is_refused_and_the_database_left_untouched(tmp_path):
    """The restore itself is tests/hostside/test_agent_sqlite_restore.py."""
    import hashlib
    import sqlite3

    from fleet.hostside.context import RunContext
    from fleet.hostside.fsutil import BackupStore
    from fleet.hostside.restore import run_restore

    state = tmp_path / "state"
    db_dir = state / "agents" / "main" / "agent"
    db_dir.mkdir(parents=True)
    db = db_dir / "openclaw-agent.sqlite"
    conn = sqlite3.connect(str(db))
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    backups = state / "fleet-backups" / "20261121T000000Z-000001"
    (backups / "agents" / "main" / "agent").mkdir(parents=True)
    backup = backups / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    backup.write_bytes(b"an older database")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    ctx = RunContext(str(state), "20261121T010000Z-000002", 0, False,
                     BackupStore(str(state / "fleet-backups" / "20261121T010000Z-000002")), {})
    rel = "agents/main/agent/openclaw-agent.sqlite"
    (rec,) = run_restore(ctx, {"files": [{"path": rel, "backup": str(backup), "kind": "sqlite",
                                          "backup_sha256": hashlib.sha256(b"an older database").hexdigest(),
                                          "expect_sha256": before}], "force": True})
    assert "backup is not a readable SQLite database" in rec["error"]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
