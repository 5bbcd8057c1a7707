"""OpenClaw's lock files, judged on real files with real processes."""
import json
import os
import subprocess
import time

import pytest

from fleet.hostside.fsutil import FileError
from fleet.hostside.locks import (StoreLock, iso_to_ms, lock_state, ms_to_iso, proc_start_ticks,
                               transcript_in_use)
from procs import dead_pid

NOW = 1763700000000


def write_lock(path, body, age_ms=0, now_ms=NOW):
    with open(path, "w") as f:
        f.write(body if isinstance(body, str) else json.dumps(body))
    t = (now_ms - age_ms) / 1000.0
    os.utime(path, (t, t))
    return path


def test_iso_times_both_forms():
    assert iso_to_ms("2026-07-01T12:34:56.789Z") == iso_to_ms("2026-07-01T12-34-56.789Z")
    assert ms_to_iso(iso_to_ms("2026-07-01T12:34:56.789Z")) == "2026-07-01T12:34:56.789Z"
    assert iso_to_ms("2026-07-01T14:34:56.789+02:00") == iso_to_ms("2026-07-01T12:34:56.789Z")
    assert iso_to_ms("not a time") is None and iso_to_ms(5) is None


def test_store_lock_2026_2_body_live_and_fresh_is_not_stale(tmp_path, live_pid):
    lock = write_lock(str(tmp_path / "sessions.json.lock"), {"pid": live_pid, "startedAt": NOW - 2000},
                      age_ms=2000)
    st = lock_state(lock, NOW)
    assert st["kind"] == "store" and st["pid"] == live_pid and st["alive"] is True
    assert st["stale"] is False and st["body_ok"] is True and st["age_s"] == pytest.approx(2.0)


def test_store_lock_older_than_30s_is_stale_even_with_a_live_pid(tmp_path, live_pid):
    lock = write_lock(str(tmp_path / "sessions.json.lock"), {"pid": live_pid, "startedAt": NOW - 45000},
                      age_ms=45000)
    st = lock_state(lock, NOW)
    assert st["alive"] is True and st["stale"] is True and "over 30 s" in st["reason"]


def test_store_lock_2026_4_body_with_recycled_pid_is_stale(tmp_path, live_pid):
    ticks = proc_start_ticks(live_pid)[0]
    good = write_lock(str(tmp_path / "sessions.json.lock"),
                      {"pid": live_pid, "createdAt": ms_to_iso(NOW - 1000), "starttime": ticks}, age_ms=1000)
    assert lock_state(good, NOW)["stale"] is False
    recycled = write_lock(good, {"pid": live_pid, "createdAt": ms_to_iso(NOW - 1000), "starttime": ticks + 7},
                          age_ms=1000)
    st = lock_state(recycled, NOW)
    assert st["alive"] is False and st["stale"] is True and "recycled pid" in st["reason"]


def test_dead_pid_lock_is_stale(tmp_path):
    pid = dead_pid()
    st = lock_state(write_lock(str(tmp_path / "sessions.json.lock"), {"pid": pid, "startedAt": NOW}), NOW)
    assert st["alive"] is False and st["stale"] is True and st["reason"] == "dead pid %d" % pid


def test_transcript_lock_live_pid_is_never_stale_and_means_in_use(tmp_path, live_pid):
    transcript = str(tmp_path / "abc.jsonl")
    open(transcript, "w").close()
    write_lock(transcript + ".lock", {"pid": live_pid, "createdAt": ms_to_iso(NOW - 3 * 3600 * 1000),
                                      "maxHoldMs": 60000}, age_ms=3 * 3600 * 1000)
    st = lock_state(transcript + ".lock", NOW)
    assert st["kind"] == "transcript" and st["stale"] is False
    busy, detail = transcript_in_use(transcript, NOW)
    assert busy is True and ("live pid %d" % live_pid) in detail


def test_transcript_lock_of_dead_pid_is_not_in_use(tmp_path):
    transcript = str(tmp_path / "abc.jsonl")
    pid = dead_pid()
    write_lock(transcript + ".lock", {"pid": pid, "createdAt": ms_to_iso(NOW)})
    busy, detail = transcript_in_use(transcript, NOW)
    assert busy is False and "dead pid %d" % pid in detail
    assert transcript_in_use(str(tmp_path / "other.jsonl"), NOW) == (False, None)


def test_transcript_lock_without_pid_is_in_use_until_30_min(tmp_path):
    transcript = str(tmp_path / "abc.jsonl")
    write_lock(transcript + ".lock", "", age_ms=10 * 60 * 1000)
    assert transcript_in_use(transcript, NOW)[0] is True
    write_lock(transcript + ".lock", "garbage", age_ms=31 * 60 * 1000)
    assert transcript_in_use(transcript, NOW)[0] is False


def test_store_lock_body_is_readable_by_both_protocols_and_removed_on_exit(tmp_path):
    store = str(tmp_path / "sessions.json")
    with StoreLock(store, NOW) as lock:
        body = json.loads(open(store + ".lock").read())
        assert body["pid"] == os.getpid()
        assert isinstance(body["startedAt"], int)
        assert iso_to_ms(body["createdAt"]) == body["startedAt"]
        assert abs(body["startedAt"] - time.time() * 1000) < 60000   # the host's clock, for OpenClaw
        assert os.stat(store + ".lock").st_mode & 0o777 == 0o600
    assert not os.path.exists(store + ".lock") and lock.notes == []


def test_store_lock_replaced_while_held_is_not_removed(tmp_path):
    store = str(tmp_path / "sessions.json")
    with StoreLock(store, NOW) as lock:
        os.unlink(store + ".lock")
        write_lock(store + ".lock", {"pid": 1, "startedAt": NOW})
    assert json.loads(open(store + ".lock").read())["pid"] == 1
    assert "replaced by another process" in lock.notes[0]


def test_store_lock_never_taken_from_a_live_pid(tmp_path, live_pid):
    store = str(tmp_path / "sessions.json")
    wall = int(time.time() * 1000)
    # held 45 s: stale by age, but its owner lives: left alone
    write_lock(store + ".lock", {"pid": live_pid, "startedAt": wall - 45000}, age_ms=45000, now_ms=wall)
    before = open(store + ".lock").read()
    with pytest.raises(FileError) as err:
        with StoreLock(store, wall, wait_s=0.2):
            pass
    assert "store locked by live pid %d" % live_pid in str(err.value)
    assert open(store + ".lock").read() == before


def test_store_lock_released_while_waiting_is_taken(tmp_path, live_pid):
    store = str(tmp_path / "sessions.json")
    write_lock(store + ".lock", {"pid": live_pid, "startedAt": NOW})
    # a gateway that lets go of the lock 0.3 s from now
    releaser = subprocess.Popen(["sh", "-c", "sleep 0.3; rm -f '%s.lock'" % store])
    try:
        with StoreLock(store, NOW, wait_s=10) as lock:
            assert json.loads(open(store + ".lock").read())["pid"] == os.getpid()
        assert lock.notes == []
    finally:
        releaser.wait()


def test_dead_pid_store_lock_taken_over(tmp_path):
    store = str(tmp_path / "sessions.json")
    pid = dead_pid()
    write_lock(store + ".lock", {"pid": pid, "createdAt": ms_to_iso(NOW)})
    with StoreLock(store, NOW, wait_s=0.2) as lock:
        assert json.loads(open(store + ".lock").read())["pid"] == os.getpid()
    assert lock.notes == ["took over stale store lock (dead pid %d)" % pid]
    assert not os.path.exists(store + ".lock")


def test_dry_run_creates_no_lock_but_reports_a_live_one(tmp_path, live_pid):
    store = str(tmp_path / "sessions.json")
    with StoreLock(store, NOW, dry_run=True):
        assert not os.path.exists(store + ".lock")
    assert os.listdir(str(tmp_path)) == []
    write_lock(store + ".lock", {"pid": live_pid, "startedAt": NOW})
    with pytest.raises(FileError):
        with StoreLock(store, NOW, dry_run=True, wait_s=0.1):
            pass
    pid = dead_pid()
    write_lock(store + ".lock", {"pid": pid, "startedAt": NOW})
    with StoreLock(store, NOW, dry_run=True, wait_s=0.1) as lock:
        pass
    assert json.loads(open(store + ".lock").read())["pid"] == pid       # a dry run removes nothing
    assert lock.notes == ["would take over stale store lock (dead pid %d)" % pid]
