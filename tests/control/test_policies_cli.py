"""Policies that leave a clean report, driven through the `fleet` command as a user types it:
the weekly run on the demo fleet (real sshd) leaves no size warning; thresholds come from
fleet.toml and `playbook check` shows them; a token count older than a trim is not reported as
current; legacy `*.session.json` files in both places follow the tiers; heartbeats and dreaming
sessions are kept unless a playbook opts in."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


from fleet.demo.demofleet import stop_demo

REPO = Path(__file__).resolve().parents[2]
DAY_MS = 86_400_000


def fleet(*args: str, state: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLEET_STATE_DIR=str(state), PYTHONPATH=str(REPO))
    env.pop("FLEET_TREND_WARNING", None)
    env.pop("FLEET_TREND_CRITICAL", None)
    return subprocess.run([sys.executable, "-m", "fleet", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or REPO, timeout=240)


def as_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def findings(doc: dict, check: str, severities=("warning", "critical")) -> list[tuple[str, dict]]:
    return [(h["host"], f) for h in doc["hosts"] for f in h["health"]
            if f["check"] == check and f["severity"] in severities]


def message_records(n: int, text_chars: int) -> list[dict]:
    """n records of a legacy session file: user / assistant turns with `text_chars` of text each."""
    records = []
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        records.append({"role": role, "content": f"{role} {i} " + "x" * text_chars})
    return records


def transcript_lines(n: int, text_chars: int, sid: str) -> str:
    lines = [{"type": "session", "version": 3, "id": sid, "timestamp": "2026-11-01T00:00:00.000Z", "cwd": "/tmp"}]
    parent = None
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        line_id = f"{i + 1:08x}"
        lines.append({"type": "message", "id": line_id, "parentId": parent, "timestamp": "2026-11-01T00:00:01.000Z",
                      "message": {"role": role, "content": [{"type": "text", "text": "y" * text_chars}]}})
        parent = line_id
    return "".join(json.dumps(line) + "\n" for line in lines)


def local_fleet(root: Path, store: dict, transcripts: dict[str, str] | None = None) -> tuple[Path, Path]:
    """(inventory, state dir) of one `connection = "local"` host with agent `main`."""
    state = root / "openclaw"
    sessions = state / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    for sid, text in (transcripts or {}).items():
        (sessions / f"{sid}.jsonl").write_text(text)
    (sessions / "sessions.json").write_text(json.dumps(store, indent=2))
    inventory = root / "inventory.toml"
    inventory.write_text(f'[hosts.box]\nconnection = "local"\nstate_dir = "{state}"\n')
    return inventory, state


# --- the demo fleet: a weekly run comes out clean -----------------------------------------------

def test_weekly_on_the_demo_fleet_leaves_no_size_warning(tmp_path):
    state, directory = tmp_path / "state", tmp_path / "demo"
    try:
        built = fleet("demo", "--build-only", "--dir", str(directory), state=state)
        assert built.returncode == 0, built.stderr
        inventory = str(directory / "inventory.toml")
        before = as_json(fleet("scan", "-i", inventory, "--json", state=state))
        big = {(h, f["path"]) for h, f in findings(before, "transcript-size")}
        # What warns before is what the weekly's first tier (2 MB) trims: the 9.2 MB and 2.9 MB transcripts.
        sizes = {(h["host"], f["path"]): f["before"]["bytes"] for h in before["hosts"] for f in h["files"]}
        assert big and all(sizes[k] > 2 * 1024 * 1024 for k in big)
        assert {k for k, size in sizes.items() if size > 2 * 1024 * 1024 and k[1].endswith(".jsonl")
                and ".trajectory" not in k[1]} == big

        run = fleet("run", "weekly", "-i", inventory, "--json", state=state)
        assert run.returncode == 0, run.stderr
        after_run = as_json(run)
        trimmed = {(h["host"], f["path"]) for h in after_run["hosts"] for f in h["files"] if "trim" in f["actions"]}
        assert big <= trimmed
        assert findings(after_run, "transcript-size") == []

        after = as_json(fleet("scan", "-i", inventory, "--json", state=state))
        assert findings(after, "transcript-size") == []
        # pc-a/main's 191k-token count predates the trim of its 9.2 MB transcript: not a warning any more.
        warned = {(h, f["agent"]) for h, f in findings(after, "tokens")}
        assert ("pc-a", "main") not in warned
        stale = [f for h, f in findings(after, "tokens", ("info",)) if h == "pc-a" and f["agent"] == "main"]
        assert len(stale) == 1 and "stale" in stale[0]["detail"] and "re-estimated" in stale[0]["detail"]
    finally:
        stop_demo(directory)


# --- thresholds in fleet.toml ------------------------------------------------------------------

def test_fleet_toml_thresholds_drive_scan_trend_and_playbook_check(tmp_path):
    sid = "0f5d59ee-034e-47d9-ac97-d383e6c022b8"
    now = int(time.time() * 1000)
    inventory, _ = local_fleet(tmp_path, {"agent:main:main": {"sessionId": sid, "updatedAt": now + DAY_MS,
                                                              "totalTokens": 30000}},
                               {sid: transcript_lines(300, 4000, sid)})        # ~1.2 MB
    state = tmp_path / "state"
    plain = as_json(fleet("scan", "-i", str(inventory), "--json", state=state))
    assert findings(plain, "transcript-size") == [] and findings(plain, "tokens") == []
    check = fleet("playbook", "check", "weekly", "-i", str(inventory), state=state)
    assert check.returncode == 0, check.stderr
    assert "thresholds (defaults: no " in check.stdout and "over 2 MB warns" in check.stdout
    assert "main 150000/200000" in check.stdout and "warning 10 MB, critical 50 MB" in check.stdout

    (tmp_path / "fleet.toml").write_text('[thresholds]\ntranscript_size = "1MB"\ntrend_warning = "1MB"\n'
                                         'trend_critical = "3MB"\n[thresholds.tokens]\nmain = [20000, 25000]\n')
    tight = as_json(fleet("scan", "-i", str(inventory), "--json", state=state))
    (size,) = [f for _, f in findings(tight, "transcript-size")]
    assert "over 1 MB" in size["detail"]
    (tokens,) = [f for _, f in findings(tight, "tokens")]
    assert tokens["severity"] == "critical" and "critical above 25000" in tokens["detail"]

    check = fleet("playbook", "check", "weekly", "-i", str(inventory), state=state)
    assert f"thresholds (from {tmp_path / 'fleet.toml'})" in check.stdout
    assert "over 1 MB warns" in check.stdout and "main 20000/25000" in check.stdout
    assert "warning: transcripts between 1 MB and 2 MB are flagged by health but no tier trims them" in check.stdout
    compiled = as_json(fleet("playbook", "check", "weekly", "-i", str(inventory), "--json", state=state))
    assert compiled["thresholds"]["transcript_warn_bytes"] == 1024 * 1024
    assert compiled["thresholds"]["trend_warning_bytes"] == 1024 * 1024

    trend = as_json(fleet("report", "--trend", "-i", str(inventory), "--format", "json", state=state))
    assert (trend["warning_bytes"], trend["critical_bytes"]) == (1024 * 1024, 3 * 1024 * 1024)

    (tmp_path / "fleet.toml").write_text('[thresholds]\ntranscript_size = "big"\n')
    bad = fleet("scan", "-i", str(inventory), state=state)
    assert bad.returncode == 2 and "fleet.toml: thresholds.transcript_size" in bad.stderr


# --- tokens after a trim -----------------------------------------------------------------------

def test_a_token_count_older_than_the_trim_is_not_reported_as_current(tmp_path):
    sid = "94aa8d41-b143-4fc5-b5c1-7a76dc8113e2"
    counted = int(time.time() * 1000) - DAY_MS
    inventory, _ = local_fleet(tmp_path, {"agent:main:main": {"sessionId": sid, "updatedAt": counted,
                                                              "totalTokens": 191335, "contextTokens": 200000}},
                               {sid: transcript_lines(2000, 1200, sid)})       # ~2.5 MB: the 2 MB tier keeps 200
    state = tmp_path / "state"
    before = as_json(fleet("scan", "-i", str(inventory), "--json", state=state))
    (warning,) = [f for _, f in findings(before, "tokens")]
    assert "191335 tokens (totalTokens)" in warning["detail"]

    run = as_json(fleet("run", "weekly", "-i", str(inventory), "--json", state=state))
    (trimmed,) = [f for f in run["hosts"][0]["files"] if f["kind"] == "transcript"]
    assert trimmed["action"] == "trim" and trimmed["after"]["records"] <= 200
    for doc in (run, as_json(fleet("scan", "-i", str(inventory), "--json", state=state))):
        assert findings(doc, "tokens") == []
        (info,) = [f for _, f in findings(doc, "tokens", ("info",))]
        assert "totalTokens 191335 is stale" in info["detail"]
        assert f"about {trimmed['after']['bytes'] // 4} tokens" in info["detail"]


# --- legacy session files ----------------------------------------------------------------------

def test_legacy_session_files_in_both_places_follow_the_transcript_tiers(tmp_path):
    inventory, state = local_fleet(tmp_path, {})
    agent_dir = state / "agents" / "main" / "sessions"
    (agent_dir / "big.session.json").write_text(json.dumps({"messages": message_records(400, 6000)}, indent=2))
    (agent_dir / "small.session.json").write_text(json.dumps(message_records(300, 1000), indent=2))   # ~330 KB
    flat = state / "sessions"
    flat.mkdir()
    (flat / "old.session.json").write_text(json.dumps(message_records(1200, 5000)))                  # ~6 MB
    (flat / "sessions.json").write_text("{}")           # the flat store is not fleet's: never listed
    out = tmp_path / "state"

    scan = as_json(fleet("scan", "-i", str(inventory), "--json", state=out))
    flagged = {f["path"] for _, f in findings(scan, "transcript-size")}
    assert flagged == {"agents/main/sessions/big.session.json", "sessions/old.session.json"}

    run = fleet("run", "weekly", "-i", str(inventory), "--json", state=out)
    assert run.returncode == 0, run.stderr
    files = {f["path"]: f for f in as_json(run)["hosts"][0]["files"]}
    assert "sessions/sessions.json" not in files
    big, small, old = (files["agents/main/sessions/big.session.json"], files["agents/main/sessions/small.session.json"],
                       files["sessions/old.session.json"])
    # 2.3 MB: the first tier, last 200 records; 330 KB: under every tier, untouched (no longer cut to 200).
    assert big["action"] == "trim" and (big["before"]["records"], big["after"]["records"]) == (400, 200)
    assert small["action"] == "none" and small["after"]["records"] == 300
    # The flat folder's file, reported under its own name: 5.7 MB is the 5 MB tier (100 records, slimmed).
    assert old["agent"] == "(legacy)" and old["after"]["records"] == 100 and old["backup"]
    assert json.loads((flat / "old.session.json").read_text())[-1]["content"].startswith("assistant 1199")
    assert findings(as_json(run), "transcript-size") == []


# --- protected kinds ---------------------------------------------------------------------------

def test_heartbeats_and_dreaming_are_kept_unless_a_playbook_opts_in(tmp_path):
    old = int(time.time() * 1000) - 10 * DAY_MS
    keys = {"agent:main:main": "s-main", "agent:main:telegram:group:-100:heartbeat": "s-hb",
            "dreaming-narrative-rem-0123456789ab": "s-dream", "agent:main:cron:job1:run:r1": "s-run"}
    store = {key: {"sessionId": sid, "updatedAt": old} for key, sid in keys.items()}
    inventory, state = local_fleet(tmp_path, store, {sid: transcript_lines(4, 10, sid) for sid in keys.values()})
    out = tmp_path / "state"
    check = fleet("playbook", "check", "daily-prune", "-i", str(inventory), state=out)
    assert "keep heartbeat, dreaming sessions (protected unless named in prune)" in check.stdout

    run = fleet("run", "daily-prune", "-i", str(inventory), "--json", state=out)
    assert run.returncode == 0, run.stderr
    left = json.loads((state / "agents" / "main" / "sessions" / "sessions.json").read_text())
    assert set(left) == set(keys) - {"agent:main:cron:job1:run:r1"}

    opt_in = tmp_path / "prune-all.toml"
    opt_in.write_text('include = ["daily-prune"]\n[store]\nprune = {heartbeat = "24h", dreaming = "24h"}\n')
    check = fleet("playbook", "check", str(opt_in), "-i", str(inventory), state=out)
    assert "keep heartbeat" not in check.stdout and "heartbeat" in check.stdout
    run = fleet("run", str(opt_in), "-i", str(inventory), "--json", state=out)
    assert run.returncode == 0, run.stderr
    left = json.loads((state / "agents" / "main" / "sessions" / "sessions.json").read_text())
    assert set(left) == {"agent:main:main"}
    removed = {r["key"]: r for r in as_json(run)["hosts"][0]["removed_sessions"]}
    assert set(removed) == {"agent:main:telegram:group:-100:heartbeat", "dreaming-narrative-rem-0123456789ab"}
    assert removed["dreaming-narrative-rem-0123456789ab"]["kind"] == "dreaming"
    assert all(r["age_s"] >= 10 * 86400 - 60 and r["bytes"] > 0 for r in removed.values())
