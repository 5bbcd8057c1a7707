"""OpenClaw 2026.9.6 (SQLite era) judges fleet's scan and changes on genuine SQLite data.

The data: real turns written by 2026.9.6 into `agents/main/agent/openclaw-agent.sqlite` (aged.py:
the disposable sessions and a topic 13 days old, main of today). Then:
- `fleet scan` (real controller, local connection) reports every session OpenClaw lists, with
  per-session records, and changes no byte of the database or its WAL;
- every shipped playbook through the controller, on a host where no OpenClaw can be found (no
  `openclaw_cmd`, none on PATH, no gateway process), prunes no session and says why per agent;
  only the steps OpenClaw proved per schema run, and OpenClaw still lists every key;
- `fleet run weekly` with `openclaw_cmd` in the inventory caps trajectories to the playbook's
  last 5 runs through the controller, and OpenClaw still lists every key, lint-clean;
- the agent with `operations.sqlite.openclaw_cmd` set runs OpenClaw's own `sessions cleanup`
  after a verified online backup, and caps trajectories to the last 2 runs (direct SQL, proved here): OpenClaw then lists exactly the keys left in `session_nodes`,
  `doctor --lint` has no new finding, and one more turn on main sends the last user message;
- a half-migrated host (a 2026.7.1 state touched by 2026.9.6, never `doctor --fix`ed) gets a
  critical finding naming the fix, and no playbook deletes or archives its legacy transcripts.
"""
import hashlib
import shutil
import json
import sqlite3
import subprocess
import sys

import pytest

import aged
import genuine
from genuine import JSON_ERA, MAIN_KEY, SQLITE_ERA, OpenClaw
from judge import host_files, listed_keys, next_turn_sent, run_fleet, write_inventory

from fleet.hostside import sqlite_era
from fleet.control.bundle import export_agent

pytestmark = pytest.mark.timeout(1500)
DB = "agents/main/agent/openclaw-agent.sqlite"


@pytest.fixture(scope="session")
def genuine_96(tmp_path_factory):
    """(node, package dir, cached genuine state dir, lint findings of an untouched copy)."""
    node, pkgs = genuine.install(SQLITE_ERA)
    # The aged data of test_interop_sqlite_releases.py (same cache: one 2026.9.6 build per CI run).
    cached = aged.aged_state(SQLITE_ERA, node, pkgs[SQLITE_ERA], 12)
    baseline = genuine.copy_state(cached, tmp_path_factory.mktemp("baseline96") / "state")
    assert (baseline / DB).is_file(), "2026.9.6 wrote no %s" % DB
    openclaw = OpenClaw(node, pkgs[SQLITE_ERA], baseline)
    return node, pkgs[SQLITE_ERA], cached, openclaw.lint()


def node_keys(state):
    conn = sqlite3.connect("file:%s?mode=ro" % (state / DB), uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT session_key FROM session_nodes")}
    finally:
        conn.close()


def runs(state, sid):
    conn = sqlite3.connect("file:%s?mode=ro" % (state / DB), uri=True)
    try:
        return conn.execute("SELECT COUNT(DISTINCT run_id) FROM trajectory_runtime_events WHERE session_id = ?",
                            (sid,)).fetchone()[0]
    finally:
        conn.close()


def digests(state):
    """sha256 of the database and its WAL (the -shm is shared memory readers mark)."""
    out = {}
    for suffix in ("", "-wal"):
        p = state / (DB + suffix)
        if p.exists():
            out[suffix] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def fleet_scan(tmp_path, state):
    import os
    inventory = write_inventory(tmp_path / "inventory.toml", state)
    proc = subprocess.run([sys.executable, "-m", "fleet", "scan", "-i", str(inventory), "--json"],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                          env=dict(os.environ, FLEET_STATE_DIR=str(tmp_path / "fleet-state")))
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_fleet_scan_lists_every_session_openclaw_lists_and_changes_no_byte(genuine_96, tmp_path):
    node, pkg, cached, _lint = genuine_96
    state = genuine.copy_state(cached, tmp_path / "state")
    before = digests(state)
    doc = fleet_scan(tmp_path, state)
    assert digests(state) == before, "fleet scan changed the database or its WAL"
    (host,) = doc["hosts"]
    listed = listed_keys(OpenClaw(node, pkg, state))
    assert listed == node_keys(state)
    per_session = [f for f in host["files"] if f["path"].startswith(DB + "#transcript/")]
    assert len(per_session) >= len(listed), "a session OpenClaw lists has no record"
    assert all(f["before"]["records"] > 0 and f["before"]["bytes"] > 0 for f in per_session)
    db = next(f for f in host["files"] if f["path"] == DB)
    assert any(n == "quick_check: ok" for n in db["notes"]), db["notes"]
    assert not [h for h in host["health"] if h["severity"] == "critical"], host["health"]


def test_openclaw_lists_every_key_after_each_shipped_playbook_on_a_sqlite_host(genuine_96, tmp_path):
    """No OpenClaw on the host (no openclaw_cmd, none on PATH): no session is pruned and the
    report says why; only the steps OpenClaw proved per schema (the trajectory cap, the space
    reclaim) run, and OpenClaw still lists every key."""
    node, pkg, cached, lint_before = genuine_96
    state = genuine.copy_state(cached, tmp_path / "state")
    keys = node_keys(state)
    for playbook in ("weekly", "daily-prune", "maintenance", "emergency"):
        doc = run_fleet(tmp_path, state, playbook)
        files = host_files(doc)
        assert all(f["action"] in ("none", "trim", "repair") for f in files), playbook
        assert not [f for f in files if f["action"] == "delete"], playbook
        (host,) = doc["hosts"]
        pruning = [h for h in host["health"] if h["check"] == "sqlite-not-done" and "pruning" in h["detail"]]
        if playbook in ("weekly", "daily-prune"):
            assert pruning and "no OpenClaw found" in pruning[0]["detail"], (playbook, host["health"])
        assert node_keys(state) == keys, playbook
        assert listed_keys(OpenClaw(node, pkg, state)) == keys, playbook


def test_weekly_with_openclaw_cmd_caps_trajectories_and_openclaw_still_lists_every_key(genuine_96, tmp_path):
    node, pkg, cached, lint_before = genuine_96
    state = genuine.copy_state(cached, tmp_path / "state")
    openclaw = OpenClaw(node, pkg, state)
    keys = node_keys(state)
    cmd = ", ".join(json.dumps(part) for part in openclaw.command)
    extra_host_keys = "openclaw_cmd = [%s]\n" % cmd
    inventory = write_inventory(tmp_path / "inventory.toml", state)
    inventory.write_text(inventory.read_text() + extra_host_keys)
    doc = run_fleet(tmp_path, state, "weekly", inventory=inventory)
    files = host_files(doc)
    db = next(f for f in files if f["path"] == DB)
    assert db["backup"] and db["error"] is None, db
    capped = [f for f in files if f["path"].startswith(DB + "#trajectory/") and f["action"] == "trim"]
    assert capped, "weekly capped no SQLite trajectory"
    for rec in capped:
        sid = rec["path"].rsplit("/", 1)[1]
        assert runs(state, sid) == 5, (sid, runs(state, sid))
    assert MAIN_KEY in node_keys(state)
    assert listed_keys(openclaw) == node_keys(state) <= keys
    new = {(c, s) for c, s, _ in openclaw.lint()} - {(c, s) for c, s, _ in lint_before}
    assert not new, "doctor --lint has new findings after weekly: %s" % sorted(new)


def test_openclaw_cleanup_through_the_agent_keeps_openclaw_happy_and_turns_working(genuine_96, tmp_path):
    node, pkg, cached, lint_before = genuine_96
    state = genuine.copy_state(cached, tmp_path / "state")
    openclaw = OpenClaw(node, pkg, state)
    agent = tmp_path / "fleet-agent.pyz"
    export_agent(agent)
    plan = {"protocol": 1, "mode": "run", "run_id": "20261121T000000Z-5a5a5a", "now_ms": 0, "dry_run": False,
            "state_dir": str(state), "agents": None,
            "backup": {"dir": str(tmp_path / "backups"), "gzip": False, "keep_runs": None, "max_age_s": None},
            "operations": {"store": {"prune": {"cron_run": 86400, "subagent": 86400, "heartbeat": 86400}},
                           "sqlite": {"openclaw_cmd": openclaw.command, "trajectory_keep_runs": 2,
                                      "vacuum": False}}}
    import time
    plan["now_ms"] = int(time.time() * 1000)
    proc = subprocess.run([sys.executable, str(agent), "run", "--plan", "-"], input=json.dumps(plan),
                          capture_output=True, text=True, timeout=600, env=openclaw.env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    db = next(f for f in result["files"] if f["path"] == DB)
    assert db["actions"][:1] == ["prune"] and db["backup"], db
    copy = sqlite_era.connect("file:%s?mode=ro" % db["backup"])  # octet_length() for SQLite < 3.43
    assert sqlite_era.quick_check(copy) == "ok"
    copy.close()
    assert hashlib.sha256(open(db["backup"], "rb").read()).hexdigest() == db["backup_sha256"]
    main_sid = next(r["path"].rsplit("/", 1)[1] for r in result["files"]
                    if r.get("session_key") == MAIN_KEY and r["kind"] == "trajectory")
    main_traj = next(r for r in result["files"] if r["path"] == DB + "#trajectory/" + main_sid)
    assert main_traj["action"] == "trim" and main_traj["after"]["records"] < main_traj["before"]["records"]
    assert runs(state, main_sid) == 2
    kept = node_keys(state)
    assert kept == set(aged.KEPT_KEYS), "OpenClaw's cleanup did not prune exactly the 13-day-old disposables"
    assert listed_keys(openclaw) == kept
    new = {(c, s) for c, s, _ in openclaw.lint()} - {(c, s) for c, s, _ in lint_before}
    assert not new, "doctor --lint has new findings after the cleanup: %s" % sorted(new)
    sent = next_turn_sent(openclaw, state, "one more turn after fleet")
    assert "one more turn after fleet" in sent and "main turn %d" % (genuine.MAIN_TURNS - 1) in sent
    assert runs(state, main_sid) == 3, "OpenClaw did not append its next run's trace after the cap"
    check = sqlite_era.connect("file:%s?mode=ro" % (state / DB))
    assert sqlite_era.quick_check(check) == "ok"
    check.close()


def test_half_migrated_host_gets_the_doctor_fix_finding_and_keeps_its_legacy_transcripts(genuine_96, tmp_path):
    """2026.9.6's database beside 2026.7.1's un-imported sessions/ (what `doctor --fix` would import).

    Found while building this: 2026.9.6 refuses every command on an unmigrated 2026.7.1 state
    ("state database schema migration required … run openclaw doctor --fix"), and `doctor --fix`
    imports the sessions in the same step; so the half-way state is the two genuine data sets side
    by side (e.g. a 2026.7 process still writing next to 2026.9, or a restored sessions/ folder).
    """
    node, pkgs = genuine.install(JSON_ERA)
    legacy_state = genuine.copy_state(genuine.genuine_state(JSON_ERA, node, pkgs[JSON_ERA]), tmp_path / "legacy")
    state = genuine.copy_state(genuine_96[2], tmp_path / "state")
    sessions = state / "agents/main/sessions"
    shutil.rmtree(sessions, ignore_errors=True)
    shutil.copytree(legacy_state / "agents/main/sessions", sessions)
    genuine.relocate(sessions, legacy_state, state)
    assert list(sessions.glob("*.jsonl")) and (state / DB).is_file()
    doc = fleet_scan(tmp_path, state)
    (host,) = doc["hosts"]
    half = [h for h in host["health"] if h["check"] == "half-migrated"]
    assert half and half[0]["severity"] == "critical" and "openclaw doctor --fix" in half[0]["detail"]
    snapshot = {p.name: p.read_bytes() for p in sessions.iterdir() if p.is_file()}
    db_before = digests(state)
    for playbook in ("weekly", "daily-prune", "maintenance"):
        files = host_files(run_fleet(tmp_path, state, playbook, hours_later=24 * 40))
        assert all(f["action"] == "none" for f in files if f["agent"] == "main"), playbook
    assert {p.name: p.read_bytes() for p in sessions.iterdir() if p.is_file()} == snapshot
    assert digests(state) == db_before
