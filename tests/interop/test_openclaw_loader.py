"""OpenClaw 2026.7.1's own transcript loader judges fleet's trims and slims.

The agent (the exported single file, as a host runs it) trims generated transcripts; then
OpenClaw's `SessionManager.open()` (package export `openclaw/plugin-sdk/agent-sessions`) opens a
copy of each, and its `buildSessionContext()` and tool-pairing sanitizer say what the model would
get. Node 24 and openclaw come from the npm registry via scripts/install-openclaw.sh (cached).
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.control.bundle import export_agent
from fleet.demo.gen import KB, generate_agent

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("load_transcript.mjs")
CACHE = Path(os.environ.get("FLEET_INTEROP_CACHE", Path.home() / ".cache" / "fleet-interop"))
VERSION = "2026.7.1"
NOW_MS = 1763700000000


@pytest.fixture(scope="session")
def openclaw_loader():
    """(node binary, openclaw package dir), installed once per machine under a file lock."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run([str(REPO / "scripts" / "install-openclaw.sh"), VERSION],
                              capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"installing openclaw@{VERSION} failed:\n{proc.stderr[-2000:]}"
    node = proc.stdout.strip().splitlines()[-1]
    pkg = CACHE / f"openclaw-{VERSION}" / "node_modules" / "openclaw"
    assert Path(node).is_file() and (pkg / "package.json").is_file()
    return node, pkg


def _load_with_openclaw(loader, transcript: Path, scratch: Path) -> dict:
    node, pkg = loader
    copy = scratch / transcript.name
    shutil.copyfile(transcript, copy)
    proc = subprocess.run([node, str(PROBE), str(pkg), str(copy)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _run_agent(agent_file: Path, state: Path, backups: Path, tier: dict) -> dict:
    plan = {
        "protocol": 1, "mode": "run", "run_id": "20261121T000000Z-0a0a0a", "now_ms": NOW_MS,
        "dry_run": False, "state_dir": str(state), "agents": None,
        "backup": {"dir": str(backups), "gzip": False, "keep_runs": 5, "max_age_s": 10**9},
        "operations": {"transcripts": {"tiers": [tier], "tool_output_limit_bytes": 2048,
                                       "assistant_text_limit_bytes": 4096, "untouched_turns": 3}},
    }
    proc = subprocess.run([sys.executable, str(agent_file), "run", "--plan", "-"], input=json.dumps(plan),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _message_lines(path: Path) -> int:
    with open(path, "rb") as f:
        f.readline()  # the header
        return sum(1 for line in f if json.loads(line).get("type") == "message")


@pytest.mark.parametrize("slim", [None, "tool-output", "aggressive"])
def test_openclaw_loads_every_trimmed_transcript_unchanged_with_user_first_and_all_tool_pairs(
        openclaw_loader, tmp_path, slim):
    state = tmp_path / "state"
    generate_agent(state, "main", main_bytes=600 * KB, main_records=400, seed=11, now_ms=NOW_MS)
    agent_file = tmp_path / "fleet-agent.pyz"
    export_agent(agent_file)
    result = _run_agent(agent_file, state, tmp_path / "backups",
                        {"over_bytes": 0, "keep_records": 60, "slim": slim})

    changed = [f for f in result["files"] if f["kind"] == "transcript" and f["action"] in ("trim", "slim")]
    assert any(f["action"] == "trim" for f in changed), "the main transcript should have been trimmed"
    scratch = tmp_path / "openclaw-copies"
    scratch.mkdir()
    for rec in changed:
        path = state / rec["path"]
        seen = _load_with_openclaw(openclaw_loader, path, scratch)
        assert seen["rewritten"] is False, f"OpenClaw rewrote {rec['path']}"
        assert seen["recovered_corrupt_header"] is False
        assert seen["roots"] == 1, f"{rec['path']}: {seen['roots']} roots"
        assert seen["first_role"] == "user", f"{rec['path']}: context starts with {seen['first_role']}"
        assert seen["sanitizer_found"], "OpenClaw's sanitizeToolUseResultPairing not found in this build"
        assert seen["sanitized_messages"] == seen["messages"], "OpenClaw's tool-pairing sanitizer dropped messages"
        # fleet's count of kept lines (after.records) against what OpenClaw loaded, and the
        # message lines among them against the messages OpenClaw hands the model.
        assert seen["entries"] == rec["after"]["records"]
        assert seen["messages"] == _message_lines(path)
