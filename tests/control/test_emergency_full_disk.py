"""`emergency` on a 98 %-full disk with the backups off the host (issue 15).

A tmpfs (mounted by the test as root; skipped with the reason where mounting is not permitted)
holds a genuine-shaped OpenClaw state dir: a 4 MB transcript, a trajectory of 16 runs, old
archives. It is filled to 98 %. With backup_to = "controller" the run deletes old archives first,
rewrites the biggest files first and retries what found no room, so it frees at least half of
the state dir's bytes; the report says the free space before and after; `fleet restore` brings
every file back byte-identical (after the filler is removed: restoring needs the room back).
With backup_to = "auto" the host has no room, so the controller is chosen, and the report says so.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fleet.demo.gen import KB, HostSpec, generate_host, tiny_agent
from fleet.report.render import render_run
from fleet.report.results import RunResult
from fullfs import free_bytes, leave_free, stray_files, tmpfs, tree_bytes
from helpers import agents_snapshot as snapshot, cli_status as cli

MB = 1024 * KB
DISK = 16 * MB


def full_host(disk: Path, tmp_path: Path, backup_to: str) -> tuple[Path, Path]:
    state = disk / "openclaw"
    spec = HostSpec("h", (tiny_agent("main", main_bytes=4 * MB, main_records=1200, trajectory_runs=16,
                                     trajectory_run_kb=160, n_archives=4, age_days=30),))
    generate_host(state, spec, seed=11, now_ms=int(time.time() * 1000))
    inv = tmp_path / "inventory.toml"
    inv.write_text(f'[hosts.h]\nconnection = "local"\nstate_dir = "{state}"\nbackup_to = "{backup_to}"\n')
    leave_free(disk, DISK // 50)                         # 98 % full
    return state, inv


def test_emergency_frees_half_a_full_disk_and_restore_brings_it_back(tmp_path, control_dir, capsys):
    with tmpfs(tmp_path / "disk", DISK) as disk:
        state, inv = full_host(disk, tmp_path, "controller")
        before = snapshot(state)
        state_bytes = tree_bytes(state / "agents")
        free_before = free_bytes(disk)

        code = cli(["run", "emergency", "-i", str(inv), "--json"])
        run = json.loads(capsys.readouterr().out)
        host = run["hosts"][0]
        assert code == 0, [f["error"] for f in host["files"] if f["error"]]
        kinds = {f["kind"] for f in host["files"] if f["action"] not in ("none", "skip")}
        assert {"transcript", "trajectory", "archive"} <= kinds, kinds
        freed = state_bytes - tree_bytes(state / "agents")
        assert freed >= state_bytes / 2, (freed, state_bytes)
        assert host["disk"]["before"]["free"] == pytest.approx(free_before, abs=64 * KB)
        assert host["disk"]["after"]["free"] >= free_before + freed - 64 * KB
        assert free_bytes(disk) >= free_before + freed - 64 * KB
        assert stray_files(disk) == [] and tree_bytes(state / "fleet-backups") == 0
        report = render_run(RunResult.from_json(run), "table")
        assert "free before" in report and "98% full" in report

        (disk / "filler.bin").unlink()
        assert cli(["restore", run["run_id"], "-i", str(inv), "--json"]) == 0
        capsys.readouterr()
        assert snapshot(state) == before


def test_auto_sends_backups_to_the_controller_when_the_host_is_full(tmp_path, control_dir, capsys):
    with tmpfs(tmp_path / "disk", DISK) as disk:
        state, inv = full_host(disk, tmp_path, "auto")
        assert cli(["run", "emergency", "-i", str(inv), "--json"]) == 0
        run = json.loads(capsys.readouterr().out)
        host = run["hosts"][0]
        backups = [f["backup"] for f in host["files"] if f["backup"]]
        assert backups and all(b.startswith("controller:") for b in backups)
        notes = [n for a in host["agents"] for n in a["notes"] if n.startswith("backups to the controller")]
        assert notes and " free in " in notes[0] and "may need" in notes[0]
        assert "backups to the controller" in render_run(RunResult.from_json(run), "table")


def test_changes_that_cannot_complete_leave_no_backup_on_the_controller(tmp_path, control_dir, capsys):
    """16 KB free and no archive old enough to make room: no rewrite fits, each is tried twice; every
    backup streamed for them is dropped again on the controller, and the host's disk is as it was."""
    with tmpfs(tmp_path / "disk", DISK) as disk:
        state, inv = full_host(disk, tmp_path, "controller")
        for archive in (state / "agents" / "main" / "sessions").glob("*.deleted.*"):
            archive.unlink()
        leave_free(disk, 16 * KB)
        before = snapshot(state)
        free_before = free_bytes(disk)

        assert cli(["run", "emergency", "-i", str(inv), "--json"]) == 1
        run = json.loads(capsys.readouterr().out)
        host = run["hosts"][0]
        failed = [f for f in host["files"] if f["error"]]
        assert failed and all("the backup taken for this change was removed" in f["error"] for f in failed)
        assert all(f["backup"] is None for f in failed)
        assert snapshot(state) == before and free_bytes(disk) == free_before
        kept = [p for p in (control_dir / "backups").rglob("*") if p.is_file()]
        assert kept == [] and host["backup_bytes"] == 0
        assert stray_files(disk) == []
