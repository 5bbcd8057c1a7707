"""The numbers docs/playbooks.md gives for the shipped playbooks are the shipped playbooks' numbers:
the "Shipped playbooks" table, sentence by sentence, and the compiled form of `weekly`, which
must be what `fleet playbook check weekly --json` prints."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fleet.config.playbook import load_playbook
from helpers import run_cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "playbooks.md"
MB, HOUR, DAY = 1024 * 1024, 3600, 86400


def shipped_rows() -> dict[str, str]:
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| `([a-z-]+)` \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def numbers(pattern: str, text: str) -> list[tuple[int, ...]]:
    return [tuple(int(g) for g in m.groups()) for m in re.finditer(pattern, text)]


def tiers_of(name: str) -> list[tuple[int, int]]:
    return [(t["over_bytes"], t["keep_records"]) for t in load_playbook(name).operations["transcripts"]["tiers"]]


def test_the_table_names_every_shipped_playbook():
    from fleet.config.playbook import shipped_playbooks

    assert set(shipped_rows()) == set(shipped_playbooks())


def test_weekly_row_says_what_weekly_toml_does():
    row, book = shipped_rows()["weekly"], load_playbook("weekly")
    ops = book.operations
    said = numbers(r"over (\d+) MB keep (?:the last )?(\d+)", row)
    assert [(over * MB, keep) for over, keep in said] == tiers_of("weekly")
    assert "legacy `*.session.json` files by the same tiers" in row and ops["legacy"]["tiers"] == ops["transcripts"]["tiers"]
    assert numbers(r"caps trajectories to their last (\d+) runs", row) == [(ops["trajectories"]["keep_runs"],)]
    assert numbers(r"archives older than (\d+) days", row) == [(ops["archives"]["delete_after_s"] // DAY,)]
    assert numbers(r"temp files older than (\d+) min", row) == [(ops["temp"]["remove_after_s"] // 60,)]
    assert ("stale locks" in row) == ops["locks"]["remove_stale"]
    assert numbers(r"SQLite-era agents \(trajectories capped to their last (\d+) runs\)", row) == [
        (ops["sqlite"]["trajectory_keep_runs"],)]
    assert numbers(r"backups kept for (\d+) runs / (\d+) days", row) == [
        (book.backup["keep_runs"], book.backup["max_age_s"] // DAY)]


def test_daily_prune_row_says_what_daily_prune_toml_does():
    row, ops = shipped_rows()["daily-prune"], load_playbook("daily-prune").operations
    assert numbers(r"idle for more than (\d+) h", row) == [(h // HOUR,) for h in sorted(set(ops["store"]["prune"].values()))]
    assert numbers(r"orphan transcripts older than (\d+) h", row) == [(ops["orphans"]["archive_after_s"] // HOUR,)]
    named = {"cron runs": "cron_run", "subagents": "subagent", "ACP/dashboard": "acp", "probes": "probe", "hooks": "hook"}
    pruned = row.split("(")[1].split(")")[0]
    assert {named[p.strip()] for p in pruned.split(",")} | {"dashboard"} == set(ops["store"]["prune"])
    assert "heartbeat" not in ops["store"]["prune"] and "dreaming" not in ops["store"]["prune"]


def test_emergency_and_maintenance_rows():
    rows = shipped_rows()
    said = numbers(r"over (\d+) MB keeps its last (\d+) records", rows["emergency"])
    assert [(over * MB, keep) for over, keep in said] == tiers_of("emergency")
    store = load_playbook("maintenance").operations["store"]
    row = rows["maintenance"]
    assert numbers(r"idle for (\d+) days", row) == [(store["stale_after_s"] // DAY,)]
    assert numbers(r"at most (\d+) entries", row) == [(store["max_entries"],)]
    assert numbers(r"over (\d+) MB rotated \((\d+) kept\)", row) == [(store["rotate_over_bytes"] // MB, store["rotate_keep"])]


def test_the_compiled_form_is_what_playbook_check_prints(capsys):
    text = DOC.read_text()
    block = text.split("## Compiled form", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    code, out, _ = run_cli(["playbook", "check", "weekly", "--json"], capsys)
    assert code == 0
    assert json.loads(block) == json.loads(out)["operations"]


@pytest.mark.parametrize("phrase, seconds", [("OpenClaw reaps its own temp files after 5 minutes", 300)])
def test_weekly_toml_keeps_temp_files_longer_than_openclaw_does(phrase, seconds):
    weekly = (Path(__file__).resolve().parents[2] / "playbooks" / "weekly.toml").read_text()
    assert phrase in weekly and load_playbook("weekly").operations["temp"]["remove_after_s"] > seconds


@pytest.mark.parametrize("name", ["weekly", "daily-prune", "emergency", "maintenance"])
def test_playbook_check_lists_every_operation_it_counts(name, capsys):
    code, out, _ = run_cli(["playbook", "check", name], capsys)
    assert code == 0
    operations = load_playbook(name).operations
    listed = {line.split(":", 1)[0] for line in out.splitlines() if re.match(r"^[a-z]+:", line)} - {"backup", "warning"}
    assert listed == set(operations)
    assert out.rstrip().endswith(f"OK: {len(operations)} operation{'s' if len(operations) != 1 else ''}")
