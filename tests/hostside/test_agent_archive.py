"""Archive, expiry, temp and lock clean-up in a real sessions folder."""
import hashlib
import json
import os
import re

import pytest

from fleet.hostside.archive import (archive_orphans, archive_session_files, cleanup_temp, expire_archives,
                                 remove_stale_locks)
from fleet.hostside.context import FileInfo, RunContext
from fleet.hostside.fsutil import BackupStore, archive_timestamp
from fleet.hostside.locks import ms_to_iso
from fleet.hostside.store import load_store, prune_store
from procs import dead_pid
from trees import tree

NOW = 1763700000000
DAY_MS = 86400 * 1000
TS = archive_timestamp(NOW)
# OpenClaw's archive suffix: ISO time with ':' replaced by '-'
OPENCLAW_TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}Z$")
HEADER = '{"type":"session","version":3,"id":"%s","timestamp":"2026-11-14T08:00:00.000Z","cwd":"/w"}\n'


@pytest.fixture
def agent(tmp_path):
    state = tmp_path / "state"
    sessions = state / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    return str(state), str(sessions)


def make_ctx(state, dry_run=False, run_id="run1"):
    return RunContext(state, run_id, NOW, dry_run,
                      BackupStore(os.path.join(state, "fleet-backups", run_id), dry_run=dry_run), {})


def put(sessions, name, text, kind, sid=None, topic=None, age_ms=0, state=None):
    path = os.path.join(sessions, name)
    with open(path, "w") as f:
        f.write(text)
    t = (NOW - age_ms) / 1000.0
    os.utime(path, (t, t))
    st = os.stat(path)
    state = state or os.path.dirname(os.path.dirname(os.path.dirname(sessions)))
    return FileInfo("main", path, os.path.relpath(path, state), kind, st.st_size, st.st_mtime_ns,
                    session_id=sid, topic=topic)


def transcript(sid, records):
    return HEADER % sid + "".join('{"type":"message","id":"%08x"}\n' % i for i in range(records))


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def session_files(sessions, sid):
    return [
        put(sessions, sid + ".jsonl", transcript(sid, 3), "transcript", sid),
        put(sessions, sid + "-topic-7.jsonl", transcript(sid, 2), "transcript", sid, topic=7),
        put(sessions, sid + ".trajectory.jsonl", '{"type":"session.started"}\n' * 4, "trajectory", sid),
        put(sessions, sid + ".trajectory-path.json", '{"runtimeFile":"x"}', "trajectory", sid),
        put(sessions, sid + ".checkpoint.1234abcd.jsonl", transcript(sid, 1), "checkpoint", sid),
    ]


def test_removed_sessions_are_archived_with_openclaw_names_and_verified_backups(agent):
    state, sessions = agent
    infos = session_files(sessions, "run-1")
    keep = put(sessions, "main-1.jsonl", transcript("main-1", 5), "transcript", "main-1")
    originals = dict((i.path, sha(i.path)) for i in infos)
    removed = {"agent:main:cron:j:run:run-1": {"sessionId": "run-1", "updatedAt": 1}}
    recs = archive_session_files(make_ctx(state), "main", {"run-1": infos, "main-1": [keep]}, removed)

    assert len(recs) == 5 and all(r["action"] == "archive" and r["error"] is None for r in recs)
    assert sorted(r["kind"] for r in recs) == ["checkpoint", "trajectory", "trajectory", "transcript",
                                               "transcript"]
    for rec, info in zip(recs, infos):
        assert rec["path"] == info.rel
        assert rec["archived_to"] == info.rel + ".deleted." + TS
        assert OPENCLAW_TS_RE.match(rec["archived_to"].rsplit(".deleted.", 1)[1])
        assert not os.path.exists(info.path)
        new = os.path.join(state, rec["archived_to"])
        assert sha(new) == originals[info.path] == rec["before"]["sha256"] == rec["after"]["sha256"]
        assert sha(rec["backup"]) == originals[info.path] == rec["backup_sha256"]
        assert os.stat(rec["backup"]).st_mode & 0o777 == 0o600
        assert rec["session_key"] == "agent:main:cron:j:run:run-1"
    by_name = dict((os.path.basename(r["path"]), r) for r in recs)
    assert by_name["run-1.jsonl"]["before"]["records"] == 3
    assert by_name["run-1.trajectory.jsonl"]["before"]["records"] == 4
    assert os.path.exists(keep.path)


def test_dry_run_archive_reports_the_same_and_renames_nothing(agent, tmp_path):
    state, sessions = agent
    infos = session_files(sessions, "run-1")
    removed = {"k": {"sessionId": "run-1"}}
    before = tree(str(tmp_path))
    dry = archive_session_files(make_ctx(state, dry_run=True), "main", {"run-1": infos}, removed)
    assert tree(str(tmp_path)) == before
    real = archive_session_files(make_ctx(state), "main", {"run-1": infos}, removed)
    strip = lambda rs: [(r["path"], r["action"], r["archived_to"], r["before"], r["after"]) for r in rs]
    assert strip(dry) == strip(real)
    assert all(r["backup"] is None for r in dry)


def test_session_file_outside_the_folder_is_never_touched(agent, tmp_path):
    state, sessions = agent
    victim = tmp_path / "victim.jsonl"
    victim.write_text("precious\n")
    removed = {"agent:main:subagent:x": {"sessionId": "sub-1", "sessionFile": str(victim)},
               "agent:main:subagent:y": {"sessionId": "sub-2",
                                         "sessionFile": os.path.join(sessions, "..", "..", "..", "..",
                                                                     "victim.jsonl")}}
    before = tree(str(tmp_path))
    recs = archive_session_files(make_ctx(state), "main", {}, removed)
    assert tree(str(tmp_path)) == before
    assert len(recs) == 2 and all(r["action"] == "none" for r in recs)
    assert all("sessionFile points outside the sessions folder" in r["notes"][0] for r in recs)


def test_session_file_inside_with_another_name_is_archived(agent):
    state, sessions = agent
    other = put(sessions, "custom-name.jsonl", transcript("c", 1), "transcript", "custom-name")
    removed = {"agent:main:subagent:x": {"sessionId": "sub-1", "sessionFile": other.path}}
    recs = archive_session_files(make_ctx(state), "main", {}, removed)
    assert [r["action"] for r in recs] == ["archive"]
    assert os.path.exists(other.path + ".deleted." + TS)


def test_a_session_shared_with_a_kept_entry_stays(agent):
    state, sessions = agent
    store = {"agent:main:main": {"sessionId": "shared", "updatedAt": NOW},
             "agent:main:main:heartbeat": {"sessionId": "shared", "updatedAt": 1}}
    path = os.path.join(sessions, "sessions.json")
    with open(path, "w") as f:
        json.dump(store, f, indent=2)
    info = put(sessions, "shared.jsonl", transcript("shared", 2), "transcript", "shared")
    st = os.stat(path)
    store_info = FileInfo("main", path, os.path.relpath(path, state), "store", st.st_size, st.st_mtime_ns)
    policy = {"prune": {"heartbeat": 86400}, "strip_fields": []}
    rec, removed = prune_store(make_ctx(state), "main", store_info, policy)
    assert list(removed) == ["agent:main:main:heartbeat"] and list(load_store(path)) == ["agent:main:main"]
    recs = archive_session_files(make_ctx(state), "main", {"shared": [info]}, removed)
    assert recs == []                       # no record: a later trim pass still sees the file
    assert os.path.exists(info.path)


def test_locked_transcript_of_a_removed_session_is_skipped(agent, live_pid):
    state, sessions = agent
    infos = session_files(sessions, "run-2")
    with open(infos[0].path + ".lock", "w") as f:
        json.dump({"pid": live_pid, "createdAt": ms_to_iso(NOW)}, f)
    recs = archive_session_files(make_ctx(state), "main", {"run-2": infos}, {"k": {"sessionId": "run-2"}})
    assert set(r["action"] for r in recs) == {"skip"}
    assert all(r["error"] is None and "live pid %d" % live_pid in r["notes"][0] for r in recs)
    assert all(os.path.exists(i.path) for i in infos)


def test_orphans_archived_by_age_with_their_trajectories(agent):
    state, sessions = agent
    old = put(sessions, "old.jsonl", transcript("old", 2), "orphan", "old", age_ms=3 * DAY_MS)
    old_traj = put(sessions, "old.trajectory.jsonl", "{}\n", "trajectory", "old", age_ms=3 * DAY_MS)
    young = put(sessions, "young.jsonl", transcript("young", 2), "orphan", "young", age_ms=3600 * 1000)
    # an old orphan whose trajectory is still being written is a live session: left
    busy = put(sessions, "busy.jsonl", transcript("busy", 2), "orphan", "busy", age_ms=3 * DAY_MS)
    busy_traj = put(sessions, "busy.trajectory.jsonl", "{}\n", "trajectory", "busy", age_ms=1000)
    recs = archive_orphans(make_ctx(state), "main", [old, old_traj, young, busy, busy_traj],
                           {"archive_after_s": 86400})
    actions = dict((os.path.basename(r["path"]), r["action"]) for r in recs)
    assert actions == {"old.jsonl": "archive", "old.trajectory.jsonl": "archive", "young.jsonl": "none",
                       "busy.jsonl": "none", "busy.trajectory.jsonl": "none"}
    assert os.path.exists(old.path + ".deleted." + TS) and os.path.exists(old_traj.path + ".deleted." + TS)
    assert os.path.exists(young.path) and os.path.exists(busy.path)
    kinds = dict((os.path.basename(r["path"]), r["kind"]) for r in recs)
    assert kinds["old.jsonl"] == "orphan" and kinds["old.trajectory.jsonl"] == "trajectory"


def test_expired_archives_deleted_after_verified_backup(agent):
    state, sessions = agent
    old_ts = archive_timestamp(NOW - 40 * DAY_MS)
    new_ts = archive_timestamp(NOW - 2 * DAY_MS)
    old = put(sessions, "a.jsonl.deleted." + old_ts, transcript("a", 4), "archive")            # mtime new
    young = put(sessions, "b.jsonl.reset." + new_ts, transcript("b", 1), "archive", age_ms=90 * DAY_MS)
    bak = put(sessions, "sessions.json.bak.%d" % (NOW - 31 * DAY_MS), "{}", "archive")
    corrupt = put(sessions, "c.jsonl.corrupt-%s-0a1b2c3d.jsonl" % old_ts, "x\n", "archive")
    unnamed = put(sessions, "d.jsonl.deleted.garbage", "x\n", "archive", age_ms=60 * DAY_MS)  # by mtime
    twice = put(sessions, "e.jsonl.deleted.%s.deleted.%s" % (old_ts, new_ts), "x\n", "archive")  # the last ts
    content = dict((i.path, sha(i.path)) for i in (old, bak, corrupt, unnamed))

    recs = expire_archives(make_ctx(state), "main", [old, young, bak, corrupt, unnamed, twice],
                           {"delete_after_s": 30 * 86400})
    actions = dict((os.path.basename(r["path"]), r["action"]) for r in recs)
    assert actions == {os.path.basename(old.path): "delete", os.path.basename(young.path): "none",
                       os.path.basename(bak.path): "delete", os.path.basename(corrupt.path): "delete",
                       os.path.basename(unnamed.path): "delete", os.path.basename(twice.path): "none"}
    for rec in recs:
        if rec["action"] == "delete":
            path = os.path.join(state, rec["path"])
            assert not os.path.exists(path)
            assert sha(rec["backup"]) == content[path] == rec["before"]["sha256"]
            assert rec["after"] == {"bytes": 0, "records": 0, "sha256": None}
    assert [r for r in recs if r["path"] == old.rel][0]["before"]["records"] == 4
    assert os.path.exists(young.path)


def test_expire_dry_run_deletes_nothing_and_agrees(agent, tmp_path):
    state, sessions = agent
    old = put(sessions, "a.jsonl.deleted." + archive_timestamp(NOW - 40 * DAY_MS), "x\n", "archive")
    before = tree(str(tmp_path))
    dry = expire_archives(make_ctx(state, dry_run=True), "main", [old], {"delete_after_s": 86400})
    assert tree(str(tmp_path)) == before
    real = expire_archives(make_ctx(state), "main", [old], {"delete_after_s": 86400})
    assert [(r["action"], r["before"], r["after"]) for r in dry] == [(r["action"], r["before"], r["after"])
                                                                    for r in real]


def test_temp_leftovers(agent):
    state, sessions = agent
    theirs = put(sessions, "sessions.json.4242.0f5d59ee-034e-47d9.tmp", "{}", "temp", age_ms=2 * 3600 * 1000)
    ours = put(sessions, ".sessions.json.fleet-999999.tmp", "{}", "temp", age_ms=2 * 3600 * 1000)
    fresh = put(sessions, "sessions.json.4243.aa.tmp", "{}", "temp", age_ms=60 * 1000)
    unknown = put(sessions, "notes.tmp", "mine", "temp", age_ms=10 * DAY_MS)
    recs = cleanup_temp(make_ctx(state), "main", [theirs, ours, fresh, unknown], {"remove_after_s": 3600})
    actions = [r["action"] for r in recs]
    assert actions == ["delete", "delete", "none", "none"]
    assert not os.path.exists(theirs.path) and not os.path.exists(ours.path)
    assert os.path.exists(fresh.path) and os.path.exists(unknown.path)
    assert "not a temp file fleet knows" in recs[3]["notes"][0]


def test_stale_locks_removed_only_when_asked_and_only_when_the_owner_is_gone(agent, live_pid):
    state, sessions = agent
    pid = dead_pid()
    dead = put(sessions, "x.jsonl.lock", json.dumps({"pid": pid, "createdAt": ms_to_iso(NOW)}), "lock")
    live = put(sessions, "y.jsonl.lock", json.dumps({"pid": live_pid, "createdAt": ms_to_iso(NOW)}), "lock",
               age_ms=2 * 3600 * 1000)
    store_lock = put(sessions, "sessions.json.lock", json.dumps({"pid": live_pid, "startedAt": NOW - 60000}),
                     "lock", age_ms=60000)

    recs = remove_stale_locks(make_ctx(state), "main", [dead, live, store_lock], {"remove_stale": False})
    assert [r["action"] for r in recs] == ["none", "none", "none"]
    assert recs[0]["notes"][0].startswith("stale lock (dead pid %d)" % pid)
    assert "live pid %d" % live_pid in recs[1]["notes"][0]
    assert "a live process holds it" in recs[2]["notes"][0]

    recs = remove_stale_locks(make_ctx(state), "main", [dead, live, store_lock], {"remove_stale": True})
    assert [r["action"] for r in recs] == ["delete", "none", "none"]
    assert not os.path.exists(dead.path) and os.path.exists(live.path) and os.path.exists(store_lock.path)
    assert sha(recs[0]["backup"]) == recs[0]["before"]["sha256"]


def test_files_outside_the_sessions_folder_are_never_archived(agent, tmp_path):
    state, sessions = agent
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text(transcript("e", 1))
    st = os.stat(str(outside))
    info = FileInfo("main", str(outside), "../elsewhere.jsonl", "orphan", st.st_size, 0, session_id="e")
    before = tree(str(tmp_path))
    recs = archive_orphans(make_ctx(state), "main", [info], {"archive_after_s": 1})
    assert tree(str(tmp_path)) == before
    assert recs[0]["action"] == "none" and "outside" in recs[0]["notes"][-1]
