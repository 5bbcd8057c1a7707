"""`parse_agent_output` on outputs recorded from the real agent (tests/report/data/agent_outputs/, made by
record.py there), on what a host's shell says when the agent cannot run, and, where a recording
could never catch an agent regression (a dry run's prediction), on the real agent run live."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from fleet.control.bundle import export_agent
from fleet.report.results import HostResult, RunResult, parse_agent_output

OUTPUTS = Path(__file__).parent / "data" / "agent_outputs"


def parse(case: str, host: str = "t440") -> HostResult:
    recorded = json.loads((OUTPUTS / f"{case}.json").read_text())
    return parse_agent_output(host, recorded["stdout"], recorded["stderr"], recorded["exit_code"], 0.5)


def test_a_scan_gives_every_file_with_after_equal_to_before():
    result = parse("scan_ok")
    assert result.ok and result.error is None and result.elapsed_s == 0.5
    assert {f.agent for f in result.files} == {"main", "work"}
    assert {f.kind for f in result.files} == {"store", "transcript"}
    assert all(f.after == f.before and f.action == "none" for f in result.files)
    assert result.before_bytes == result.after_bytes > 2 * 1024 * 1024
    assert result.state_dir.endswith("/state")
    assert any(h.severity in ("warning", "critical") for h in result.health)


def test_a_weekly_run_trims_the_big_transcript_with_a_verified_backup():
    result = parse("run_weekly")
    assert result.ok
    trimmed = [f for f in result.files if f.action == "trim"]
    assert len(trimmed) == 1
    (t,) = trimmed
    assert t.before.records == 600 and t.after.records == 200
    assert t.before.bytes > t.after.bytes and t.before.sha256 != t.after.sha256
    assert t.backup.startswith(result.backup_dir) and t.backup_sha256 == t.before.sha256
    assert result.backup_bytes >= t.before.bytes
    assert result.before_bytes - result.after_bytes == sum(f.before.bytes - f.after.bytes for f in result.files)


def _recorder():
    """record.py, whose state and plan builders made the recordings (one copy of them)."""
    spec = importlib.util.spec_from_file_location("agent_outputs_record", OUTPUTS / "record.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_dry_run_reports_what_the_real_run_then_does(tmp_path):
    """Live, not recorded: the real agent's dry run and then its real run on the same files, each
    parsed; the dry run must predict every file's action and size and change nothing."""
    record = _recorder()
    agent = tmp_path / "agent.pyz"
    export_agent(agent)
    state = tmp_path / "state"
    record.write_agent(state, "main", turns=300, pad=4000)
    record.write_agent(state, "work", turns=5, pad=50)
    files_before = {p: p.read_bytes() for p in state.rglob("*") if p.is_file()}

    def live(dry_run: bool) -> HostResult:
        out = record.run(agent, record.plan("run", state, dry_run=dry_run))
        return parse_agent_output("t440", out["stdout"], out["stderr"], out["exit_code"], 0.5)

    dry = live(True)
    assert {p: p.read_bytes() for p in state.rglob("*") if p.is_file()} == files_before
    real = live(False)
    key = lambda r: sorted((f.path, f.action, f.after.bytes, f.after.records) for f in r.files)
    assert dry.ok and real.ok and key(dry) == key(real)
    assert {f.action for f in real.files} >= {"trim", "prune"}
    assert all(f.backup is None for f in dry.files)
    assert all(f.backup for f in real.files if f.action == "trim")


def test_shell_noise_before_the_result_is_ignored():
    assert parse("noise_before_result").files == parse("scan_ok").files


@pytest.mark.parametrize("case, error", [
    ("state_dir_missing", "state dir does not exist: "),
    ("plan_other_protocol", "bad plan: plan speaks protocol 99, this agent speaks 1"),
    ("plan_not_json", "agent failed (exit 2): the plan is not valid JSON"),
    ("python_missing", "agent failed (exit 127): bash: line 1: python3: command not found"),
    ("cut_off", "agent failed (exit None): its result was cut off after 200 characters"),
    ("killed_no_output", "agent failed (exit None): it ended without any output"),
    ("unknown_agent", "agent ghost: agent not found: agents/ghost"),
])
def test_failures_say_what_went_wrong(case, error):
    result = parse(case)
    assert not result.ok
    assert result.error.startswith(error), result.error
    assert "{" not in result.error.split(":")[0]      # never a JSON fragment as the reason


def test_a_corrupt_store_is_a_file_error_and_the_rest_is_reported():
    result = parse("store_corrupt")
    assert result.ok   # the host was reached and worked on; the file error fails the run
    (bad,) = result.file_errors
    assert bad.path == "agents/main/sessions/sessions.json" and "not valid JSON" in bad.error
    run = RunResult("r", "run", "weekly", False, "a", "b", (result,))
    assert not run.ok and run.totals()["file_errors"] == 1


def test_host_result_round_trips_through_the_json_document():
    result = parse("run_weekly")
    again = HostResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again.files == result.files and again.health == result.health
    assert (again.backup_bytes, again.state_dir, again.ok) == (result.backup_bytes, result.state_dir, True)


def test_an_agent_speaking_another_protocol_is_named_stale():
    recorded = json.loads((OUTPUTS / "scan_ok.json").read_text())
    doc = json.loads(recorded["stdout"])
    doc["protocol"] = 2
    result = parse_agent_output("t440", json.dumps(doc), "", 0, 0.1)
    assert not result.ok and "protocol 2" in result.error and "stale" in result.error
