"""The agent's command line as a person or the controller runs it: `python3 -m fleet.hostside` and
the exported .pyz, as subprocesses; exit codes, the one JSON result, fatal lines on stderr, and
plan validation messages that name the key."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.hostside.protocol import PlanError, validate_plan
from fleet.control.bundle import export_agent
from fleet.report.results import parse_agent_output

REPO = Path(__file__).resolve().parents[2]
NOW_MS = 1795000000000


def small_state(root: Path) -> Path:
    s = root / "agents" / "main" / "sessions"
    s.mkdir(parents=True)
    (s / "sessions.json").write_text(json.dumps({"agent:main:main": {"sessionId": "abc", "updatedAt": 1}}))
    (s / "abc.jsonl").write_text('{"type":"session"}\n{"type":"message"}\n')
    return root


def agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fleet.hostside", *args]


def run(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, cwd=REPO, timeout=60)


def fatal_lines(stderr: str) -> list[str]:
    out = []
    for line in stderr.splitlines():
        ev = json.loads(line)  # every stderr line is JSON
        if ev.get("event") == "fatal":
            out.append(ev["error"])
    return out


@pytest.fixture(scope="module")
def pyz(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("agent") / "fleet-agent.pyz"
    export_agent(path)
    return str(path)


def test_help_explains_and_points_to_the_protocol(pyz):
    for cmd in (agent_cmd("--help"), ["python3", pyz, "--help"]):
        proc = run(cmd)
        assert proc.returncode == 0
        assert "docs/agent-protocol.md" in proc.stdout
        assert "run" in proc.stdout and "scan" in proc.stdout and "exit status" in proc.stdout


def test_version(pyz):
    proc = run(["python3", pyz, "version"])
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"protocol": 1, "agent_version": "0.1.0"}


def test_scan_from_the_pyz_parses_as_an_ok_host(tmp_path, pyz):
    small_state(tmp_path)
    proc = run(["python3", pyz, "scan", "--state-dir", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    host = parse_agent_output("h", proc.stdout, proc.stderr, proc.returncode, 0.1)
    assert host.ok and host.error is None
    assert host.before_bytes == sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert {f.path for f in host.files} == {"agents/main/sessions/sessions.json", "agents/main/sessions/abc.jsonl"}
    assert json.loads(proc.stderr.splitlines()[-1]) == {"event": "done"}


def test_missing_state_dir_exits_3_with_a_result(tmp_path, pyz):
    for cmd in (agent_cmd("scan", "--state-dir", str(tmp_path / "nope")),
                ["python3", pyz, "run", "--plan", "-"]):
        plan = json.dumps({"protocol": 1, "mode": "run", "state_dir": str(tmp_path / "nope")})
        proc = run(cmd, stdin=plan)
        assert proc.returncode == 3
        doc = json.loads(proc.stdout)
        assert doc["ok"] is False and "does not exist" in doc["error"]
        assert fatal_lines(proc.stderr) == [doc["error"]]
        assert parse_agent_output("h", proc.stdout, proc.stderr, 3, 0.1).ok is False
    assert not (tmp_path / "nope").exists()


def test_unreadable_plan_exits_2_without_result(tmp_path):
    proc = run(agent_cmd("run"), stdin="{not json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "not valid JSON" in fatal_lines(proc.stderr)[0]
    proc = run(agent_cmd("run", "--plan", str(tmp_path / "missing.json")))
    assert proc.returncode == 2 and "cannot read the plan" in fatal_lines(proc.stderr)[0]


@pytest.mark.parametrize("plan,needle", [
    ({"protocol": 2, "mode": "scan"}, "protocol 2"),
    ({"protocol": 1, "mode": "fix"}, "at 'mode'"),
    ({"protocol": 1, "operations": {"transcripts": {"tiers": [{"over_bytes": 1}]}}},
     "operations.transcripts.tiers[0].keep_records"),
    ({"protocol": 1, "operations": {"vacuum": {}}}, "at 'operations.vacuum': unknown operation"),
    ({"protocol": 1, "run_id": "../../x"}, "at 'run_id'"),
    ({"protocol": 1, "agents": ["main", "../etc"]}, "at 'agents'"),
])
def test_bad_plan_exits_2_with_a_result_naming_the_key(tmp_path, plan, needle):
    small_state(tmp_path)
    plan = dict(plan, state_dir=str(tmp_path))
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    proc = run(agent_cmd("run"), stdin=json.dumps(plan))
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["protocol"] == 1 and doc["ok"] is False
    assert needle in doc["error"], doc["error"]
    assert needle in fatal_lines(proc.stderr)[0]
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


def test_backup_dir_inside_agents_is_refused(tmp_path):
    small_state(tmp_path)
    plan = {"protocol": 1, "mode": "run", "state_dir": str(tmp_path), "now_ms": NOW_MS,
            "backup": {"dir": str(tmp_path / "agents" / "main" / "bk")},
            "operations": {"store": {"strip_fields": ["x"]}}}
    proc = run(agent_cmd("run"), stdin=json.dumps(plan))
    assert proc.returncode == 2
    assert "at 'backup.dir'" in json.loads(proc.stdout)["error"]
    assert not (tmp_path / "agents" / "main" / "bk").exists()


def test_symlinked_agent_out_of_the_state_dir_is_refused(tmp_path):
    state = small_state(tmp_path / "state")
    outside = small_state(tmp_path / "outside") / "agents" / "main"
    (state / "agents" / "evil").symlink_to(outside)
    proc = run(agent_cmd("scan", "--state-dir", str(state)))
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    evil = [a for a in doc["agents"] if a["agent"] == "evil"][0]
    assert "symlink out of the state dir" in evil["errors"][0]
    assert not any(f["agent"] == "evil" for f in doc["files"])


def test_validate_plan_fills_defaults_per_present_section():
    plan = validate_plan({"protocol": 1, "now_ms": NOW_MS, "operations": {
        "transcripts": {"tiers": [{"over_bytes": 10, "keep_records": 5, "slim": "aggressive"},
                                  {"over_bytes": 1, "keep_records": 9}]},
        "orphans": {}}})
    ops = plan["operations"]
    assert set(ops) == {"transcripts", "orphans"}            # absent sections do not run
    assert [t["over_bytes"] for t in ops["transcripts"]["tiers"]] == [1, 10]
    assert ops["transcripts"]["tiers"][0]["slim"] is None
    assert ops["transcripts"]["untouched_turns"] == 5
    assert ops["orphans"] == {"archive_after_s": 86400}
    assert plan["mode"] == "run" and plan["dry_run"] is False and plan["agents"] is None
    assert plan["backup"] == {"dir": None, "gzip": False, "keep_runs": 10, "max_age_s": 2592000, "to": "host"}
    with pytest.raises(PlanError, match="operations.store.prune.forever"):
        validate_plan({"protocol": 1, "operations": {"store": {"prune": {"forever": 1}}}})
    with pytest.raises(PlanError, match="at 'dry_run'"):
        validate_plan({"protocol": 1, "dry_run": "yes"})
    with pytest.raises(PlanError, match="restore"):
        validate_plan({"protocol": 1, "mode": "restore"})


def test_usage_error_exits_2_with_a_fatal_line():
    proc = run(agent_cmd("scan", "--now-ms", "soon"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert "bad usage" in fatal_lines(proc.stderr.split("\n", 1)[1])[0]


@pytest.fixture
def shared_dir():
    """A folder the unprivileged user `fleet-test` can reach (tmp_path's parents are root-only)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="fleet-agent-perm-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def as_fleet_test(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "fleet-test", "--", *cmd], input=stdin, capture_output=True,
                          text=True, timeout=60, cwd="/")


def test_permission_errors_as_an_unprivileged_user(shared_dir):
    import os
    import shutil

    pw = __import__("pwd").getpwnam("fleet-test")
    pyz = shared_dir / "fleet-agent.pyz"
    export_agent(pyz)
    state = small_state(shared_dir / "state")
    s = state / "agents" / "main" / "sessions"
    (s / "secret.jsonl").write_text('{"type":"session"}\n' + '{"type":"message"}\n' * 300)
    for p in [state, *state.rglob("*")]:
        os.chown(p, pw.pw_uid, pw.pw_gid)
    os.chown(s / "secret.jsonl", 0, 0)           # root's file, unreadable for fleet-test
    (s / "secret.jsonl").chmod(0o600)
    before = (s / "secret.jsonl").stat()

    scan = as_fleet_test(["python3", str(pyz), "scan", "--state-dir", str(state)])
    assert scan.returncode == 1, scan.stderr
    files = {f["path"]: f for f in json.loads(scan.stdout)["files"]}
    assert "permission denied" in files["agents/main/sessions/secret.jsonl"]["error"]
    assert files["agents/main/sessions/abc.jsonl"]["error"] is None

    plan = {"protocol": 1, "mode": "run", "state_dir": str(state), "now_ms": NOW_MS,
            "operations": {"transcripts": {"tiers": [{"over_bytes": 100, "keep_records": 5}]}}}
    run_ = as_fleet_test(["python3", str(pyz), "run"], stdin=json.dumps(plan))
    assert run_.returncode == 1, run_.stderr
    rec = {f["path"]: f for f in json.loads(run_.stdout)["files"]}["agents/main/sessions/secret.jsonl"]
    assert rec["error"] and rec["action"] == "none" and rec["backup"] is None
    after = (s / "secret.jsonl").stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)

    locked = shared_dir / "locked"
    shutil.copytree(state, locked)
    locked.chmod(0o700)                           # root's, not fleet-test's
    denied = as_fleet_test(["python3", str(pyz), "scan", "--state-dir", str(locked)])
    assert denied.returncode == 3
    assert "cannot be read" in json.loads(denied.stdout)["error"]


def test_bad_scan_arguments_still_answer_with_a_result(tmp_path):
    proc = run(agent_cmd("scan", "--state-dir", str(small_state(tmp_path)), "--agent", "../etc"))
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["mode"] == "scan" and "at 'agents'" in doc["error"]
