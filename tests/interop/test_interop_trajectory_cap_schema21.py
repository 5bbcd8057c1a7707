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
from genuine import MAIN_KEY
from judge import DB, assert_openclaw_clean, dry_run_then_run, next_turn_sent, openclaw_state

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
    state, openclaw = openclaw_state(tmp_path, monkeypatch, node, pkg, aged.aged_state(VERSION, node, pkg, MAIN_TURNS))
    ids = {s["key"]: s["sessionId"] for s in openclaw.sessions()["sessions"]}
    runs_before = trajectory_events(state)
    assert runs_before[ids[MAIN_KEY]] > KEEP_RUNS, runs_before
    lint_before = openclaw.lint()
    real, doc = dry_run_then_run(tmp_path, state, "weekly")
    (host,) = doc["hosts"]
    assert not [h for h in host["health"] if h["check"] == "sqlite-not-done" and "trajectory" in h["detail"]], \
        host["health"]
    (main_traj,) = [f for f in real if f["path"] == "%s#trajectory/%s" % (DB, ids[MAIN_KEY])]
    assert main_traj["after"]["records"] < main_traj["before"]["records"], main_traj
    assert trajectory_events(state)[ids[MAIN_KEY]] == KEEP_RUNS
    assert {s["key"] for s in openclaw.sessions()["sessions"]} == set(aged.KEPT_KEYS)
    assert_openclaw_clean(openclaw, state / DB, lint_before, "the cap")
    sent = next_turn_sent(openclaw, state, "one more turn after the cap")
    assert "one more turn after the cap" in sent and "main turn %d" % (MAIN_TURNS - 1) in sent
    assert trajectory_events(state)[ids[MAIN_KEY]] == KEEP_RUNS + 1, "the next turn wrote no trajectory run"
