"""`fleet inventory init` and the first steps of a new user, through the real CLI.

The done-when of the first-steps work: with only ~/.ssh/config, or only an Ansible inventory, a
user reaches a real `fleet run weekly --dry-run` on their own hosts in three commands. Tested on
real sshd hosts (the ssh_fleet fixture) whose logins set OPENCLAW_STATE_DIR, as a host with a
moved state dir does, so the probe has something real to find.
"""
from __future__ import annotations

import hashlib
import json
from fleet.config.validate import tomllib
from pathlib import Path

import pytest

from helpers import run_cli
from sshfleet import generated


def snapshot(state: Path) -> dict[str, str]:
    return {p.relative_to(state).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(state.rglob("*")) if p.is_file()}


@pytest.fixture
def user(tmp_path, monkeypatch):
    """A new user's machine: an empty HOME with ~/.ssh, a working folder, a private history."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "fleet-state"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.chdir(work)
    return home


def ssh_config_for(fleet, home: Path, include_last: bool = False) -> Path:
    """~/.ssh/config for the fleet; with `include_last` the last host sits in ~/.ssh/config.d/lab,
    pulled in by `Include config.d/*` as many people's configs do."""
    lines = []
    for host in fleet.hosts:
        block = [f"Host {host.name}", f"    HostName {host.address}", f"    Port {host.port}", f"    User {fleet.user}",
                 f"    IdentityFile {fleet.identity_file}", f"    UserKnownHostsFile {fleet.known_hosts}", ""]
        if include_last and host is fleet.hosts[-1]:
            (home / ".ssh" / "config.d").mkdir()
            (home / ".ssh" / "config.d" / "lab").write_text("\n".join(block))
            block = ["Include config.d/*", ""]
        lines += block
    # What else a real ~/.ssh/config holds: a host that is not an OpenClaw host (here nothing
    # listens on its port), patterns, and `Host *`.
    lines += ["Host gitserver", "    HostName 127.0.0.1", "    Port 1", "",
              "Host *.example.com !skip", "    User nobody", "", "Host *", "    ServerAliveInterval 30", ""]
    path = home / ".ssh" / "config"
    path.write_text("\n".join(lines))
    return path


def test_three_commands_from_ssh_config_to_a_dry_run(ssh_fleet, user, capsys):
    fleet = ssh_fleet(2, populate=generated(), state_env=True)
    ssh_config_for(fleet, user, include_last=True)
    before = {h.name: snapshot(h.state_dir) for h in fleet.hosts}

    code, out, err = run_cli(["inventory", "init", "--probe"], capsys)                 # 1
    assert code == 0, err
    written = Path("inventory.toml").read_text()
    data = tomllib.loads(written)
    assert list(data["hosts"]) == ["host1", "host2"]               # patterns and `Host *` left out
    assert "# [hosts.gitserver]" in written                         # probed, unreachable: commented out
    for host in fleet.hosts:
        assert data["hosts"][host.name]["state_dir"] == str(host.state_dir)   # found by the probe
        # fleet's SSH library does not follow Include: what ssh would use is copied in.
        assert data["hosts"][host.name]["port"] == host.port
        assert data["hosts"][host.name]["known_hosts"] == str(fleet.known_hosts)
    assert "# ssh_config line 1: HostName 127.0.0.1" in written and "# lab line 1: HostName" in written
    assert "probe: OpenClaw state dir" in written and "includes other files" in written
    assert "wrote inventory.toml" in err and "2 hosts" in err

    code, out, err = run_cli(["inventory", "check"], capsys)                           # 2
    assert code == 0, err
    assert "OK: 2 hosts" in out

    code, out, err = run_cli(["run", "weekly", "--dry-run", "--json"], capsys)        # 3
    assert code == 0, err
    doc = json.loads(out)
    assert doc["dry_run"] is True and [h["host"] for h in doc["hosts"]] == ["host1", "host2"]
    assert all(h["ok"] and h["files"] for h in doc["hosts"])
    assert any(f["action"] != "none" for h in doc["hosts"] for f in h["files"])   # it would do something
    assert {h.name: snapshot(h.state_dir) for h in fleet.hosts} == before      # and did nothing


def test_three_commands_from_an_ansible_inventory(ssh_fleet, user, capsys):
    fleet = ssh_fleet(2, populate=generated(), state_env=True)
    (user / ".ssh" / "known_hosts").write_text(fleet.known_hosts.read_text())
    hosts = ["all:", "  children:", "    claws:", "      hosts:"]
    for host in fleet.hosts:
        hosts += [f"        {host.name}:", f"          ansible_host: {host.address}",
                  f"          ansible_port: {host.port}", f"          ansible_user: {fleet.user}",
                  f"          ansible_ssh_private_key_file: {fleet.identity_file}"]
    hosts += ["  vars:", "    ansible_become: true"]
    Path("hosts.yml").write_text("\n".join(hosts) + "\n")

    code, out, err = run_cli(["inventory", "check", "-i", "hosts.yml"], capsys)        # 1
    assert code == 0, err
    assert "claws" in out and "OK: 2 hosts, 1 group" in out
    assert "ansible_become" in err and "ignored" in err

    code, out, err = run_cli(["scan", "-i", "hosts.yml", "-l", "claws", "--json"], capsys)   # 2
    assert code == 0, err
    assert [h["host"] for h in json.loads(out)["hosts"]] == ["host1", "host2"]

    code, out, err = run_cli(["run", "weekly", "-i", "hosts.yml", "--check", "--json"], capsys)  # 3
    assert code == 0, err
    doc = json.loads(out)
    assert doc["dry_run"] is True and all(h["ok"] and h["files"] for h in doc["hosts"])

    # The same inventory, written out as a commented inventory.toml with the probe's findings.
    code, out, err = run_cli(["inventory", "init", "--from-ansible", "hosts.yml", "--probe"], capsys)
    assert code == 0, err
    data = tomllib.loads(Path("inventory.toml").read_text())
    assert data["hosts"]["host1"]["port"] == fleet.hosts[0].port
    assert data["hosts"]["host1"]["groups"] == ["claws"]
    assert data["hosts"]["host2"]["state_dir"] == str(fleet.hosts[1].state_dir)


def test_probe_failure_is_a_comment_not_an_error(ssh_fleet, user, capsys):
    fleet = ssh_fleet(1, populate=generated())
    ssh_config_for(fleet, user)
    fleet.stop("host1")
    code, out, err = run_cli(["inventory", "init", "--probe"], capsys)
    assert code == 0, err
    text = Path("inventory.toml").read_text()
    assert "# left out: probe: could not look:" in text and "connection refused" in text
    assert "# [hosts.host1]" in text                         # commented out, to bring back by hand
    assert "2 hosts could not be probed (host1, gitserver)" in err and "0 hosts" in err


def test_init_never_overwrites_without_force_and_keeps_a_copy(user, capsys):
    (user / ".ssh" / "config").write_text("Host pc-a\n  HostName 192.0.2.1\nHost t440 t440.lan\n  User me\n")
    code, out, err = run_cli(["inventory", "init"], capsys)
    assert code == 0, err
    first = Path("inventory.toml").read_text()
    assert tomllib.loads(first)["hosts"] == {"pc-a": {}, "t440": {}, "t440.lan": {}}   # ssh_config stays the one place
    assert "# ssh_config line 1: HostName 192.0.2.1" in first and "# ssh_config line 3: User me" in first

    Path("inventory.toml").write_text(first + "# my own edit\n")
    code, out, err = run_cli(["inventory", "init"], capsys)
    assert code == 2 and "already exists" in err and "--force" in err
    assert Path("inventory.toml").read_text().endswith("# my own edit\n")

    code, out, err = run_cli(["inventory", "init", "--force"], capsys)
    assert code == 0, err
    (kept,) = Path(".").glob("inventory.toml.*.bak")
    assert kept.read_text().endswith("# my own edit\n") and kept.name in err
    assert Path("inventory.toml").read_text() != kept.read_text()


def test_init_without_ssh_config_says_what_to_give(user, capsys):
    code, out, err = run_cli(["inventory", "init"], capsys)
    assert code == 2
    assert str(user / ".ssh" / "config") in err and "--from-ansible" in err
    assert not Path("inventory.toml").exists()


def test_init_from_a_broken_ansible_inventory_writes_nothing(user, capsys):
    Path("hosts.ini").write_text("[web]\npc-a ansible_port=70000 ansible_become=yes\n")
    code, out, err = run_cli(["inventory", "init", "--from-ansible", "hosts.ini"], capsys)
    assert code == 2
    assert "inventory.toml (not written)" in err and "hosts.pc-a.port" in err and "70000" in err
    assert not Path("inventory.toml").exists() and not list(Path(".").glob(".inventory.toml.*"))
