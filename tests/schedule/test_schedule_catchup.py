"""Missed schedules run at the next chance on cron too (fleet/schedule/catchup.py): the latest fire
time of a cron expression, the decision, and `fleet schedule run NAME --catch-up` on a local fleet."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from fleet.schedule.catchup import GRACE_S, missed, previous_fire
from fleet.schedule.schedules import Schedule, definition_path, write_json
from helpers import make_local_fleet, run_cli


def test_previous_fire_follows_crons_rules():
    friday = datetime(2026, 12, 4, 22, 20)
    assert previous_fire("0 3 * * 0", friday) == datetime(2026, 11, 29, 3, 0)          # last Sunday 03:00
    assert previous_fire("*/15 * * * *", friday) == datetime(2026, 12, 4, 22, 15)
    assert previous_fire("30 2 1 * 5", friday) == datetime(2026, 12, 4, 2, 30)         # day 1 OR a Friday
    assert previous_fire("30 23 * * *", friday) == datetime(2026, 12, 3, 23, 30)       # today's is still ahead
    assert previous_fire("0 0 29 2 *", datetime(2026, 12, 4)) is None                   # no Feb 29 in 400 days


def test_missed_only_when_the_fire_time_is_newer_than_the_last_start_and_the_install(tmp_path):
    now = datetime(2026, 12, 4, 22, 20).astimezone()
    status = tmp_path / "nightly.last.json"
    long_ago = (now - timedelta(days=30)).astimezone(timezone.utc).isoformat()
    assert missed("0 3 * * *", long_ago, status, now) == datetime(2026, 12, 4, 3, 0).astimezone()
    status.write_text(json.dumps({"started_at": datetime(2026, 12, 4, 3, 0, 5).astimezone().isoformat()}))
    assert missed("0 3 * * *", long_ago, status, now) is None
    status.write_text(json.dumps({"started_at": datetime(2026, 12, 3, 3, 0, 5).astimezone().isoformat()}))
    assert missed("0 3 * * *", long_ago, status, now) is not None
    assert missed("0 3 * * *", now.isoformat(), tmp_path / "none.json", now) is None   # installed since
    # Within the grace after the fire time the regular line is starting: no catch-up races it.
    at_three = datetime(2026, 12, 4, 3, 0).astimezone() + timedelta(seconds=GRACE_S - 60)
    status.write_text(json.dumps({"started_at": datetime(2026, 12, 3, 3, 0, 5).astimezone().isoformat()}))
    assert missed("0 3 * * *", long_ago, status, at_three) is None       # yesterday's ran; today's is starting


def test_catch_up_runs_a_missed_schedule_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "control"))
    inventory = make_local_fleet(tmp_path)
    installed = (datetime.now(timezone.utc) - timedelta(days=3)).isoformat(timespec="seconds")
    schedule = Schedule(name="nightly", action="scan", playbook=None, inventory=str(inventory), limit=None,
                        notify=False, backend="cron", at="0 3 * * *", cron="0 3 * * *", on_calendar=[],
                        command=["fleet", "schedule", "run", "nightly"], state_dir=str(tmp_path / "control"),
                        log=str(tmp_path / "nightly.log"), installed_at=installed)
    write_json(definition_path("nightly"), schedule.to_json())
    code, out, err = run_cli(["schedule", "run", "nightly", "--catch-up"], capsys)
    assert code == 0, err
    assert "fleet schedule nightly: catching up the run missed at " in out
    code, history, _ = run_cli(["history", "--json", "-i", str(inventory)], capsys)
    assert [r["kind"] for r in json.loads(history)["runs"]] == ["scan"]
    # Made up for: the next catch-up check runs nothing and says nothing.
    code, out, err = run_cli(["schedule", "run", "nightly", "--catch-up"], capsys)
    assert code == 0 and out == "" and err == ""
    code, history, _ = run_cli(["history", "--json", "-i", str(inventory)], capsys)
    assert len(json.loads(history)["runs"]) == 1
