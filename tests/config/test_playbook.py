"""Playbooks: validation through the real CLI, what the shipped ones compile to, PLAYBOOK resolution.

Every file in tests/config/data/bad_playbooks/ is one kind of mistake; its `# expect:` lines are what the
user must read on stderr. `fleet playbook check FILE` must exit 2 and print nothing on stdout.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleet.hostside.protocol import PRUNE_CLASSES, validate_operations
from helpers import expectations, run_cli
from fleet.errors import ExitStatus, PlaybookError
from fleet.config.playbook import load_playbook, resolve_playbook, shipped_playbooks

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[2]
BAD_PLAYBOOKS = sorted((DATA / "bad_playbooks").glob("*.toml"))
MB = 1024 * 1024
DAY = 86400


def test_there_are_at_least_15_kinds_of_playbook_mistake():
    assert len(BAD_PLAYBOOKS) >= 15
    assert all(expectations(p) for p in BAD_PLAYBOOKS)


@pytest.mark.parametrize("command", ["playbook check", "run"])
@pytest.mark.parametrize("path", BAD_PLAYBOOKS, ids=lambda p: p.stem)
def test_bad_playbook_exits_2_naming_file_table_and_key(path, command, capsys, tmp_path, monkeypatch):
    if command == "run":
        # A valid inventory: the playbook's mistakes alone must stop the run before any host.
        inventory = tmp_path / "inventory.toml"
        inventory.write_text(f'[hosts.here]\nconnection = "local"\nstate_dir = "{tmp_path / "claw"}"\n')
        argv = ["run", str(path), "-i", str(inventory)]
    else:
        argv = ["playbook", "check", str(path)]
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    assert out == ""
    assert f"{path}: " in err
    for expected in expectations(path):
        assert expected in err, f"missing {expected!r} in:\n{err}"
    assert "Traceback" not in err


# --- the shipped playbooks --------------------------------------------------------------------

def test_every_shipped_playbook_loads_and_the_agent_accepts_it():
    assert {"weekly", "emergency", "daily-prune", "maintenance"} <= set(shipped_playbooks())
    for name in shipped_playbooks():
        pb = load_playbook(name)
        assert pb.name == name and pb.description and pb.warnings == ()
        # The agent fills defaults only for keys left out: ours are all present, so nothing changes.
        assert validate_operations(json.loads(json.dumps(pb.operations))) == pb.operations
        assert pb.backup["keep_runs"] >= 1 and pb.backup["dir"] is None


def test_weekly_compiles_to_the_field_report_tiers():
    ops = load_playbook("weekly").operations
    assert [(t["over_bytes"], t["keep_records"], t["slim"]) for t in ops["transcripts"]["tiers"]] == [
        (2097152, 200, None), (5242880, 100, "tool-output"), (10485760, 50, "aggressive")]
    assert ops["transcripts"]["tool_output_limit_bytes"] == 2048
    assert ops["transcripts"]["assistant_text_limit_bytes"] == 4096
    # The daily-prune store pass, included, plus the strip of the bulky fields.
    assert ops["store"]["prune"] == {kind: DAY for kind in PRUNE_CLASSES}
    assert ops["store"]["strip_fields"] == ["skillsSnapshot", "systemPromptReport"]
    assert ops["orphans"] == {"archive_after_s": DAY}
    assert ops["trajectories"]["keep_runs"] == 5
    assert ops["archives"] == {"delete_after_s": 30 * DAY}
    assert load_playbook("weekly").backup == {"dir": None, "gzip": False, "keep_runs": 8, "max_age_s": 60 * DAY}


def test_emergency_keeps_100_and_slims_everything_over_1mb():
    ops = load_playbook("emergency").operations
    # Frees space without a store prune: transcripts, trajectories (often the biggest), old archives.
    assert set(ops) == {"transcripts", "trajectories", "archives"}
    assert ops["transcripts"]["tiers"] == [{"over_bytes": MB, "keep_records": 100, "slim": "tool-output"}]
    assert ops["trajectories"]["keep_runs"] == 2
    assert ops["archives"]["delete_after_s"] == 7 * DAY


def test_daily_prune_is_the_store_pass_without_trims():
    ops = load_playbook("daily-prune").operations
    assert set(ops) == {"store", "orphans"}
    assert ops["store"]["prune"] == {k: DAY for k in
                                     ("cron_run", "subagent", "heartbeat", "acp", "dashboard", "probe", "hook", "dreaming")}
    assert ops["store"]["stale_after_s"] is None and ops["store"]["max_entries"] is None
    assert ops["store"]["strip_fields"] == [] and ops["store"]["prune_direct_after_s"] is None
    assert ops["orphans"]["archive_after_s"] == DAY


def test_maintenance_has_openclaw_caps():
    store = load_playbook("maintenance").operations["store"]
    assert (store["stale_after_s"], store["max_entries"], store["rotate_over_bytes"], store["rotate_keep"]) == (
        30 * DAY, 500, 10 * MB, 3)
    assert store["strip_fields"] == ["skillsSnapshot", "systemPromptReport"] and store["prune"] == {}


def test_playbook_check_shows_what_weekly_does(capsys):
    code, out, err = run_cli(["playbook", "check", "weekly"], capsys)
    assert code == 0 and err == ""
    assert "over   2.0MB: keep the last 200 records" in out
    assert "over  10.0MB: keep the last 50 records, slim aggressive" in out
    code, out, _ = run_cli(["playbook", "check", "weekly", "--json"], capsys)
    assert json.loads(out)["operations"] == load_playbook("weekly").operations


# --- includes and merging ---------------------------------------------------------------------

def test_include_merges_key_by_key_and_the_including_file_wins(tmp_path):
    (tmp_path / "base.toml").write_text("""
[store]
disposable_after = "24h"
strip_fields = ["skillsSnapshot"]
[orphans]
archive_after = "24h"
""")
    (tmp_path / "mine.toml").write_text("""
include = ["base"]
[store]
prune = {heartbeat = "1h"}
strip_fields = ["systemPromptReport"]
[orphans]
archive_after = "7d"
""")
    pb = load_playbook(str(tmp_path / "mine.toml"))
    store = pb.operations["store"]
    assert store["prune"]["heartbeat"] == 3600 and store["prune"]["cron_run"] == DAY
    assert store["strip_fields"] == ["systemPromptReport"]        # lists are replaced, not appended
    assert pb.operations["orphans"]["archive_after_s"] == 7 * DAY
    assert pb.includes == ((tmp_path / "base.toml").resolve(),)


def test_problems_in_an_included_file_name_that_file(tmp_path):
    (tmp_path / "base.toml").write_text('[orphans]\narchive_after = "soon"\n')
    (tmp_path / "mine.toml").write_text('include = ["base"]\n[temp]\nremove_after = "1h"\n')
    with pytest.raises(PlaybookError) as exc_info:
        load_playbook(str(tmp_path / "mine.toml"))
    assert exc_info.value.problems == [
        f'{tmp_path / "base.toml"}: orphans.archive_after: expected a duration like "24h", "30d", "90m" '
        f'or a number of seconds, got "soon"']


def test_slim_none_and_explicit_integers(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("""
[[transcripts.tier]]
over = 1000
keep_records = 10
slim = "none"
[legacy]
slim = "none"
[temp]
remove_after = 90
""")
    ops = load_playbook(str(path)).operations
    assert ops["transcripts"]["tiers"] == [{"over_bytes": 1000, "keep_records": 10, "slim": None}]
    assert ops["legacy"] == {"keep_records": 200, "slim": None}
    assert ops["temp"] == {"remove_after_s": 90}


# --- PLAYBOOK resolution ----------------------------------------------------------------------

def test_local_playbooks_folder_wins_over_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "weekly.toml").write_text(
        '[[transcripts.tier]]\nover = "3MB"\nkeep_records = 300\n')
    assert resolve_playbook("weekly") == Path("playbooks/weekly.toml")
    assert load_playbook("weekly").operations["transcripts"]["tiers"][0]["over_bytes"] == 3 * MB
    # A name with no local file still finds the shipped one.
    assert resolve_playbook("emergency") == shipped_playbooks()["emergency"]


def test_a_path_wins_over_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weekly").write_text('[temp]\nremove_after = "2h"\n')
    assert resolve_playbook("weekly") == Path("weekly")
    assert load_playbook("weekly").operations == {"temp": {"remove_after_s": 7200}}


def test_shipped_playbooks_work_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert resolve_playbook("weekly") == REPO.resolve() / "playbooks" / "weekly.toml"
    code, out, _ = run_cli(["playbook", "check", "weekly"], capsys)
    assert code == 0 and "Playbook weekly" in out


def test_unknown_playbook_lists_the_shipped_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["playbook", "check", "weeky"], capsys)
    assert code == ExitStatus.USAGE
    assert 'no playbook "weeky"' in err and 'did you mean "weekly"?' in err
    assert "shipped: daily-prune, emergency, maintenance, weekly" in err
    code, _, err = run_cli(["playbook", "check", "nowhere/weekly.toml"], capsys)
    assert code == 2 and "nowhere/weekly.toml: playbook file not found" in err


def test_an_installed_wheel_finds_its_playbooks_in_fleet_playbooks(tmp_path):
    # The wheel puts playbooks/ at fleet/_playbooks (pyproject force-include); lay the package out
    # that way, run from an unrelated folder, and check the shipped files are found there.
    import shutil
    import subprocess
    import sys

    site = tmp_path / "site"
    shutil.copytree(REPO / "fleet", site / "fleet", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "playbooks", site / "fleet" / "_playbooks")
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = ("from fleet.config.playbook import load_playbook; p = load_playbook('weekly'); "
            "print(p.path); print(*p.includes)")
    done = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, check=True)
    assert done.stdout.split() == [str(site / "fleet" / "_playbooks" / "weekly.toml"),
                                   str(site / "fleet" / "_playbooks" / "daily-prune.toml")]


def test_fleet_run_weekly_works_from_any_folder(tmp_path, monkeypatch, capsys):
    # The real run path on a local host (dry run): the shipped playbook is found from an
    # unrelated folder and the agent accepts what it compiles to.
    monkeypatch.chdir(tmp_path)
    sessions = tmp_path / "claw" / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / "sessions.json").write_text("{}\n")
    (tmp_path / "inventory.toml").write_text(f'[hosts.here]\nconnection = "local"\nstate_dir = "{tmp_path / "claw"}"\n')
    code, out, err = run_cli(["run", "weekly", "--dry-run", "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["playbook"] == "weekly" and doc["dry_run"] is True
    assert [h["host"] for h in doc["hosts"]] == ["here"] and doc["hosts"][0]["ok"] is True
