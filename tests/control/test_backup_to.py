"""backup_to (issue 15): backups kept on the controller, streamed over the run's own connection,
and `fleet restore` from there; the inventory key, the playbook override and `auto`.

End to end through the real CLI: hosts with `connection = "local"` run the real bootstrap and
agent as a subprocess, so the frames travel the same code path as over SSH (one test runs them
over real sshd too).
"""
from __future__ import annotations

import json
import time
from pathlib import Path


from fleet.demo.gen import KB, HostSpec, generate_host, tiny_agent
from fleet.control.plan import build_plan
from fleet.config.playbook import load_playbook
from helpers import agents_snapshot as snapshot, cli_status as cli

MB = 1024 * KB


def big_host(state: Path) -> None:
    spec = HostSpec("h", (tiny_agent("main", main_bytes=2300 * KB, main_records=500, trajectory_runs=8,
                                     trajectory_run_kb=64),))
    generate_host(state, spec, seed=3, now_ms=int(time.time() * 1000))


def inventory(tmp_path: Path, state: Path, backup_to: str) -> Path:
    inv = tmp_path / "inventory.toml"
    inv.write_text(f'[hosts.h]\nconnection = "local"\nstate_dir = "{state}"\nbackup_to = "{backup_to}"\n')
    return inv


def test_backups_to_the_controller_and_restore_from_there(tmp_path, control_dir, capsys):
    state = tmp_path / "state"
    big_host(state)
    before = snapshot(state)
    inv = inventory(tmp_path, state, "controller")

    assert cli(["run", "emergency", "-i", str(inv), "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    host = run["hosts"][0]
    changed = [f for f in host["files"] if f["action"] not in ("none", "skip")]
    assert changed and all(f["error"] is None for f in host["files"])
    assert host["backup_to"] == "controller"
    assert not (state / "fleet-backups").exists() or not any(p.is_file() for p in (state / "fleet-backups").rglob("*"))
    folder = control_dir / "backups" / "h" / run["run_id"]
    for f in changed:
        assert f["backup"].startswith("controller:")
        stored = Path(f["backup"][len("controller:"):])
        assert stored.is_relative_to(folder) and stored.name.endswith(".gz")
    assert host["backup_bytes"] == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) > 0
    assert snapshot(state) != before

    assert cli(["restore", run["run_id"], "-i", str(inv), "--json"]) == 0
    restore = json.loads(capsys.readouterr().out)
    assert all(f["action"] == "restore" and f["error"] is None for f in restore["hosts"][0]["files"])
    assert snapshot(state) == before
    assert not list(state.rglob("*.fleet-*.tmp")) and not list(state.rglob("*.part"))


def test_a_damaged_controller_backup_is_never_restored(tmp_path, control_dir, capsys):
    state = tmp_path / "state"
    big_host(state)
    inv = inventory(tmp_path, state, "controller")
    assert cli(["run", "emergency", "-i", str(inv), "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    trimmed = next(f for f in run["hosts"][0]["files"] if f["action"] == "trim")
    after = (state / trimmed["path"]).read_bytes()
    import gzip
    stored = Path(trimmed["backup"][len("controller:"):])
    stored.write_bytes(gzip.compress(b"not what was there\n"))

    assert cli(["restore", run["run_id"], "-i", str(inv), "--json"]) == 1
    restore = json.loads(capsys.readouterr().out)
    rec = next(f for f in restore["hosts"][0]["files"] if f["path"] == trimmed["path"])
    assert "damaged" in rec["error"]
    assert (state / trimmed["path"]).read_bytes() == after
    assert not list(state.rglob("*.fleet-*.tmp"))


def test_backup_to_precedence_and_folders(tmp_path):
    inv = tmp_path / "inventory.toml"
    inv.write_text('[defaults]\nbackup_to = "auto"\n[hosts.a]\n[hosts.b]\nbackup_to = "/mnt/other"\n'
                   '[hosts.c]\nbackup_to = "controller"\n')
    from fleet.config.inventory import load_inventory
    hosts = load_inventory(inv).hosts
    weekly = load_playbook("weekly")
    plans = {n: build_plan(h, "run", "20261204T000000Z-aaaaaa", 1, playbook=weekly)["backup"] for n, h in hosts.items()}
    assert (plans["a"]["to"], plans["a"]["dir"]) == ("auto", None)
    assert (plans["b"]["to"], plans["b"]["dir"]) == ("host", "/mnt/other")
    assert plans["c"]["to"] == "controller"
    pb = tmp_path / "pb.toml"
    pb.write_text('[backup]\nto = "host"\n[[transcripts.tier]]\nover = "1MB"\nkeep_records = 10\n')
    override = load_playbook(str(pb))
    assert all(build_plan(h, "run", "20261204T000000Z-aaaaaa", 1, playbook=override)["backup"]["to"] == "host"
               for h in hosts.values())
    bad = tmp_path / "bad.toml"
    bad.write_text('[hosts.a]\nbackup_to = "elsewhere"\n')
    assert cli(["inventory", "check", "-i", str(bad)]) == 2


def test_backups_stream_over_ssh_and_come_back(ssh_fleet, control_dir, capsys):
    """Over real sshd: the frames share the agent's one exec channel, both ways."""
    fleet = ssh_fleet(1, populate=lambda state, i: big_host(state))
    fleet.write_inventory('backup_to = "controller"')
    state = fleet.hosts[0].state_dir
    before = snapshot(state)
    assert cli(["run", "emergency", "-i", str(fleet.inventory), "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    host = run["hosts"][0]
    assert host["backup_to"] == "controller" and host["backup_bytes"] > 0
    assert all(f["backup"].startswith("controller:") for f in host["files"] if f["backup"])
    assert cli(["restore", run["run_id"], "-i", str(fleet.inventory), "--json"]) == 0
    capsys.readouterr()
    assert snapshot(state) == before


def test_auto_uses_the_host_when_there_is_room(tmp_path, control_dir, capsys):
    state = tmp_path / "state"
    big_host(state)
    inv = inventory(tmp_path, state, "auto")
    assert cli(["run", "emergency", "-i", str(inv), "--json"]) == 0
    host = json.loads(capsys.readouterr().out)["hosts"][0]
    backups = [f["backup"] for f in host["files"] if f["backup"]]
    assert backups and all(b.startswith(str(state / "fleet-backups")) for b in backups)
    assert not any("backups to the controller" in n for a in host["agents"] for n in a["notes"])
