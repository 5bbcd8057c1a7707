"""`fleet restore` selects hosts like every other command (-l/--limit, `--check`), and an unknown
host, group or agent is exit 2 with the valid names, on the real-sshd test fleet."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from fleet.demo.gen import HostSpec, generate_host, tiny_agent
from helpers import run_cli

KB = 1024


def populate(state_dir: Path, i: int) -> None:
    """host1: a transcript over weekly's 2 MB tier (trimmed); host2: two small agents."""
    now = int(time.time() * 1000)
    if i == 0:
        spec = HostSpec("host1", (tiny_agent("main", main_bytes=2300 * KB, main_records=500),))
    else:
        spec = HostSpec("host2", (tiny_agent("main", 2300 * KB, 500), tiny_agent("ops", 16 * KB, 24)))
    generate_host(state_dir, spec, seed=7, now_ms=now)


def snapshot(state: Path) -> dict[str, str]:
    """sha256 of every file of the agents (stale-lock bookkeeping left out)."""
    return {p.relative_to(state).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((state / "agents").rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "fleet-state"))


def test_restore_limit_agent_and_check(ssh_fleet, capsys):
    fleet = ssh_fleet(2, populate=populate)
    inv = str(fleet.inventory)
    code, out, err = run_cli(["run", "weekly", "-i", inv, "--json"], capsys)
    assert code == 0, err
    run = json.loads(out)["run_id"]
    after_run = {h.name: snapshot(h.state_dir) for h in fleet.hosts}

    code, out, err = run_cli(["restore", run, "-i", inv, "--agent", "nosuch"], capsys)
    assert code == 2 and "nosuch" in err and "main" in err
    code, out, err = run_cli(["restore", run, "-i", inv, "-l", "nosuch"], capsys)
    assert code == 2 and "nosuch" in err and "host1" in err
    code, out, err = run_cli(["restore", run, "-i", inv, "--host", "nosuch"], capsys)
    assert code == 2 and "nosuch" in err
    code, out, err = run_cli(["report", run, "--agent", "nosuch"], capsys)        # report too
    assert code == 2 and "no agent 'nosuch'" in err and "ops" in err

    code, out, err = run_cli(["restore", run, "-i", inv, "-l", "all:!host1", "--check", "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["dry_run"] is True and [h["host"] for h in doc["hosts"]] == ["host2"]
    assert {h.name: snapshot(h.state_dir) for h in fleet.hosts} == after_run

    code, out, err = run_cli(["restore", run, "-i", inv, "--limit", "host2", "--json"], capsys)
    assert code == 0, err
    assert [h["host"] for h in json.loads(out)["hosts"]] == ["host2"]
    assert snapshot(fleet.hosts[0].state_dir) == after_run["host1"]           # host1 left as the run left it
    assert snapshot(fleet.hosts[1].state_dir) != after_run["host2"]
