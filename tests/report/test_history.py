"""Run history: exact round trip, id lookup, permissions, atomic and concurrent recording,
schema migration from older databases, size series for trends."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fleet.report import history
from fleet.errors import UnknownRunError
from fleet.report.results import RunResult
from helpers import make_run

REPO = Path(__file__).resolve().parents[2]


def test_record_and_load_round_trip_exactly(control_dir):
    run = make_run()
    assert history.record_run(run, {"argv": ["fleet", "run", "weekly"], "controller": "op@desk"}) == run.run_id
    loaded = history.load_run(run.run_id)
    assert loaded.to_json() == run.to_json()
    listed = history.list_runs(10)
    assert listed[0]["run_id"] == run.run_id
    assert listed[0]["controller"] == "op@desk" and listed[0]["argv"] == ["fleet", "run", "weekly"]
    assert listed[0]["totals"]["before_bytes"] == 9646899


def test_database_is_private(control_dir):
    history.record_run(make_run())
    assert (control_dir / "history.sqlite").exists()
    assert os.stat(control_dir).st_mode & 0o777 == 0o700
    assert os.stat(control_dir / "history.sqlite").st_mode & 0o777 == 0o600


def test_latest_prefix_and_unknown_ids():
    history.record_run(make_run("20261120T090000Z-aaaaaa", day=20))
    history.record_run(make_run("20261121T090000Z-bbbbbb", day=21))
    assert history.load_run(None).run_id == "20261121T090000Z-bbbbbb"
    assert history.load_run("20261120").run_id == "20261120T090000Z-aaaaaa"
    with pytest.raises(UnknownRunError, match="ambiguous"):
        history.load_run("2026112")
    with pytest.raises(UnknownRunError) as err:
        history.load_run("nope")
    assert "20261121T090000Z-bbbbbb" in str(err.value) and "20261120T090000Z-aaaaaa" in str(err.value)


def test_empty_history_says_so():
    with pytest.raises(UnknownRunError, match="no runs recorded yet"):
        history.load_run(None)


def test_a_run_that_fails_to_record_leaves_nothing_behind():
    good = make_run("20261121T090000Z-aaaaaa")
    history.record_run(good)
    # Two hosts of the same name violate the hosts table's key half way through the insert.
    broken = make_run("20261121T100000Z-bbbbbb", hosts=("pc-a", "pc-a"))
    with pytest.raises(history.HistoryError, match="UNIQUE constraint failed"):
        history.record_run(broken)
    assert [r["run_id"] for r in history.list_runs(10)] == [good.run_id]
    db = history.connect()
    try:
        assert db.execute("SELECT count(*) FROM files WHERE run_id = ?", (broken.run_id,)).fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM agent_sizes WHERE run_id = ?", (broken.run_id,)).fetchone()[0] == 0
    finally:
        db.close()


RECORDER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    sys.path.insert(0, {tests!r})
    from helpers import make_run
    from fleet.report import history
    tag, go = sys.argv[1], sys.argv[2]
    while not os.path.exists(go):
        time.sleep(0.005)
    for i in range(15):
        history.record_run(make_run("20261121T1000%02dZ-%s" % (i, tag), sizes=[(1000 + j, 10) for j in range(40)]))
    print("done", tag)
""")


def test_two_processes_recording_at_once_both_complete(tmp_path, control_dir):
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER.format(repo=str(REPO), tests=str(REPO / "tests")))
    go = tmp_path / "go"
    env = dict(os.environ, FLEET_STATE_DIR=str(control_dir))
    procs = [subprocess.Popen([sys.executable, str(script), tag, str(go)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for tag in ("aaaaaa", "bbbbbb")]
    try:
        go.touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = history.list_runs(100)
    assert len(runs) == 30
    for r in runs:
        assert len(history.load_run(r["run_id"]).hosts[0].files) == 40
        assert r["totals"]["files"] == 40


def create_v1_database(path: Path, run: RunResult) -> None:
    """A database as the first schema version wrote it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None)
    history.MIGRATIONS[0](db)
    doc = run.to_json()
    db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?)",
               (run.run_id, run.kind, run.playbook, int(run.dry_run), run.started_at, run.finished_at,
                int(run.ok), json.dumps(doc["totals"]), json.dumps(doc)))
    db.execute("PRAGMA user_version = 1")
    db.close()


def test_migrates_a_v1_database_in_place(control_dir):
    old = make_run("20261101T100000Z-oldold", day=1)
    create_v1_database(control_dir / "history.sqlite", old)
    assert history.load_run(None).to_json() == old.to_json()
    db = history.connect()
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION
    finally:
        db.close()
    # Trend data was backfilled from the stored document, and new runs record alongside.
    assert [p.bytes for p in history.agent_size_series()[("pc-a", "main")]] == [9646899, 188743]
    history.record_run(make_run("20261121T100000Z-newnew"))
    assert [r["run_id"] for r in history.list_runs(5)] == ["20261121T100000Z-newnew", old.run_id]


def test_a_damaged_database_is_one_readable_error(control_dir, capsys):
    from fleet.cli import main

    control_dir.mkdir()
    (control_dir / "history.sqlite").write_bytes(b"this is not a database, just junk" * 100)
    with pytest.raises(SystemExit) as exit_:
        main(["history"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("fleet: run history ") and "history.sqlite" in err and "Traceback" not in err


def test_a_v2_database_learns_which_run_a_restore_undid(control_dir):
    control_dir.mkdir()
    db = sqlite3.connect(str(control_dir / "history.sqlite"), isolation_level=None)
    history.MIGRATIONS[0](db)
    history.MIGRATIONS[1](db)
    db.execute("PRAGMA user_version = 2")
    db.close()
    restore = make_run("20261122T100000Z-rest00")
    restore = RunResult(restore.run_id, "restore", None, False, restore.started_at, restore.finished_at,
                        restore.hosts, extra={"restored_run": "20261121T101500Z-3fa2c1"})
    # Written as fleet with schema v2 wrote it: no restored_run column yet.
    db = sqlite3.connect(str(control_dir / "history.sqlite"), isolation_level=None)
    doc = restore.to_json()
    db.execute("INSERT INTO runs (run_id, kind, playbook, dry_run, started_at, finished_at, ok, totals, document)"
               " VALUES (?,?,?,?,?,?,?,?,?)", (restore.run_id, "restore", None, 0, restore.started_at,
                                               restore.finished_at, 1, json.dumps(doc["totals"]), json.dumps(doc)))
    db.close()
    assert history.list_runs(5)[0]["restored_run"] == "20261121T101500Z-3fa2c1"
    assert history.load_run(None).extra["restored_run"] == "20261121T101500Z-3fa2c1"


def test_an_empty_v0_file_gets_the_whole_schema(control_dir):
    control_dir.mkdir()
    (control_dir / "history.sqlite").write_bytes(b"")
    history.record_run(make_run())
    assert len(history.list_runs(5)) == 1


def test_size_series_from_scans_runs_and_dry_runs():
    history.record_run(make_run("20261119T100000Z-scan01", kind="scan", day=19, sizes=((5_000_000, 0),)))
    history.record_run(make_run("20261120T100000Z-dry001", dry_run=True, day=20, sizes=((6_000_000, 100),)))
    history.record_run(make_run("20261121T100000Z-run001", day=21, sizes=((7_000_000, 200),)))
    series = history.agent_size_series(host="pc-a", agent="main")
    points = series[("pc-a", "main")]
    # scan: one point; dry run: only its size before; real run: before and after.
    assert [p.bytes for p in points] == [5_000_000, 6_000_000, 7_000_000, 200]
    assert points == sorted(points, key=lambda p: p.at_ms)
    assert history.agent_size_series(host="other") == {}


def test_two_fleet_run_processes_both_appear_complete_in_history(tmp_path, control_dir, capsys):
    """The issue's case: two real `fleet run` processes (local hosts) record at the same time."""
    import time as _time

    from fleet.cli import main
    from fleet.demo.gen import HostSpec, generate_host, tiny_agent

    now = int(_time.time() * 1000)
    commands = []
    for i in range(2):
        host_dir = tmp_path / f"fleet{i}"
        generate_host(host_dir / "state", HostSpec(f"h{i}", (tiny_agent("main", 24 * 1024, 30),)), seed=i, now_ms=now)
        (host_dir / "inventory.toml").write_text(
            f'[hosts.local{i}]\nconnection = "local"\nstate_dir = "{host_dir / "state"}"\n')
        commands.append([sys.executable, "-m", "fleet", "run", "weekly", "--dry-run", "--json",
                         "-i", str(host_dir / "inventory.toml")])
    env = dict(os.environ, FLEET_STATE_DIR=str(control_dir))
    procs = [subprocess.Popen(c, env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for c in commands]
    try:
        outs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs
    printed = {doc["run_id"]: doc for doc in (json.loads(out) for out, _ in outs)}

    try:
        main(["history", "--all-fleets", "--json"])     # two inventories: two fleets
    except SystemExit as exc:
        assert not exc.code
    listed = json.loads(capsys.readouterr().out)["runs"]
    assert sorted(r["run_id"] for r in listed) == sorted(printed)
    for run_id, doc in printed.items():
        assert history.load_run(run_id).to_json() == doc
        assert doc["hosts"][0]["files"]


def test_runs_started_in_the_same_second_list_in_the_order_they_were_recorded(tmp_path, monkeypatch):
    from fleet.report.results import RunResult

    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))
    # Random suffixes chosen so that run-id order is the reverse of recording order.
    ids = ["20261121T101500Z-ffffff", "20261121T101500Z-888888", "20261121T101500Z-000000"]
    for run_id, kind in zip(ids, ["run", "restore", "restore"]):
        history.record_run(RunResult(run_id=run_id, kind=kind, playbook="weekly", dry_run=False,
                                     started_at="2026-11-21T10:15:00Z", finished_at="2026-11-21T10:15:00Z",
                                     hosts=()))
    assert [r["run_id"] for r in history.list_runs(5)] == list(reversed(ids))
    assert history.load_run(None).run_id == ids[-1]
