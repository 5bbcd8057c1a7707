"""Run notices: the text, and delivery to a real HTTP server on 127.0.0.1 that imitates Telegram."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.errors import ConfigError
from fleet.report.notify import build_notice_text, check_notify_config, send_run_notice
from fleet.report.results import FileResult, HostResult, RunResult, Stats
from fleet.units import human_mb
from helpers import TOKEN, make_local_fleet, RecordingServer, SESSION_ID


# --- a tiny local fleet (shared with test_schedule*.py) ----------------------------------------


@pytest.fixture
def server():
    servers = []

    def start(**kwargs) -> RecordingServer:
        s = RecordingServer(**kwargs)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def closed_port_url():
    """A loopback URL that refuses connections for the whole test: its port stays bound by this
    socket, never listening, so no other test or xdist worker can take it and answer meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def write_config(inventory: Path, base_url: str, webhook: str | None = None) -> None:
    text = f'[notify.telegram]\nchat_id = -1001234567890\nbase_url = "{base_url}"\ntimeout = 5\n'
    if webhook:
        text += f'[notify.webhook]\nurl = "{webhook}"\n'
    (inventory.parent / "fleet.toml").write_text(text)


def fleet_cli(args: list[str], state: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "FLEET_STATE_DIR": str(state), **(env or {})}
    return subprocess.run([sys.executable, "-m", "fleet", *args], capture_output=True, text=True,
                          env=full_env, timeout=240)


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("FLEET_TELEGRAM_TOKEN", raising=False)


# --- the text ---------------------------------------------------------------------------------

def file(agent: str, path: str, before: int, after: int, action: str = "trim") -> FileResult:
    return FileResult(agent=agent, path=path, kind="transcript", action=action, actions=(action,),
                      before=Stats(before, 10), after=Stats(after, 5))


def sample_run(dry_run: bool = False) -> RunResult:
    mb = 1024 * 1024
    return RunResult(
        run_id="20261122T030000Z-ab12cd", kind="run", playbook="weekly", dry_run=dry_run,
        started_at="2026-11-22T03:00:00Z", finished_at="2026-11-22T03:00:09Z",
        hosts=(
            HostResult("pc-a", True, files=(file("main", "agents/main/sessions/a.jsonl", int(9.2 * mb), int(0.18 * mb)),
                                            file("main", "agents/main/sessions/sessions.json", 4096, 4096, "none")),
                       backup_dir="/home/linou/.openclaw/fleet-backups/20261122T030000Z-ab12cd"),
            HostResult("t440", True, files=(file("ops", "agents/ops/sessions/b.jsonl", 4 * mb, 1 * mb),),
                       backup_dir="/srv/oc/fleet-backups/20261122T030000Z-ab12cd"),
            HostResult.failed("nuc", "connection refused by 192.168.10.30:22: is sshd running?"),
        ))


def test_the_notice_reads_like_the_field_report():
    text = build_notice_text(sample_run())
    assert text.splitlines() == [
        "fleet run 20261122T030000Z-ab12cd: weekly — FAILED",
        "hosts: 2 ok, 1 failed",
        "pc-a/main 9.2MB → 0.18MB (−98 %)",
        "t440/ops 4.0MB → 1.0MB (−75 %)",
        "freed 12.0MB (13.2MB → 1.2MB)",
        "failed:",
        "  nuc: connection refused by 192.168.10.30:22: is sshd running?",
        "backups: pc-a:/home/linou/.openclaw/fleet-backups/20261122T030000Z-ab12cd, "
        "t440:/srv/oc/fleet-backups/20261122T030000Z-ab12cd",
    ]


def test_a_dry_run_is_marked_and_says_would():
    text = build_notice_text(sample_run(dry_run=True))
    assert text.splitlines()[0] == "fleet run 20261122T030000Z-ab12cd: weekly (DRY RUN, nothing changed) — FAILED"
    assert "would free 12.0MB" in text and "backups:" not in text


def test_a_scan_lists_the_largest_agents_and_the_worst_findings():
    from fleet.report.results import HealthFinding

    mb = 1024 * 1024
    scan = RunResult("s1", "scan", None, False, "", "", (
        HostResult("pc-a", True, files=(file("main", "a.jsonl", 9 * mb, 9 * mb, "none"),),
                   health=(HealthFinding("main", "warning", "transcript-size", "transcript is 9.0 MB"),
                           HealthFinding("main", "critical", "store-parse", "sessions.json does not parse"),
                           HealthFinding("main", "info", "era", "json"))),
        HostResult("t440", True, files=(file("ops", "b.jsonl", 2 * mb, 2 * mb, "none"),)),
    ))
    assert build_notice_text(scan).splitlines() == [
        "fleet scan s1 — ok",
        "hosts: 2 ok, 0 failed",
        "pc-a/main 9.0MB",
        "t440/ops 2.0MB",
        "total 11.0MB",
        "health: 1 critical, 1 warning",
        "  pc-a/main critical: sessions.json does not parse",
        "  pc-a/main warning: transcript is 9.0 MB",
    ]


def test_top_limits_the_agent_lines_and_long_text_is_cut_for_telegram():
    hosts = tuple(HostResult(f"h{i:03d}", False, error="boom " * 200) for i in range(40))
    big = RunResult("r1", "run", "weekly", False, "", "", hosts)
    text = build_notice_text(big, top=1)
    assert len(text) <= 4096 and "… and 35 more" in text
    assert len(build_notice_text(sample_run(), top=1).splitlines()) == 7


def test_a_skipped_run_is_one_line():
    skipped = RunResult("r2", "skipped", "weekly", False, "", "", (),
                        extra={"schedule": "weekly", "reason": "the previous run (pid 42) is still going"})
    assert build_notice_text(skipped) == "fleet schedule weekly: skipped (the previous run (pid 42) is still going)"


# --- delivery (in process) --------------------------------------------------------------------

def test_telegram_and_webhook_each_get_one_message(tmp_path, server, monkeypatch):
    telegram, hook = server(), server()
    inventory = tmp_path / "inventory.toml"
    write_config(inventory, telegram.url, webhook=hook.url + "/hook")
    monkeypatch.setenv("FLEET_TELEGRAM_TOKEN", TOKEN)
    assert send_run_notice(sample_run(), inventory) == []
    assert len(telegram.received) == 1 and len(hook.received) == 1
    got = telegram.received[0]
    assert got["path"] == f"/bot{TOKEN}/sendMessage" and got["content_type"].startswith("application/json")
    assert got["json"] == {"chat_id": -1001234567890, "text": build_notice_text(sample_run()),
                           "disable_web_page_preview": True}
    assert hook.received[0] == {"path": "/hook", "content_type": got["content_type"],
                                "json": {"text": build_notice_text(sample_run())}}


def test_failures_come_back_as_problems_without_the_token(tmp_path, server, monkeypatch, closed_port_url):
    refusing = server(status=401, answer={"ok": False, "error_code": 401, "description": "Unauthorized"})
    inventory = tmp_path / "inventory.toml"
    write_config(inventory, refusing.url, webhook=closed_port_url)
    monkeypatch.setenv("FLEET_TELEGRAM_TOKEN", TOKEN)
    problems = send_run_notice(sample_run(), inventory)
    assert problems[0] == f"telegram: sending to {refusing.url} failed: HTTP 401 Unauthorized: Unauthorized"
    assert problems[1].startswith("webhook http://127.0.0.1:") and "Connection refused" in problems[1]
    assert len(problems) == 2
    log = (tmp_path / "state" / "logs" / "notify.jsonl").read_text()
    assert TOKEN not in log and TOKEN.split(":")[1] not in " ".join(problems)
    entries = [json.loads(line) for line in log.splitlines()]
    assert [(e["channel"], e["ok"]) for e in entries] == [("telegram", False), ("webhook", False)]
    assert (tmp_path / "state" / "logs" / "notify.jsonl").stat().st_mode & 0o777 == 0o600


def test_a_missing_token_variable_or_config_is_a_problem_not_an_exception(tmp_path, server):
    telegram = server()
    inventory = tmp_path / "inventory.toml"
    assert send_run_notice(sample_run(), inventory)[0].startswith("notify: nothing to send to:")
    write_config(inventory, telegram.url)
    problems = send_run_notice(sample_run(), inventory)
    assert problems == ["telegram: environment variable FLEET_TELEGRAM_TOKEN is not set (it holds the bot token; "
                        "scheduled runs read it from the schedule's env file, see docs/schedule-and-notify.md)"]
    assert telegram.received == []
    (tmp_path / "fleet.toml").write_text("[notify.telegram]\nchat_id = [1]\n")
    assert send_run_notice(sample_run(), inventory)[0].endswith("chat_id: expected a string or integer, got [1]")


def test_a_webhook_url_from_the_environment_is_used_and_never_shown(tmp_path, server, monkeypatch, closed_port_url):
    hook = server()
    inventory = tmp_path / "inventory.toml"
    (tmp_path / "fleet.toml").write_text('[notify]\nwhen = "failure"\n[notify.webhook]\nurl_env = "TEAM_HOOK"\n')
    monkeypatch.setenv("TEAM_HOOK", hook.url + "/secret-path-T0K3N")
    assert send_run_notice(sample_run(), inventory) == []
    assert [r["path"] for r in hook.received] == ["/secret-path-T0K3N"]
    ok_run = RunResult("r3", "run", "weekly", False, "", "", (HostResult("pc-a", True),))
    assert send_run_notice(ok_run, inventory) == [] and len(hook.received) == 1   # when = "failure"
    monkeypatch.setenv("TEAM_HOOK", closed_port_url + "/secret-path-T0K3N")
    (problem,) = send_run_notice(sample_run(), inventory)
    assert problem.startswith("webhook (URL from $TEAM_HOOK): sending failed:") and "T0K3N" not in problem


def test_notify_config_is_checked_before_a_run(tmp_path):
    inventory = tmp_path / "inventory.toml"
    assert not check_notify_config(inventory).configured        # reported after the run, not before
    (tmp_path / "fleet.toml").write_text("[notify.telegram]\nchat_id = [1]\n")
    with pytest.raises(ConfigError, match=r"chat_id: expected a string or integer"):
        check_notify_config(inventory)
    write_config(inventory, "http://127.0.0.1:9")
    assert check_notify_config(inventory).telegram.base_url == "http://127.0.0.1:9"


# --- delivery after a real run (the CLI, a local host, the real agent) ---------------------

def test_a_run_with_notify_delivers_one_message_with_the_runs_totals(tmp_path, server):
    telegram = server()
    inventory = make_local_fleet(tmp_path)
    write_config(inventory, telegram.url)
    proc = fleet_cli(["run", "emergency", "-i", str(inventory), "--json", "--notify"], tmp_path / "state",
                     {"FLEET_TELEGRAM_TOKEN": TOKEN})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    totals = doc["totals"]
    assert totals["freed_bytes"] > 0
    assert len(telegram.received) == 1 and doc["notify"] == {"sent": True, "problems": []}
    text = telegram.received[0]["json"]["text"]
    assert text.splitlines()[0] == f"fleet run {doc['run_id']}: emergency — ok"
    assert "hosts: 1 ok, 0 failed" in text
    assert (f"freed {human_mb(totals['freed_bytes'])} ({human_mb(totals['before_bytes'])} → "
            f"{human_mb(totals['after_bytes'])})") in text
    assert f"control/main {human_mb(totals['before_bytes'])} → {human_mb(totals['after_bytes'])}" in text
    assert f"backups: control:{doc['hosts'][0]['backup_dir']}" in text
    assert TOKEN not in proc.stderr + proc.stdout


def test_with_the_server_down_the_run_still_succeeds_and_says_why(tmp_path, closed_port_url):
    inventory = make_local_fleet(tmp_path)
    down = closed_port_url
    write_config(inventory, down)
    proc = fleet_cli(["run", "emergency", "-i", str(inventory), "--json", "--notify"], tmp_path / "state",
                     {"FLEET_TELEGRAM_TOKEN": TOKEN})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["totals"]["hosts_ok"] == 1
    assert f"telegram: sending to {down} failed: Connection refused" in proc.stderr
    assert TOKEN not in proc.stderr + proc.stdout
    doc = json.loads(proc.stdout)
    assert doc["notify"] == {"sent": False, "problems": [f"telegram: sending to {down} failed: Connection refused"]}
    entry = json.loads((tmp_path / "state" / "logs" / "notify.jsonl").read_text().splitlines()[-1])
    assert entry["run_id"] == doc["run_id"] and entry["ok"] is False
    assert "Connection refused" in entry["problem"]
    from fleet.report.history import load_run

    assert load_run(doc["run_id"]).extra["notify"] == doc["notify"]     # recorded with the run


def test_a_broken_fleet_toml_with_notify_runs_nothing(tmp_path):
    inventory = make_local_fleet(tmp_path)
    (tmp_path / "fleet.toml").write_text("[notify.telegram]\nchat_id = [1]\n")
    before = (tmp_path / "openclaw" / "agents" / "main" / "sessions" / f"{SESSION_ID}.jsonl").read_bytes()
    proc = fleet_cli(["run", "emergency", "-i", str(inventory), "--notify"], tmp_path / "state")
    assert proc.returncode == 2
    assert "fleet.toml: notify.telegram.chat_id: expected a string or integer, got [1]" in proc.stderr
    assert (tmp_path / "openclaw" / "agents" / "main" / "sessions" / f"{SESSION_ID}.jsonl").read_bytes() == before
    assert not (tmp_path / "state" / "history.sqlite").exists()
