"""The trajectory cap on schema 21 (2026.9.5), judged by OpenClaw 2026.9.5 itself.

fleet's one direct delete (sqlite_run.cap_trajectories) is allowed per schema only where OpenClaw
proved it (CAP_PROVED); 19 and 23 are proved by test_interop_sqlite_releases.py. Here, on genuine
aged 2026.9.5 data (7 main turns, more runs than weekly's 5), `fleet run weekly` with OpenClaw found
on PATH: the cap is done (no "trajectory cap" not-done finding, main's trajectory shrinks to its last
5 runs), the dry run predicts it exactly, OpenClaw lists exactly the kept keys, `doctor --lint` has no
new finding, `integrity_check` and `foreign_key_check` are clean, and a further turn on main works,
sends main's last kept message and appends its own trajectory events.
"""
import sqlite3

import pytest

import aged
import genuine
from genuine import MAIN_KEY, OpenClaw
from judge import host_files, run_fleet, sent_text
from mock_model import MockModel
from test_interop_sqlite_releases import DB, openclaw_on_path, sqlite_records

pytestmark = pytest.mark.timeout(1500)
VERSION = "2026.9.5"
MAIN_TURNS = 7
KEEP_RUNS = 5  # playbooks/weekly.toml [sqlite] trajectory_keep_runs


def trajectory_events(state):
    conn = sqlite3.connect("file:%s?mode=ro" % (state / DB), uri=True)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 21
        return dict(conn.execute("SELECT session_id, COUNT(DISTINCT run_id) FROM trajectory_runtime_events "
                                 "WHERE run_id IS NOT NULL GROUP BY session_id").fetchall())
    finally:
        conn.close()


def test_weekly_caps_trajectories_on_schema_21_and_openclaw_agrees(tmp_path, monkeypatch):
    node, pkgs = genuine.install(VERSION)
    pkg = pkgs[VERSION]
    state = genuine.copy_state(aged.aged_state(VERSION, node, pkg, MAIN_TURNS), tmp_path / "state")
    openclaw = OpenClaw(node, pkg, state)
    monkeypatch.setenv("PATH", "%s:%s" % (openclaw_on_path(tmp_path, node, pkg), __import__("os").environ["PATH"]))
    ids = {s["key"]: s["sessionId"] for s in openclaw.sessions()["sessions"]}
    runs_before = trajectory_events(state)
    assert runs_before[ids[MAIN_KEY]] > KEEP_RUNS, runs_before
    lint_before = {(c, s) for c, s, _ in openclaw.lint()}
    dry = host_files(run_fleet(tmp_path, state, "weekly", hours_later=0, extra=["--dry-run"]))
    doc = run_fleet(tmp_path, state, "weekly", hours_later=0)
    real = host_files(doc)
    assert sqlite_records(dry) == sqlite_records(real), "the dry run's numbers differ from the run's"
    (host,) = doc["hosts"]
    assert not [h for h in host["health"] if h["check"] == "sqlite-not-done" and "trajectory" in h["detail"]], \
        host["health"]
    (main_traj,) = [f for f in real if f["path"] == "%s#trajectory/%s" % (DB, ids[MAIN_KEY])]
    assert main_traj["after"]["records"] < main_traj["before"]["records"], main_traj
    assert trajectory_events(state)[ids[MAIN_KEY]] == KEEP_RUNS
    assert {s["key"] for s in openclaw.sessions()["sessions"]} == set(aged.KEPT_KEYS)
    new = {(c, s) for c, s, _ in openclaw.lint()} - lint_before
    assert not new, "doctor --lint has new findings after the cap: %s" % sorted(new)
    conn = sqlite3.connect("file:%s?mode=ro" % (state / DB), uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()
    mock = MockModel.start()
    try:
        genuine.write_config(state, mock.base_url)
        assert openclaw.turn(MAIN_KEY, "one more turn after the cap").get("payloads")
    finally:
        mock.stop()
    sent = sent_text(mock.requests[0])
    assert "one more turn after the cap" in sent and "main turn %d" % (MAIN_TURNS - 1) in sent
    assert trajectory_events(state)[ids[MAIN_KEY]] == KEEP_RUNS + 1, "the next turn wrote no trajectory run"
