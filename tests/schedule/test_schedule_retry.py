"""A host down at schedule time is cleaned once it comes back within the schedule's retry window:
`fleet schedule run` (the real CLI, in-process) against two real sshd hosts, one of them stopped
when the run starts and started again (same port, same key) a moment later."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from fleet.schedule.retry import catch_up, first_pause
from fleet.schedule.schedules import Schedule, definition_path, write_json
from fleet.report.results import HostResult, RunResult
from helpers import run_cli
from sshfleet import generated
from helpers import SMALL_PLAYBOOK as PLAYBOOK


def install(tmp_path: Path, inventory: Path, retry_for_s: int) -> None:
    playbook = tmp_path / "nightly.toml"
    playbook.write_text(PLAYBOOK)
    schedule = Schedule(name="nightly", action="run", playbook=str(playbook), inventory=str(inventory), limit=None,
                        notify=False, backend="cron", at="0 3 * * *", cron="0 3 * * *", on_calendar=[],
                        command=["fleet", "schedule", "run", "nightly"], state_dir=str(tmp_path / "control"),
                        log=str(tmp_path / "nightly.log"), extra={"retry_for_s": retry_for_s})
    write_json(definition_path("nightly"), schedule.to_json())


def test_a_host_down_at_schedule_time_is_caught_up_within_retry_for(ssh_fleet, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "control"))
    fleet_ = ssh_fleet(2, populate=generated(), names=["up", "late"])
    inventory = fleet_.write_inventory("connect_timeout = 3")
    install(tmp_path, inventory, retry_for_s=30)
    late = fleet_.host("late").server
    port = late.port
    fleet_.stop("late")

    def come_back():
        time.sleep(1.5)
        late._requested_port = port          # the same address the inventory names
        late.start()

    back = threading.Thread(target=come_back)
    back.start()
    try:
        code, _, err = run_cli(["schedule", "run", "nightly"], capsys)
    finally:
        back.join()
    assert code == 0, err[-2000:]
    assert "1 host(s) not reached (late); retry 1 in 4s" in err
    assert "caught up late: late" in err
    code, out, _ = run_cli(["history", "--json", "-i", str(inventory)], capsys)
    runs = [r for r in json.loads(out)["runs"] if r["kind"] == "run"]
    assert len(runs) == 2                    # the scheduled run, then the catch-up of "late" alone
    code, out, _ = run_cli(["report", runs[0]["run_id"], "--format", "json"], capsys)
    caught = json.loads(out)
    assert [h["host"] for h in caught["hosts"]] == ["late"] and caught["hosts"][0]["ok"]
    assert any(f["action"] != "none" for f in caught["hosts"][0]["files"])


def test_back_off_doubles_and_stays_within_the_window(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "control"))
    down = RunResult("r1", "run", "p", False, "", "", (HostResult("h", False, error="connection refused"),))
    now, pauses, attempts = [0.0], [], []

    def sleep(seconds):
        pauses.append(seconds)
        now[0] += seconds

    code = catch_up("s", 1, down, 100, lambda limit: attempts.append(limit) or (1, down), sleep=sleep,
                    clock=lambda: now[0])
    assert code == 1
    assert first_pause(100) == 12.5 and pauses == [12.5, 25.0, 50.0]     # a 4th (100 s) would end past 100 s
    assert attempts == ["h", "h", "h"]
