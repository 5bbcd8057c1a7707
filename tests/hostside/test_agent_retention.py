"""Backup retention on real folders: keep N newest runs, expire by age, never the current run,
never anything that is not a real run folder, never through a symlink."""
from __future__ import annotations

import calendar
import os
import time

from fleet.hostside.retention import expire_backups, run_id_epoch_ms, select_expired

DAY_MS = 86400 * 1000
NOW_MS = calendar.timegm((2026, 11, 21, 12, 0, 0)) * 1000


def run_id(days_ago: float, suffix: str = "abc123") -> str:
    t = (NOW_MS - days_ago * DAY_MS) / 1000
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t)) + "-" + suffix


def make_run_dir(parent, name, size):
    d = parent / name / "agents" / "main" / "sessions"
    d.mkdir(parents=True)
    (d / "s.jsonl").write_bytes(b"x" * size)
    return parent / name


def test_run_id_time_is_read_from_the_name():
    assert run_id_epoch_ms("20261121T120000Z-3fa2c1") == NOW_MS
    assert run_id_epoch_ms("notes") is None
    assert run_id_epoch_ms("20261121T120000Z-3fa2c1/../x") is None


def test_select_keeps_newest_and_current():
    names = [run_id(d) for d in (5, 4, 3, 2, 1)]
    assert select_expired(names, names[-1], 2, None, NOW_MS) == names[:3]
    # The current run is kept even when it is not among the newest (a clock step backwards).
    assert select_expired(names, names[0], 2, None, NOW_MS) == names[1:4]
    assert select_expired(names, names[-1], None, 3 * 86400 - 60, NOW_MS) == names[:3]
    assert select_expired(names, names[-1], None, None, NOW_MS) == []


def test_keep_runs_deletes_whole_old_run_dirs_and_reports_bytes(tmp_path):
    parent = tmp_path / "fleet-backups"
    ids = [run_id(d) for d in (4, 3, 2, 1, 0)]
    for i, name in enumerate(ids):
        make_run_dir(parent, name, 1000 * (i + 1))
    out = expire_backups(str(parent), ids[-1], 2, None, NOW_MS, dry_run=False)
    assert out["expired_runs"] == ids[:3]
    assert out["expired_bytes"] == 1000 + 2000 + 3000
    assert sorted(p.name for p in parent.iterdir()) == ids[3:]


def test_max_age_expires_old_runs_but_never_the_current_one(tmp_path):
    parent = tmp_path / "fleet-backups"
    old_current = run_id(60)
    ids = [run_id(40), run_id(20), run_id(1)]
    for name in ids + [old_current]:
        make_run_dir(parent, name, 10)
    out = expire_backups(str(parent), old_current, None, 30 * 86400, NOW_MS, dry_run=False)
    assert out["expired_runs"] == [ids[0]]
    assert (parent / old_current).is_dir()
    assert sorted(p.name for p in parent.iterdir()) == sorted([old_current, ids[1], ids[2]])


def test_dry_run_reports_the_same_and_deletes_nothing(tmp_path):
    parent = tmp_path / "fleet-backups"
    ids = [run_id(d) for d in (3, 2, 1)]
    for name in ids:
        make_run_dir(parent, name, 500)
    dry = expire_backups(str(parent), ids[-1], 1, None, NOW_MS, dry_run=True)
    assert sorted(p.name for p in parent.iterdir()) == ids
    real = expire_backups(str(parent), ids[-1], 1, None, NOW_MS, dry_run=False)
    assert dry["expired_runs"] == real["expired_runs"] == ids[:2]
    assert dry["expired_bytes"] == real["expired_bytes"] == 1000


def test_leaves_foreign_entries_and_never_follows_symlinks(tmp_path):
    parent = tmp_path / "fleet-backups"
    parent.mkdir()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    old = run_id(100, "aaaaaa")
    os.symlink(precious, parent / old)                        # a symlink named like a run
    (parent / run_id(99, "bbbbbb")).write_text("a file")      # a file named like a run
    (parent / "notes").mkdir()                                # not a run id
    victim = make_run_dir(parent, run_id(98, "cccccc"), 100)
    os.symlink(precious, victim / "link-out")                  # a symlink inside an expiring run
    current = run_id(0)
    make_run_dir(parent, current, 10)

    out = expire_backups(str(parent), current, 1, 86400, NOW_MS, dry_run=False)

    assert out["expired_runs"] == [victim.name]
    assert out["expired_bytes"] == 100
    assert (precious / "keep.txt").read_text() == "mine"
    assert os.path.islink(parent / old)
    assert (parent / run_id(99, "bbbbbb")).is_file()
    assert (parent / "notes").is_dir()
    assert not victim.exists()


def test_missing_backup_folder_is_nothing_to_do(tmp_path):
    out = expire_backups(str(tmp_path / "absent"), run_id(0), 3, 86400, NOW_MS, dry_run=False)
    assert out["expired_runs"] == [] and out["expired_bytes"] == 0


def test_the_agent_expires_old_backups_at_the_end_of_a_run(tmp_path):
    """Through the real agent program: `run` with keep_runs=2 keeps the current run and the
    newest older one, deletes the rest and reports them as expired bytes."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from fleet.demo.gen import HostSpec, generate_host, tiny_agent

    state = tmp_path / "state"
    generate_host(state, HostSpec("h", (tiny_agent("main", 24 * 1024, 30),)), seed=3, now_ms=NOW_MS)
    parent = state / "fleet-backups"
    old = [run_id(d, "0000%02d" % d) for d in (30, 20, 10)]
    for i, name in enumerate(old):
        make_run_dir(parent, name, 1000 * (i + 1))
    current = run_id(0, "cccccc")
    plan = {"protocol": 1, "mode": "run", "run_id": current, "now_ms": NOW_MS, "dry_run": False,
            "state_dir": str(state), "backup": {"keep_runs": 2, "max_age_s": None},
            "operations": {"store": {"prune": {"cron_run": 86400}}}}
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "fleet.hostside", "run", "--plan", "-"], input=json.dumps(plan),
                          capture_output=True, text=True, cwd=str(repo), timeout=120)
    result = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert result["backup"]["expired_runs"] == old[:2]
    assert result["backup"]["expired_bytes"] == 1000 + 2000
    # The current run's folder holds its journal.
    assert sorted(p.name for p in parent.iterdir()) == [old[2], current]
