"""`fleet demo` through the real CLI: two real sshd hosts with the field report's data, stopped by pid."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import paramiko
import pytest

from fleet.demo import sshd
from fleet.demo.demofleet import build_demo, demo_command, stop_demo
from fleet.errors import UsageError
from fleet.demo.gen import DEMO_MAIN_BYTES, MB
from fleet.demo.sshd import pid_alive

REPO = Path(__file__).resolve().parents[2]


def _fleet(*args, env):
    return subprocess.run([sys.executable, "-m", "fleet", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def _main_transcript(state_dir: Path, agent: str) -> Path:
    store = json.loads((state_dir / "agents" / agent / "sessions" / "sessions.json").read_text())
    return Path(store[f"agent:{agent}:main"]["sessionFile"])


def _login(inventory: dict, name: str) -> str:
    defaults, host = inventory["defaults"], inventory["hosts"][name]
    client = paramiko.SSHClient()
    client.load_host_keys(defaults["known_hosts"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host["address"], port=host["port"], username=defaults["user"], key_filename=defaults["identity_file"],
                   look_for_keys=False, allow_agent=False, timeout=10)
    try:
        _, stdout, _ = client.exec_command(f"ls {host['state_dir']}/agents | wc -l", timeout=10)
        return stdout.read().decode().strip()
    finally:
        client.close()


def test_demo_builds_listens_rebuilds_and_goes_down(tmp_path):
    env = dict(os.environ, FLEET_STATE_DIR=str(tmp_path / "state"), PYTHONPATH=str(REPO))
    directory = tmp_path / "demo"
    all_pids = []
    try:
        built = _fleet("demo", "--build-only", "--dir", str(directory), env=env)
        assert built.returncode == 0, built.stderr
        pids = {name: info["pid"] for name, info in json.loads((directory / "pids.json").read_text())["hosts"].items()}
        all_pids += pids.values()
        inventory = tomllib.loads((directory / "inventory.toml").read_text())
        assert set(inventory["hosts"]) == {"pc-a", "t440"}
        for name, host in inventory["hosts"].items():
            assert host["address"] == "127.0.0.1" and f"127.0.0.1:{host['port']}" in built.stdout
            assert pid_alive(pids[name])
            with socket.create_connection(("127.0.0.1", host["port"]), timeout=5) as sock:
                assert sock.recv(64).startswith(b"SSH-2.0-")
        assert "host_key_policy" not in inventory["defaults"]          # strict: the default
        assert _login(inventory, "pc-a") == "1" and _login(inventory, "t440") == "15"
        assert str(directory / "inventory.toml") in built.stdout

        pc_a = _main_transcript(Path(inventory["hosts"]["pc-a"]["state_dir"]), "main")
        assert abs(pc_a.stat().st_size - 9.2 * MB) <= 0.1 * 9.2 * MB
        assert len(pc_a.read_bytes().splitlines()) - 1 == 4040
        t440_state = Path(inventory["hosts"]["t440"]["state_dir"])
        for (host, agent), expected in DEMO_MAIN_BYTES.items():
            if host == "t440":
                assert abs(_main_transcript(t440_state, agent).stat().st_size - expected) <= 0.1 * expected

        # A second build starts from scratch: the first build's sshd are gone, the story is the same.
        rebuilt = _fleet("demo", "--build-only", "--dir", str(directory), env=env)
        assert rebuilt.returncode == 0, rebuilt.stderr
        new_pids = {name: info["pid"] for name, info in json.loads((directory / "pids.json").read_text())["hosts"].items()}
        all_pids += new_pids.values()
        assert not any(pid_alive(p) for p in pids.values())
        assert all(pid_alive(p) for p in new_pids.values())
        assert _main_transcript(Path(inventory["hosts"]["pc-a"]["state_dir"]), "main").stat().st_size == pc_a.stat().st_size

        down = _fleet("demo", "--down", "--dir", str(directory), env=env)
        assert down.returncode == 0, down.stderr
        assert down.stdout.count("stopped") == 2
        assert not any(pid_alive(p) for p in all_pids)
        again = _fleet("demo", "--down", "--dir", str(directory), env=env)
        assert again.returncode == 0 and "no demo sshd running" in again.stdout
    finally:
        stop_demo(directory)
        for pid in all_pids:
            sshd.stop_sshd_pid(pid, None)


def test_demo_falls_back_to_local_when_sshd_cannot_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sshd, "SSHD_BINARY", str(tmp_path / "no-sshd-here"))
    inventory_path = build_demo(tmp_path / "demo")
    out = capsys.readouterr().out
    assert "sshd cannot run here" in out and "not installed" in out
    inventory = tomllib.loads(inventory_path.read_text())
    assert {h["connection"] for h in inventory["hosts"].values()} == {"local"}
    assert "defaults" not in inventory
    assert not (tmp_path / "demo" / "pids.json").exists()
    for host in inventory["hosts"].values():
        assert (Path(host["state_dir"]) / "agents").is_dir()


def test_demo_refuses_a_directory_it_did_not_build(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not a fleet demo directory"):
        demo_command(down=False, build_only=True, playbook="weekly", directory=foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_shipped_inventory_names_the_field_report_hosts_by_name():
    from fleet.config.inventory import load_inventory

    inventory = load_inventory(REPO / "inventory.toml")
    assert {name: host.address for name, host in inventory.hosts.items()} == {"pc-a": "pc-a", "t440": "t440"}
    assert inventory.groups == {"workstations": ("pc-a",), "servers": ("t440",)}
    assert all(host.host_key_policy == "strict" for host in inventory.hosts.values())
