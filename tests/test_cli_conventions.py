"""The conventions people type without thinking, through the real CLI: --version, completion,
-l/--limit with Ansible's syntax, -f, --check, -v/-vv/-q/--log-file, exit codes in --help, one
"Did you mean", exit 2 for unknown hosts/agents/groups everywhere (restore included), and error
messages that name the missing file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fleet
from helpers import run_cli
from fleet.errors import ExitStatus
from sshfleet import generated

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def history(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "fleet-state"))


def inventory(tmp_path) -> Path:
    path = tmp_path / "inventory.toml"
    path.write_text("""
[hosts.pc-a]
groups = ["workstations", "prod"]
[hosts.t440]
groups = ["servers", "prod"]
""")
    return path


def test_unknown_limit_is_exit_2_before_any_host_is_contacted(tmp_path, capsys):
    inv = str(inventory(tmp_path))
    for argv in (["scan", "-i", inv, "-l", "nosuch"], ["run", "weekly", "-i", inv, "--limit", "prod:&nosuch"],
                 ["run", "weekly", "-i", inv, "-l", "all", "-f", "0"]):
        code, out, err = run_cli(argv, capsys)
        assert code == 2, (argv, err)
        assert "nosuch" in err or "--forks" in err


def test_version_help_and_one_suggestion(capsys):
    code, out, err = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"fleet {fleet.__version__}"
    code, out, err = run_cli(["--help"], capsys)
    assert code == 0
    for line in ("0 = ", "1 = ", "2 = ", "3 = ", "130 = "):
        assert line in out, out
    assert "Exit status" in out and "--install-completion" in out
    readme = (REPO / "README.md").read_text()
    for status in ExitStatus:
        assert f"| {int(status)} | " in readme, status
    code, out, err = run_cli(["scna"], capsys)
    assert code == 2 and err.count("Did you mean 'scan'?") == 1, err
    code, out, err = run_cli(["run", "weekly", "--chek"], capsys)
    assert code == 2 and err.count("Did you mean") == 1


def test_shell_completion_answers_like_typer_does(tmp_path):
    env = dict(os.environ, _FLEET_COMPLETE="complete_bash", COMP_WORDS="fleet sc", COMP_CWORD="1",
               PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", "from fleet.cli import main; main()"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == {"scan", "schedule"}, done.stdout
    done = subprocess.run([sys.executable, "-c", "from fleet.cli import main; main(['--show-completion', 'bash'])"],
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "_FLEET_COMPLETE" in done.stdout


def test_verbose_quiet_log_file_forks_and_check(ssh_fleet, tmp_path, capsys):
    fleet_ = ssh_fleet(2, populate=generated())
    inv = str(fleet_.inventory)
    log = tmp_path / "logs" / "fleet.log"

    code, out, err = run_cli(["-v", "scan", "-i", inv, "-l", "host2", "-f", "1", "--log-file", str(log)], capsys)
    assert code == 0, err
    assert f"host2: connecting to {fleet_.user}@127.0.0.1:{fleet_.hosts[1].port}" in err
    assert str(fleet_.identity_file) in err and "host2: agent" in err and "host1" not in err
    assert "host2: agent" in log.read_text() and oct(log.stat().st_mode & 0o777) == "0o600"

    code, out, err = run_cli(["-vv", "scan", "-i", inv, "-l", "host1"], capsys)
    assert code == 0, err
    assert "ssh: Authentication (publickey) successful" in err

    code, out, err = run_cli(["-q", "run", "weekly", "-i", inv, "--check", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["dry_run"] is True
    assert err.strip() == "", err                      # no progress lines with -q


def test_missing_identity_file_is_named(ssh_fleet, tmp_path, capsys):
    fleet_ = ssh_fleet(1)
    missing = tmp_path / "no_such_key"
    inv = tmp_path / "inventory.toml"
    inv.write_text(fleet_.inventory.read_text().replace(str(fleet_.identity_file), str(missing)))
    code, out, err = run_cli(["scan", "-i", str(inv)], capsys)
    assert code == 1
    assert str(missing) in err and "identity file" in err
