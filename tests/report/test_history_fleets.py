"""One history per fleet, through the real CLI: runs are recorded under the inventory they came
from; `history`, `report` and `report --trend` show the current inventory's fleet (-i, default
./inventory.toml), `--all-fleets` shows them all. Two inventories reaching the same real sshd
host with the same host name stand for a test (or demo) fleet and a real one."""
from __future__ import annotations

import json
import shutil

import pytest

from helpers import run_cli
from sshfleet import generated


@pytest.fixture
def two_fleets(ssh_fleet, tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "fleet-state"))
    fleet = ssh_fleet(1, populate=generated())
    for name in ("real", "test"):
        (tmp_path / name).mkdir()
        shutil.copy(fleet.inventory, tmp_path / name / "inventory.toml")
    return tmp_path


def test_each_fleet_sees_its_own_runs(two_fleets, monkeypatch, capsys):
    real, test = two_fleets / "real", two_fleets / "test"
    monkeypatch.chdir(real)
    code, out, err = run_cli(["scan", "--json"], capsys)
    assert code == 0, err
    real_run = json.loads(out)["run_id"]
    assert json.loads(out)["inventory"] == str(real / "inventory.toml")
    monkeypatch.chdir(test)
    test_runs = []
    for argv in (["scan", "--json"], ["run", "weekly", "--dry-run", "--json"]):
        code, out, err = run_cli(argv, capsys)
        assert code == 0, err
        test_runs.append(json.loads(out)["run_id"])

    code, out, err = run_cli(["history", "--json"], capsys)                      # in test/
    assert [r["run_id"] for r in json.loads(out)["runs"]] == test_runs[::-1]
    code, out, err = run_cli(["history", "-i", str(real / "inventory.toml"), "--json"], capsys)
    runs = json.loads(out)["runs"]
    assert [r["run_id"] for r in runs] == [real_run] and runs[0]["fleet"] == str(real / "inventory.toml")
    code, out, err = run_cli(["history", "--all-fleets", "--json"], capsys)
    assert {r["run_id"] for r in json.loads(out)["runs"]} == {real_run, *test_runs}
    code, out, err = run_cli(["history", "--all-fleets"], capsys)
    assert "fleet" in out.splitlines()[0] and str(real / "inventory.toml") in out

    monkeypatch.chdir(real)
    code, out, err = run_cli(["report", "--format", "json"], capsys)            # latest of real/, not test/
    assert code == 0 and json.loads(out)["run_id"] == real_run
    # The trend counts real/'s one scan per agent, not test/'s scan and dry run of the same host.
    code, out, err = run_cli(["report", "--trend", "--format", "json"], capsys)
    assert code == 0, err
    agents = json.loads(out)["agents"]
    assert agents and {a["points"] for a in agents} == {1}
    code, out, err = run_cli(["report", "--trend", "--all-fleets", "--format", "json"], capsys)
    assert {a["points"] for a in json.loads(out)["agents"]} == {3}

    code, out, err = run_cli(["report", "--all-fleets", "--format", "json"], capsys)
    assert json.loads(out)["run_id"] == test_runs[-1]
    code, out, err = run_cli(["report", test_runs[0], "--format", "json"], capsys)   # an id is found anywhere
    assert code == 0 and json.loads(out)["run_id"] == test_runs[0]


def test_a_folder_without_runs_names_the_fleets_that_have_some(two_fleets, monkeypatch, capsys):
    monkeypatch.chdir(two_fleets / "real")
    assert run_cli(["scan"], capsys)[0] == 0
    elsewhere = two_fleets / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = run_cli(["report"], capsys)
    assert code == 2
    assert str(two_fleets / "real" / "inventory.toml") in err and "--all-fleets" in err
    code, out, err = run_cli(["history"], capsys)
    assert code == 0 and "--all-fleets" in out and str(two_fleets / "real" / "inventory.toml") in out


def test_demo_runs_never_mix_with_a_real_fleet_of_the_same_host_names(tmp_path, monkeypatch, capsys):
    """The issue's case: the demo's pc-a and t440 beside a real fleet with hosts of those names."""
    from fleet.demo import sshd
    from fleet.demo.gen import HostSpec, generate_host, tiny_agent

    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "fleet-state"))
    monkeypatch.setattr(sshd, "SSHD_BINARY", str(tmp_path / "no-sshd-here"))   # the demo's local fallback
    real = tmp_path / "real"
    lines = []
    for name in ("pc-a", "t440"):
        generate_host(real / name, HostSpec(name, (tiny_agent("main", 24 * 1024, 30),)), seed=3,
                      now_ms=1_795_000_000_000)
        lines += [f"[hosts.{name}]", 'connection = "local"', f'state_dir = "{real / name}"', ""]
    (real / "inventory.toml").write_text("\n".join(lines))
    monkeypatch.chdir(real)
    code, out, err = run_cli(["scan", "--json"], capsys)
    assert code == 0, err
    real_run = json.loads(out)["run_id"]

    code, out, err = run_cli(["demo", "--build-only", "--dir", str(tmp_path / "demo")], capsys)
    assert code == 0, err
    demo_inventory = tmp_path / "demo" / "inventory.toml"
    assert f"fleet history -i {demo_inventory}" in out
    code, out, err = run_cli(["scan", "-i", str(demo_inventory)], capsys)        # as the demo suggests
    assert code == 0, err

    code, out, err = run_cli(["history", "--json"], capsys)
    assert [r["run_id"] for r in json.loads(out)["runs"]] == [real_run]
    code, out, err = run_cli(["report", "--trend", "--format", "json"], capsys)
    sizes = {a["host"]: a["last_bytes"] for a in json.loads(out)["agents"] if a["agent"] == "main"}
    assert set(sizes) == {"pc-a", "t440"} and max(sizes.values()) < 1024 * 1024   # not the demo's 9 MB
    code, out, err = run_cli(["history", "-i", str(demo_inventory), "--json"], capsys)
    demo_runs = json.loads(out)["runs"]
    assert demo_runs and real_run not in {r["run_id"] for r in demo_runs}
