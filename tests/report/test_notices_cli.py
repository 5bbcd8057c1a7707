"""Notices worth reading, through the `fleet` command and a real HTTP server on 127.0.0.1 that
answers like Telegram: `when = "findings"` sends only for new findings, `scan --notify`, the
local time, files changed and bytes freed per host, and a report that names what was removed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from helpers import TOKEN, RecordingServer, SESSION_ID, make_local_fleet

REPO = Path(__file__).resolve().parents[2]
DAY_MS = 86_400_000


def fleet(args: list[str], state: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLEET_STATE_DIR=str(state), FLEET_TELEGRAM_TOKEN=TOKEN, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "fleet", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=240)


@pytest.fixture
def telegram():
    server = RecordingServer()
    yield server
    server.close()


def configure(inventory: Path, url: str, when: str, extra: str = "") -> None:
    (inventory.parent / "fleet.toml").write_text(
        f'[notify]\nwhen = "{when}"\ntimezone = "Asia/Tokyo"\n'
        f'[notify.telegram]\nchat_id = 42\nbase_url = "{url}"\n{extra}')


def add_session(inventory: Path, key: str, sid: str, source: Path) -> None:
    """Another session whose transcript is a copy of `source` (the store references it)."""
    sessions = source.parent
    (sessions / f"{sid}.jsonl").write_bytes(source.read_bytes())
    store = json.loads((sessions / "sessions.json").read_text())
    store[key] = {"sessionId": sid, "updatedAt": int(time.time() * 1000), "sessionFile": str(sessions / f"{sid}.jsonl")}
    (sessions / "sessions.json").write_text(json.dumps(store, indent=2))


def test_when_findings_sends_only_for_a_new_finding_and_scan_can_notify(tmp_path, telegram):
    inventory = make_local_fleet(tmp_path)               # one ~1.3 MB transcript
    # Only the size is judged here: token counts estimated from these big transcripts stay quiet.
    configure(inventory, telegram.url, "findings", '[thresholds]\ntranscript_size = "1MB"\n[thresholds.tokens]\n'
                                                   'main = [900000, 999999]\ngroup = [900000, 999999]\n')
    state = tmp_path / "state"

    first = fleet(["scan", "-i", str(inventory), "--notify", "--json"], state)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["notify"] == {"sent": True, "problems": []}
    (sent,) = telegram.received
    text = sent["json"]["text"]
    assert "health: 0 critical, 1 warning (1 new since the last notice)" in text
    assert "  new control/main warning: transcript is" in text

    again = fleet(["scan", "-i", str(inventory), "--notify"], state)
    assert again.returncode == 0, again.stderr
    assert len(telegram.received) == 1                   # the same finding: nothing new, nothing sent

    transcript = tmp_path / "openclaw" / "agents" / "main" / "sessions" / f"{SESSION_ID}.jsonl"
    add_session(inventory, "agent:main:telegram:group:-100", "5e55e55e-0000-4000-8000-000000000001", transcript)
    third = fleet(["scan", "-i", str(inventory), "--notify"], state)
    assert third.returncode == 0, third.stderr
    assert len(telegram.received) == 2
    lines = telegram.received[1]["json"]["text"].splitlines()
    assert "health: 0 critical, 2 warning (1 new since the last notice)" in lines
    marked = [line for line in lines if line.startswith("  new ")]
    assert len(marked) == 1 and "(5e55e55e-0000-4000-8000-000000000001.jsonl)" in marked[0]

    # The run trims both transcripts: no finding left, nothing new, no notice.
    run = fleet(["run", "emergency", "-i", str(inventory), "--notify", "--json"], state)
    assert run.returncode == 0, run.stderr
    assert len(telegram.received) == 2
    assert json.loads(run.stdout)["notify"] == {"sent": True, "problems": []}


def test_the_notice_has_local_time_files_changed_bytes_per_host_and_every_agent(tmp_path, telegram):
    inventory = make_local_fleet(tmp_path)
    configure(inventory, telegram.url, "always")
    proc = fleet(["run", "emergency", "-i", str(inventory), "--notify", "--json"], tmp_path / "state")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (sent,) = telegram.received
    lines = sent["json"]["text"].splitlines()
    started = datetime.fromisoformat(doc["started_at"].replace("Z", "+00:00")).astimezone(ZoneInfo("Asia/Tokyo"))
    assert lines[1] == f"at {started:%Y-%m-%d %H:%M} JST (UTC+09:00)"
    totals = doc["totals"]
    assert f"files changed: {totals['files_changed']} of {totals['files']}" in lines
    host = [line for line in lines if line.startswith("control: freed ")]
    assert len(host) == 1 and f"{totals['files_changed']} file" in host[0]
    assert any(line.startswith("control/main ") for line in lines)


def test_verbose_report_and_json_name_every_removed_session(tmp_path):
    inventory = make_local_fleet(tmp_path)
    sessions = tmp_path / "openclaw" / "agents" / "main" / "sessions"
    store = json.loads((sessions / "sessions.json").read_text())
    old = int(time.time() * 1000) - 10 * DAY_MS - 3600 * 1000
    for key, sid, size in (("agent:main:cron:job1:run:r1", "c0ffee00-0000-4000-8000-000000000001", 3000),
                           ("agent:main:subagent:s1", "c0ffee00-0000-4000-8000-000000000002", 5000)):
        store[key] = {"sessionId": sid, "updatedAt": old}
        (sessions / f"{sid}.jsonl").write_text('{"type":"session","version":3,"id":"%s"}\n' % sid + "x" * size + "\n")
    (sessions / "sessions.json").write_text(json.dumps(store, indent=2))
    state = tmp_path / "state"
    run = fleet(["run", "daily-prune", "-i", str(inventory), "--json"], state)
    assert run.returncode == 0, run.stderr
    removed = {r["key"]: r for r in json.loads(run.stdout)["hosts"][0]["removed_sessions"]}
    assert set(removed) == {"agent:main:cron:job1:run:r1", "agent:main:subagent:s1"}
    assert removed["agent:main:subagent:s1"]["kind"] == "subagent"
    assert removed["agent:main:subagent:s1"]["bytes"] > 5000 and removed["agent:main:subagent:s1"]["age_s"] >= 10 * 86400

    plain = fleet(["report", "-i", str(inventory)], state)
    assert "Removed and archived sessions" not in plain.stdout
    verbose = fleet(["report", "--verbose", "-i", str(inventory)], state)
    assert verbose.returncode == 0, verbose.stderr
    table = verbose.stdout.split("Removed and archived sessions")[1]
    row = [line for line in table.splitlines() if "agent:main:cron:job1:run:r1" in line]
    assert len(row) == 1 and "cron_run" in row[0] and "10d" in row[0] and " KB" in row[0]
    saved = json.loads(fleet(["report", "--format", "json", "-i", str(inventory)], state).stdout)
    assert {r["key"] for r in saved["hosts"][0]["removed_sessions"]} == set(removed)
