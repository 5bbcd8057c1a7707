"""The agent runs on the oldest Python it promises (3.8): the exported .pyz, a scan and a real
run, under the oldest pyenv interpreter >= 3.8 present on this machine."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fleet.control.bundle import export_agent
from helpers import oldest_python

NOW_MS = 1795000000000


@pytest.fixture(scope="module")
def old_python() -> Path:
    exe = oldest_python()
    version = subprocess.run([str(exe), "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout
    assert version.strip() == "(3, 8)", "the oldest interpreter here should be 3.8, got %s" % version
    return exe


def make_state(state: Path) -> None:
    s = state / "agents" / "main" / "sessions"
    s.mkdir(parents=True)
    (s / "sessions.json").write_text(json.dumps({
        "agent:main:main": {"sessionId": "m", "updatedAt": NOW_MS, "skillsSnapshot": {"prompt": "x" * 500}},
        "agent:main:cron:j:run:c": {"sessionId": "c", "updatedAt": NOW_MS - 3 * 86400 * 1000},
    }, indent=2))
    lines = [{"type": "session", "version": 3, "id": "m"}]
    parent = None
    for i in range(40):
        role = "user" if i % 2 == 0 else "assistant"
        lines.append({"type": "message", "id": "%08x" % (i + 1), "parentId": parent,
                      "message": {"role": role, "content": [{"type": "text", "text": "t" * 300}]}})
        parent = "%08x" % (i + 1)
    (s / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (s / "c.jsonl").write_text('{"type":"session","version":3,"id":"c"}\n')


def test_scan_and_run_on_python38(tmp_path, old_python):
    pyz = tmp_path / "fleet-agent.pyz"
    export_agent(pyz)
    state = tmp_path / "state"
    make_state(state)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")

    scan = subprocess.run([str(old_python), str(pyz), "scan", "--state-dir", str(state)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert scan.returncode == 0, scan.stderr
    doc = json.loads(scan.stdout)
    assert doc["host"]["python"].startswith("3.8.")
    assert doc["agents"][0]["sessions"] == 2
    assert {f["path"].rsplit("/", 1)[1]: f["before"]["records"] for f in doc["files"]} == \
        {"sessions.json": 2, "m.jsonl": 40, "c.jsonl": 0}

    plan = {"protocol": 1, "mode": "run", "run_id": "20261121T120000Z-py38aa", "now_ms": NOW_MS,
            "state_dir": str(state),
            "operations": {"transcripts": {"tiers": [{"over_bytes": 1000, "keep_records": 10, "slim": "aggressive"}]},
                           "store": {"prune": {"cron_run": 86400}}}}
    run = subprocess.run([str(old_python), str(pyz), "run"], input=json.dumps(plan),
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    res = json.loads(run.stdout)
    files = {f["path"].rsplit("/", 1)[1]: f for f in res["files"]}
    assert files["sessions.json"]["action"] == "prune"
    assert files["sessions.json"]["after"]["records"] == 1
    assert files["m.jsonl"]["action"] == "trim"
    assert files["m.jsonl"]["after"]["records"] <= 10
    assert files["c.jsonl"]["action"] == "archive"
    assert (state / "agents/main/sessions/m.jsonl").stat().st_size == files["m.jsonl"]["after"]["bytes"]
    assert Path(files["m.jsonl"]["backup"]).exists()


def test_every_agent_module_imports_on_python38(tmp_path, old_python):
    """Modules a scan or run does not reach still load on 3.8 (no 3.9+ syntax or annotations)."""
    pyz = tmp_path / "fleet-agent.pyz"
    export_agent(pyz)
    src = Path(__file__).resolve().parents[2] / "fleet" / "hostside"
    names = sorted(".".join(p.relative_to(src).with_suffix("").parts) for p in src.rglob("*.py")
                   if p.stem != "__main__" and "__pycache__" not in p.parts)
    assert "ops.store" in names
    code = ("import importlib, sys; sys.path.insert(0, %r)\n"
            "for n in %r: importlib.import_module('fleet_agent.' + n)\nprint('ok')") % (str(pyz), names)
    proc = subprocess.run([str(old_python), "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
