"""The history completes itself from the hosts' journals (fleet/control/journal.py), through the real
CLI on a local host: a run whose agent was SIGKILLed is recorded with no files; the next `fleet scan`
reads that host's journal and the run then lists every file that changed, `fleet history sync`
finds nothing more, and `fleet restore` puts the files back byte-identical."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fleet.demo.gen import HostSpec, generate_host, tiny_agent
from helpers import run_cli
from helpers import SMALL_PLAYBOOK as PLAYBOOK

GEN_NOW_MS = 1_795_000_000_000


@pytest.fixture(autouse=True)
def control_host(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "control"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def agents_files(state: Path) -> dict:
    return {p.relative_to(state).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((state / "agents").rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def test_a_killed_run_is_completed_by_the_next_scan_and_restored(tmp_path, capsys):
    state = tmp_path / "openclaw"
    generate_host(state, HostSpec("h", (tiny_agent("main", 48 * 1024, 40, n_orphans=3),)), 5, GEN_NOW_MS)
    original = agents_files(state)
    dies = tmp_path / "python-dies"
    dies.write_text("#!/bin/sh\nFLEET_AGENT_FAULT_AT=40 exec python3 \"$@\"\n")
    dies.chmod(0o755)
    inventory = tmp_path / "inventory.toml"
    host = f'[hosts.h]\nconnection = "local"\nstate_dir = "{state}"\n'
    inventory.write_text(host + f'python = "{dies}"\n')
    playbook = tmp_path / "small.toml"
    playbook.write_text(PLAYBOOK)

    code, out, err = run_cli(["run", str(playbook), "-i", str(inventory), "--json"], capsys)
    assert code == 1, err
    run = json.loads(out)
    assert run["hosts"][0]["ok"] is False and run["hosts"][0]["files"] == []
    changed = {rel for rel, sha in original.items() if agents_files(state).get(rel) != sha}
    assert changed, "the agent died before changing anything: pick a later fault step"

    inventory.write_text(host)
    code, _, err = run_cli(["scan", "-i", str(inventory)], capsys)
    assert code == 0, err
    assert f"h: run {run['run_id']} (killed, started by " in err
    code, out, _ = run_cli(["report", run["run_id"], "--format", "json"], capsys)
    recorded = json.loads(out)["hosts"][0]
    assert recorded["interrupted"] is True
    assert {f["path"] for f in recorded["files"] if f["action"] != "none" and f["backup"]} == changed

    code, _, err = run_cli(["history", "sync", "-i", str(inventory)], capsys)
    assert code == 0 and "0 run(s) completed from their journals" in err

    code, out, err = run_cli(["restore", run["run_id"], "-i", str(inventory), "--json"], capsys)
    assert code == 0, err
    now = agents_files(state)
    assert {rel: now.get(rel) for rel in changed} == {rel: original[rel] for rel in changed}
