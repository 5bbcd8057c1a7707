"""Permissions, as the unprivileged user `fleet-test` (root ignores file modes), and the modes of
what fleet itself writes (issue 8, items 3 and 5).

The agent runs with `runuser -u fleet-test` on a state dir that user owns, in a /tmp folder it can
traverse. An unreadable transcript, an unreadable store, a read-only sessions folder, an
unreadable agent folder and an unreadable lock each get a clear per-file error ("permission
denied ..."), stay exactly as they were, and the other files are still handled.

Then fleet's own files: backups are 0600 files in 0700 folders, the agent cache on the host is a
0700 folder, the history database and written reports are 0600 — checked through the real CLI
with a local host, under a permissive umask.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from corpus_builder import conversation, snapshot, under
from fleet.control.bundle import export_agent

USER = "fleet-test"
PYTHON = "/usr/bin/python3"
NOW_MS = int(time.time() * 1000) + 1000


def _store(*sids: str) -> str:
    store = {"agent:main:main": {"sessionId": sids[0], "updatedAt": NOW_MS}}
    for i, sid in enumerate(sids[1:]):
        store[f"agent:main:telegram:group:-{i}"] = {"sessionId": sid, "updatedAt": NOW_MS}
    store["agent:main:cron:j:run:old"] = {"sessionId": "old", "updatedAt": 1}
    return json.dumps(store, indent=2)


@pytest.fixture
def as_user():
    """(base dir owned by fleet-test, agent path, run(argv) as fleet-test)."""
    if os.geteuid() != 0:
        pytest.fail("the permission tests need root to switch to fleet-test (root ignores modes itself)")
    account = pwd.getpwnam(USER)
    base = Path(tempfile.mkdtemp(prefix="fleet-hostile-perm-", dir="/tmp"))
    base.chmod(0o755)
    agent = base / "fleet-agent.pyz"
    export_agent(agent)

    def run(argv: list[str]) -> tuple[int, dict, str]:
        done = subprocess.run(["runuser", "-u", USER, "--", PYTHON, str(agent), *argv],
                              capture_output=True, text=True, timeout=60, cwd=base)
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
        assert done.returncode in (0, 1), done.stderr[-2000:]
        return done.returncode, json.loads(done.stdout), done.stderr

    try:
        yield base, account, run
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _state(base: Path, account) -> Path:
    state = base / "state"
    main = state / "agents" / "main" / "sessions"
    main.mkdir(parents=True)
    (main / "sessions.json").write_text(_store("s-1", "s-2"))
    (main / "s-1.jsonl").write_text(conversation("s-1"))
    (main / "s-2.jsonl").write_text(conversation("s-2"))
    good = state / "agents" / "good" / "sessions"
    good.mkdir(parents=True)
    (good / "sessions.json").write_text(_store("g-1"))
    (good / "g-1.jsonl").write_text(conversation("g-1"))
    for folder, dirs, files in os.walk(state):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.lchown(name, account.pw_uid, account.pw_gid)
    return state


def _plan(base: Path, state: Path) -> Path:
    plan = {"protocol": 1, "mode": "run", "run_id": "20261121T101500Z-perm01", "now_ms": NOW_MS, "dry_run": False,
            "state_dir": str(state), "agents": None,
            "backup": {"dir": None, "gzip": False, "keep_runs": 3, "max_age_s": None},
            "operations": {"transcripts": {"tiers": [{"over_bytes": 0, "keep_records": 4, "slim": None}],
                                           "untouched_turns": 0},
                           "store": {"prune": {"cron_run": 0}}, "orphans": {"archive_after_s": 0},
                           "locks": {"remove_stale": True}}}
    path = base / "plan.json"
    path.write_text(json.dumps(plan))
    path.chmod(0o644)
    return path


def _record(result: dict, rel: str) -> dict:
    found = [r for r in result["files"] if r["path"] == rel]
    assert len(found) == 1, (rel, [r["path"] for r in result["files"]])
    return found[0]


def _scan_and_run(base, state, run):
    before = snapshot(state)
    _, scan, _ = run(["scan", "--state-dir", str(state), "--now-ms", str(NOW_MS)])
    assert snapshot(state) == before
    code, result, _ = run(["run", "--plan", str(_plan(base, state))])
    return before, scan, code, result


def test_unreadable_transcript(as_user):
    base, account, run = as_user
    state = _state(base, account)
    bad = "agents/main/sessions/s-1.jsonl"
    (state / bad).chmod(0)
    before, scan, code, result = _scan_and_run(base, state, run)
    assert "permission denied" in _record(scan, bad)["error"]
    rec = _record(result, bad)
    assert code == 1 and "permission denied" in rec["error"] and rec["action"] == "none"
    assert under(snapshot(state), bad) == under(before, bad)
    assert _record(result, "agents/main/sessions/s-2.jsonl")["action"] == "trim"
    assert _record(result, "agents/good/sessions/g-1.jsonl")["action"] == "trim"
    _assert_private_backups(state)


def test_unreadable_store(as_user):
    base, account, run = as_user
    state = _state(base, account)
    bad = "agents/main/sessions/sessions.json"
    (state / bad).chmod(0)
    before, scan, code, result = _scan_and_run(base, state, run)
    finding = [h for h in scan["health"] if h["check"] == "store-unreadable"]
    assert finding and finding[0]["severity"] == "critical" and "permission denied" in finding[0]["detail"]
    rec = _record(result, bad)
    assert code == 1 and "permission denied" in rec["error"] and rec["action"] == "none"
    assert under(snapshot(state), bad) == under(before, bad)
    # No store-dependent step: nothing archived as an orphan; trims still run.
    assert not any(r["action"] == "archive" for r in result["files"] if r["agent"] == "main")
    assert _record(result, "agents/main/sessions/s-1.jsonl")["action"] == "trim"
    assert _record(result, "agents/good/sessions/sessions.json")["action"] == "prune"


def test_read_only_sessions_folder(as_user):
    base, account, run = as_user
    state = _state(base, account)
    sessions = state / "agents" / "main" / "sessions"
    sessions.chmod(0o555)   # no temp file can be made next to a transcript or the store
    before, scan, code, result = _scan_and_run(base, state, run)
    after = snapshot(state)
    assert code == 1
    for name in ("s-1.jsonl", "s-2.jsonl", "sessions.json"):
        rel = f"agents/main/sessions/{name}"
        rec = _record(result, rel)
        assert rec["error"] and "permission denied" in rec["error"], rec
        assert under(after, rel) == under(before, rel)
    assert not [k for k in after if ".fleet-" in k and k.endswith(".tmp")]
    assert _record(result, "agents/good/sessions/g-1.jsonl")["action"] == "trim"
    _assert_private_backups(state)


def test_unreadable_agent_folder_and_lock(as_user):
    base, account, run = as_user
    state = _state(base, account)
    locked = state / "agents" / "main" / "sessions" / "s-1.jsonl.lock"
    locked.write_text(json.dumps({"pid": 999999999}))
    os.chown(locked, account.pw_uid, account.pw_gid)
    locked.chmod(0)
    (state / "agents" / "good" / "sessions").chmod(0)
    before, scan, code, result = _scan_and_run(base, state, run)
    after = snapshot(state)
    assert code == 1
    listing = _record(result, "agents/good/sessions")
    assert "permission denied" in listing["error"]
    # A lock nobody can read might be held: the transcript is skipped, the lock left.
    rec = _record(result, "agents/main/sessions/s-1.jsonl")
    assert rec["action"] == "skip" and "permission denied" in " ".join(rec["notes"])
    for rel in ("agents/main/sessions/s-1.jsonl", "agents/main/sessions/s-1.jsonl.lock", "agents/good"):
        assert under(after, rel) == under(before, rel)
    assert _record(result, "agents/main/sessions/s-2.jsonl")["action"] == "trim"


def _assert_private_backups(state: Path) -> None:
    backups = state / "fleet-backups"
    files = 0
    for folder, dirs, names in os.walk(backups):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
        for name in names:
            st = os.stat(os.path.join(folder, name))
            assert stat.S_IMODE(st.st_mode) == 0o600, name
            assert st.st_uid == pwd.getpwnam(USER).pw_uid
            files += 1
    assert files > 0


def test_fleet_own_files_are_private(tmp_path):
    """Through the CLI with a local host and umask 022: backups 0600/0700, agent cache 0700,
    history database 0600, a written report 0600."""
    state = tmp_path / "state"
    sessions = state / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / "sessions.json").write_text(_store("s-1"))
    (sessions / "s-1.jsonl").write_text(conversation("s-1", turns=40))
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(f'[hosts.me]\nconnection = "local"\nstate_dir = "{state}"\n')
    playbook = tmp_path / "pb.toml"
    playbook.write_text("[[transcripts.tier]]\nover = \"1KB\"\nkeep_records = 4\n")
    env = dict(os.environ, FLEET_STATE_DIR=str(tmp_path / "fleet-state"), XDG_CACHE_HOME=str(tmp_path / "cache"))

    def fleet(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "import os, sys; os.umask(0o022); from fleet.cli import main; "
                               "sys.argv[0] = 'fleet'; main(sys.argv[1:])", *argv],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)

    done = fleet("run", str(playbook), "-i", str(inventory), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert any(f["action"] == "trim" for h in result["hosts"] for f in h["files"])
    _assert_modes(state / "fleet-backups", 0o700, 0o600)
    cache = tmp_path / "cache" / "fleet"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and list(cache.glob("agent-*.pyz"))
    history = list((tmp_path / "fleet-state").rglob("history.sqlite"))
    assert history and stat.S_IMODE(history[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(history[0].parent.stat().st_mode) == 0o700
    report = tmp_path / "report.html"
    done = fleet("report", "--format", "html", "-o", str(report))
    assert done.returncode == 0, done.stderr[-2000:]
    assert stat.S_IMODE(report.stat().st_mode) == 0o600


def _assert_modes(root: Path, dir_mode: int, file_mode: int) -> None:
    seen = 0
    for folder, dirs, names in os.walk(root):
        assert stat.S_IMODE(os.stat(folder).st_mode) == dir_mode, folder
        for name in names:
            assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) == file_mode, name
            seen += 1
    assert seen > 0, f"nothing under {root}"
