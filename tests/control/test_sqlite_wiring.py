"""SQLite-era settings travel from the inventory (`openclaw_cmd`) and playbook (`[sqlite]`) into plans."""
from pathlib import Path

import pytest

from fleet.cli import main
from fleet.config.inventory import load_inventory
from fleet.control.plan import build_plan
from fleet.config.playbook import load_playbook


def _inventory(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "inventory.toml"
    path.write_text('[hosts.db]\nconnection = "local"\nstate_dir = "/srv/openclaw"\n' + extra)
    return path


@pytest.mark.parametrize("value, expected", [('"openclaw"', ("openclaw",)),
                                             ('["/usr/bin/node", "/opt/oc/openclaw.mjs"]',
                                              ("/usr/bin/node", "/opt/oc/openclaw.mjs"))])
def test_openclaw_cmd_reaches_the_sqlite_section_of_a_weekly_plan(tmp_path, value, expected):
    host = load_inventory(_inventory(tmp_path, f"openclaw_cmd = {value}\n")).hosts["db"]
    assert host.openclaw_cmd == expected
    plan = build_plan(host, "run", "20261121T000000Z-000001", 0, playbook=load_playbook("weekly"))
    assert plan["operations"]["sqlite"]["openclaw_cmd"] == list(expected)
    assert plan["operations"]["sqlite"]["trajectory_keep_runs"] == 5


def test_without_openclaw_cmd_the_plan_says_no_command_so_the_agent_changes_no_database(tmp_path):
    host = load_inventory(_inventory(tmp_path, "")).hosts["db"]
    plan = build_plan(host, "run", "20261121T000000Z-000001", 0, playbook=load_playbook("weekly"))
    assert plan["operations"]["sqlite"]["openclaw_cmd"] is None


def test_empty_openclaw_cmd_is_an_inventory_error_naming_the_key(tmp_path, capsys):
    inv = _inventory(tmp_path, 'openclaw_cmd = ""\n')
    with pytest.raises(SystemExit) as exc:
        main(["inventory", "check", "-i", str(inv)])
    assert exc.value.code == 2
    assert "hosts.db.openclaw_cmd" in capsys.readouterr().err


@pytest.mark.parametrize("text, says", [("[sqlite]\nvacuum = true\n", ("sqlite.vacuum", "gateway_stopped")),
                                        ('[sqlite]\nbusy_within = "soon"\n', ("sqlite.busy_within",))],
                         ids=["vacuum-without-a-stopped-gateway", "busy-window-not-a-duration"])
def test_a_bad_sqlite_setting_is_a_playbook_error_naming_it(tmp_path, capsys, monkeypatch, text, says):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))
    book = tmp_path / "bad.toml"
    book.write_text(text)
    with pytest.raises(SystemExit) as exc:
        main(["playbook", "check", str(book)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(word in err for word in says), err


@pytest.mark.parametrize("line, expected", [("", 600), ('busy_within = "2m"\n', 120), ('busy_within = "0s"\n', 0)])
def test_the_busy_window_reaches_the_plan_and_defaults_to_ten_minutes(tmp_path, line, expected):
    book = tmp_path / "busy.toml"
    book.write_text('description = "busy window"\n[sqlite]\n' + line)
    host = load_inventory(_inventory(tmp_path, "")).hosts["db"]
    plan = build_plan(host, "run", "20261121T000000Z-000001", 0, playbook=load_playbook(str(book)))
    assert plan["operations"]["sqlite"]["busy_within_s"] == expected
