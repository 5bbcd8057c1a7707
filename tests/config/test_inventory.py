"""The inventory: validation through the real CLI (`fleet inventory check`), and what it resolves to.

Every file in tests/config/data/bad_inventories/ is one kind of mistake; its `# expect:` lines are what
the user must read on stderr (after the file name). The command must exit 2.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import expectations, run_cli
from fleet.errors import InventoryError
from fleet.config.inventory import load_inventory

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[2]
BAD_INVENTORIES = sorted((DATA / "bad_inventories").glob("*.toml"))


def test_there_are_at_least_15_kinds_of_inventory_mistake():
    assert len(BAD_INVENTORIES) >= 15
    assert all(expectations(p) for p in BAD_INVENTORIES), "every fixture says what the user must read"


@pytest.mark.parametrize("command", [["inventory", "check"], ["scan"], ["run", "weekly"]], ids=" ".join)
@pytest.mark.parametrize("path", BAD_INVENTORIES, ids=lambda p: p.stem)
def test_bad_inventory_exits_2_naming_file_table_and_key(path, command, capsys, tmp_path, monkeypatch):
    code, out, err = run_cli([*command, "-i", str(path)], capsys)
    assert code == 2
    assert out == ""
    for expected in expectations(path):
        assert f"{path}: " in err
        assert expected in err, f"missing {expected!r} in:\n{err}"
    assert "Traceback" not in err


def test_all_problems_are_reported_at_once(tmp_path):
    path = DATA / "bad_inventories" / "many-mistakes-at-once.toml"
    with pytest.raises(InventoryError) as exc_info:
        load_inventory(path)
    assert len(exc_info.value.problems) == 5
    assert all(p.startswith(f"{path}: ") for p in exc_info.value.problems)


def test_missing_inventory_suggests_dash_i(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["inventory", "check"], capsys)
    assert code == 2
    assert "inventory.toml: file not found; pass the inventory with -i FILE" in err


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_apply_and_hosts_override(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "fleet_ed25519").write_text("key")
    inv = load_inventory(write(tmp_path / "inventory.toml", """
[defaults]
user = "linou"
port = 2222
identity_file = "keys/fleet_ed25519"
known_hosts = "~/.ssh/fleet_known_hosts"
state_dir = "~/.openclaw"
groups = ["claws"]
connect_timeout = "30s"

[hosts.pc-a]
address = "192.168.10.11"
groups = ["workstations"]
agents = ["main", "ops"]

[hosts.t440]
address = "192.168.10.20"
port = 22
user = "root"
become_user = "openclaw"
host_key_policy = "accept-new"
python = "/usr/bin/python3.11"
command_timeout = 120

[hosts.control]
connection = "local"
"""))
    pc, t440, control = inv.hosts["pc-a"], inv.hosts["t440"], inv.hosts["control"]
    assert list(inv.hosts) == ["pc-a", "t440", "control"]
    assert (pc.address, pc.port, pc.user) == ("192.168.10.11", 2222, "linou")
    assert pc.identity_files == (str(tmp_path / "keys" / "fleet_ed25519"),)   # relative to the inventory
    assert pc.known_hosts == str(tmp_path / "home" / ".ssh" / "fleet_known_hosts")  # '~' expanded here
    assert pc.state_dir == "~/.openclaw"            # expanded on the host, not here
    assert pc.agents == ("main", "ops") and t440.agents is None
    assert pc.groups == ("claws", "workstations")   # defaults' groups add up with the host's
    assert pc.connect_timeout == 30.0 and pc.command_timeout == 900.0
    assert pc.host_key_policy == "strict" and t440.host_key_policy == "accept-new"
    assert (t440.port, t440.user, t440.become_user, t440.python) == (22, "root", "openclaw", "/usr/bin/python3.11")
    assert t440.command_timeout == 120.0
    assert control.is_local and control.address == "control"
    assert inv.groups == {"claws": ("pc-a", "t440", "control"), "workstations": ("pc-a",)}
    assert inv.warnings == ()


def test_bare_host_gets_the_documented_defaults(tmp_path):
    host = load_inventory(write(tmp_path / "i.toml", "[hosts.t440]\n")).hosts["t440"]
    assert host.address == "t440"          # ssh_config's HostName may still apply
    assert host.port is None and host.user is None and host.identity_files == ()
    assert host.known_hosts is None and host.ssh_config is None and host.proxy_jump is None
    assert (host.python, host.connection, host.host_key_policy) == ("python3", "ssh", "strict")
    assert (host.connect_timeout, host.command_timeout) == (10.0, 900.0)


def test_group_tables_add_members_in_file_order(tmp_path):
    inv = load_inventory(write(tmp_path / "i.toml", """
[hosts.a]
[hosts.b]
groups = ["servers"]
[hosts.c]
[groups.servers]
hosts = ["c", "a"]
[groups.empty]
hosts = []
"""))
    assert inv.groups["servers"] == ("a", "b", "c")
    assert inv.groups["empty"] == ()


def test_duplicate_address_is_a_warning_not_an_error(tmp_path, capsys):
    path = write(tmp_path / "i.toml", """
[defaults]
address = "127.0.0.1"
[hosts.a]
port = 2201
[hosts.b]
port = 2202
[hosts.c]
port = 2201
""")
    code, out, err = run_cli(["inventory", "check", "-i", str(path)], capsys)
    assert code == 0
    assert f"{path}: hosts.c: same address and port as hosts.a (127.0.0.1, port 2201)" in err
    assert "OK: 3 hosts, 0 groups, 1 warning" in out


def test_ssh_only_keys_on_a_local_host_are_flagged(tmp_path):
    inv = load_inventory(write(tmp_path / "i.toml", '[hosts.me]\nconnection = "local"\nport = 22\n'))
    assert inv.warnings == (f'{tmp_path / "i.toml"}: hosts.me.port: ignored: the host has connection = "local"',)


def test_inventory_check_prints_hosts_and_groups(tmp_path, capsys):
    path = write(tmp_path / "inventory.toml", """
[defaults]
user = "linou"
state_dir = "~/.openclaw"
[hosts.pc-a]
address = "192.168.10.11"
groups = ["workstations"]
agents = ["main"]
[hosts.t440]
address = "192.168.10.20"
groups = ["servers"]
[hosts.control]
connection = "local"
""")
    code, out, err = run_cli(["inventory", "check", "-i", str(path)], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("host "))
    for column in ("address", "port", "user", "connection", "state_dir", "agents", "groups"):
        assert column in header
    assert any(line.split()[:3] == ["pc-a", "192.168.10.11", "(ssh)"] and "main" in line for line in lines)
    assert any(line.split()[:2] == ["control", "-"] and "local" in line for line in lines)
    assert "  workstations  pc-a" in lines and "  servers       t440" in lines
    assert lines[-1] == "OK: 3 hosts, 2 groups"


def test_shipped_inventory_checks_and_lists_hosts_and_groups(capsys):
    code, out, _ = run_cli(["inventory", "check", "-i", str(REPO / "inventory.toml")], capsys)
    assert code == 0
    inv = load_inventory(REPO / "inventory.toml")
    assert set(inv.hosts) >= {"pc-a", "t440"}
    lines = out.splitlines()
    for name, host in inv.hosts.items():
        assert any(line.split()[:2] == [name, host.address] for line in lines), name
    for group, members in inv.groups.items():
        assert any(line.split()[:1] == [group] and line.endswith(", ".join(members)) for line in lines), group
    assert any(line.startswith(f"OK: {len(inv.hosts)} hosts, {len(inv.groups)} groups") for line in lines)
