"""Read-only scan: numbers equal independently computed ones, and each health check fires on
a crafted case and stays quiet on a clean one. Runs the agent's real `main` in-process."""
from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest

from fleet.hostside.main import main
from procs import dead_pid

NOW_MS = int(time.time() * 1000)
DAY_MS = 86400 * 1000


def run_scan(state: Path, *extra: str) -> tuple[int, dict]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["scan", "--state-dir", str(state), "--now-ms", str(NOW_MS), *extra], stdout=out, stderr=err)
    return code, json.loads(out.getvalue())


def write_transcript(path: Path, records: int, pad: int = 0, terminated: bool = True) -> None:
    lines = [json.dumps({"type": "session", "version": 3, "id": path.stem})]
    lines += [json.dumps({"type": "message", "id": "%08x" % i, "pad": "x" * pad}) for i in range(records)]
    path.write_text("\n".join(lines) + ("\n" if terminated else ""))


def make_agent(state: Path, agent: str, entries: dict, transcripts: dict) -> Path:
    """entries: key -> entry; transcripts: sessionId -> record count (pad via (records, pad))."""
    s = state / "agents" / agent / "sessions"
    s.mkdir(parents=True, exist_ok=True)
    (s / "sessions.json").write_text(json.dumps(entries, indent=2))
    for sid, spec in transcripts.items():
        records, pad = spec if isinstance(spec, tuple) else (spec, 0)
        write_transcript(s / ("%s.jsonl" % sid), records, pad)
    return s


def clean_state(state: Path) -> None:
    make_agent(state, "main", {
        "agent:main:main": {"sessionId": "s-main", "updatedAt": NOW_MS - 5 * DAY_MS, "totalTokens": 1000},
        "agent:main:telegram:group:-100": {"sessionId": "s-group", "updatedAt": NOW_MS - DAY_MS},
        "agent:main:cron:job1:run:s-cron": {"sessionId": "s-cron", "updatedAt": NOW_MS - 2 * DAY_MS},
        "agent:main:telegram:direct:111": {"sessionId": "s-dm", "updatedAt": NOW_MS - 3 * DAY_MS,
                                           "origin": {"from": "telegram:111"}},
    }, {"s-main": 7, "s-group": 3, "s-cron": 2, "s-dm": 4})
    s = state / "agents" / "main" / "sessions"
    (s / "s-main.trajectory.jsonl").write_text("{}\n" * 9)
    (s / "old.jsonl.deleted.2026-07-01T12-34-56.789Z").write_text("{}\n{}\n{}\n")
    write_transcript(s / "s-tail.jsonl", 2, terminated=False)
    # Scans count lines and never parse transcripts: garbage is counted, not an error.
    (s / "s-main.checkpoint.0b1c.jsonl").write_bytes(b"\xff not json\n{{{\n")
    entries = json.loads((s / "sessions.json").read_text())
    entries["agent:main:subagent:abc"] = {"sessionId": "s-tail", "updatedAt": NOW_MS}
    (s / "sessions.json").write_text(json.dumps(entries))
    make_agent(state, "ops", {
        "agent:ops:main": {"sessionId": "o-main", "updatedAt": NOW_MS - DAY_MS},
        "agent:ops:telegram:direct:222": {"sessionId": "o-dm", "updatedAt": NOW_MS},
    }, {"o-main": 11, "o-dm": 1})


def independent_records(path: Path, kind: str) -> int:
    data = path.read_bytes()
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    if kind == "store":
        return len(json.loads(data))
    if kind in ("transcript", "orphan", "checkpoint"):
        return max(0, lines - 1)
    if kind == "trajectory":
        return lines
    if kind == "archive":
        return max(0, lines - 1)
    return 0


def test_scan_numbers_equal_independent_counts(tmp_path):
    clean_state(tmp_path)
    code, doc = run_scan(tmp_path)
    assert code == 0, doc
    assert doc["ok"] is True and doc["error"] is None and doc["mode"] == "scan"
    on_disk = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert sorted(f["path"] for f in doc["files"]) == on_disk
    for f in doc["files"]:
        p = tmp_path / f["path"]
        assert f["before"] == f["after"]
        assert f["before"]["sha256"] is None
        assert f["action"] == "none" and f["error"] is None
        assert f["before"]["bytes"] == os.stat(p).st_size, f["path"]
        assert f["before"]["records"] == independent_records(p, f["kind"]), f["path"]
    agents = {a["agent"]: a for a in doc["agents"]}
    for name, a in agents.items():
        mine = [f for f in doc["files"] if f["agent"] == name]
        assert a["before_bytes"] == a["after_bytes"] == sum(os.stat(tmp_path / f["path"]).st_size for f in mine)
        assert a["before_records"] == sum(f["before"]["records"] for f in mine)
    main_a = agents["main"]
    assert main_a["era"] == "json" and main_a["sessions"] == 5
    assert main_a["kinds"] == {"main": 1, "group": 1, "cron_run": 1, "direct": 1, "subagent": 1}
    assert main_a["oldest_ms"] == NOW_MS - 5 * DAY_MS and main_a["newest_ms"] == NOW_MS
    # Only the unterminated last line counts as a record, never lost.
    tail = [f for f in doc["files"] if f["path"].endswith("s-tail.jsonl")][0]
    assert tail["before"]["records"] == 2
    assert doc["health"] == []
    assert doc["host"]["state_dir"] == str(tmp_path)


def test_scan_only_the_named_agents(tmp_path):
    clean_state(tmp_path)
    code, doc = run_scan(tmp_path, "--agent", "ops")
    assert code == 0
    assert {f["agent"] for f in doc["files"]} == {"ops"}
    assert [a["agent"] for a in doc["agents"]] == ["ops"]


def findings(doc, check):
    return [h for h in doc["health"] if h["check"] == check]


@pytest.mark.parametrize("content,check", [
    (b"", "store-empty"), (b"{\"a\": ", "store-invalid"), (b"[]", "store-shape"),
])
def test_bad_store_is_critical(tmp_path, content, check):
    s = make_agent(tmp_path, "main", {}, {"s1": 2})
    (s / "sessions.json").write_bytes(content)
    code, doc = run_scan(tmp_path)
    found = findings(doc, check)
    assert [h["severity"] for h in found] == ["critical"]
    assert found[0]["path"] == "agents/main/sessions/sessions.json"
    assert findings(doc, "orphan-transcript") == []  # an unreadable store makes no orphans
    assert code == 0


def test_entry_checks(tmp_path):
    # Counted after the transcripts were last written (else the counts would be stale, see below).
    counted = int(time.time() * 1000) + 3600 * 1000
    make_agent(tmp_path, "main", {
        "agent:main:main": {"sessionId": "s-main", "updatedAt": counted, "totalTokens": 160000, "contextTokens": 200000},
        "agent:main:telegram:group:-1": {"sessionId": "s-g1", "updatedAt": counted, "totalTokens": 151000},
        "agent:main:telegram:group:-2": {"sessionId": "s-g2", "updatedAt": 1},
        "agent:main:telegram:direct:5": {"sessionId": "s-dm", "updatedAt": counted, "totalTokens": 120000},
        "agent:main:cron:j:run:x": {"sessionId": "s-gone", "updatedAt": 1},
        "agent:main:subagent:evil": {"sessionId": "../../etc/passwd", "updatedAt": 1},
    }, {"s-main": 1, "s-g1": 1, "s-g2": (2, 120 * 1024), "s-dm": 1, "stray": 3})
    code, doc = run_scan(tmp_path)
    tokens = {h["detail"].split("'")[1]: h["severity"] for h in findings(doc, "tokens")}
    assert tokens == {"agent:main:main": "warning", "agent:main:telegram:group:-1": "critical",
                      # 240 KB of transcript / 4 = ~61k tokens, over the group warning of 50k
                      "agent:main:telegram:group:-2": "warning",
                      "agent:main:telegram:direct:5": "warning"}
    missing = findings(doc, "transcript-missing")
    assert len(missing) == 1 and "s-gone.jsonl" in missing[0]["detail"]
    orphan = findings(doc, "orphan-transcript")
    assert [h["path"] for h in orphan] == ["agents/main/sessions/stray.jsonl"]
    assert orphan[0]["severity"] == "info"
    unsafe = findings(doc, "session-id-unsafe")
    assert len(unsafe) == 1 and unsafe[0]["severity"] == "critical"
    assert findings(doc, "transcript-size") == []
    assert code == 0


def test_big_transcript_warns(tmp_path):
    make_agent(tmp_path, "main", {"agent:main:main": {"sessionId": "big", "updatedAt": 1, "totalTokens": 5}},
               {"big": (11, 200 * 1024)})   # 2.2 MB: over the default 2 MB
    _code, doc = run_scan(tmp_path)
    size = findings(doc, "transcript-size")
    assert [h["path"] for h in size] == ["agents/main/sessions/big.jsonl"]
    assert size[0]["severity"] == "warning"


def test_lock_and_temp_checks(tmp_path):
    s = make_agent(tmp_path, "main", {"agent:main:main": {"sessionId": "a", "updatedAt": 1},
                                      "agent:main:x": {"sessionId": "b", "updatedAt": 1},
                                      "agent:main:y": {"sessionId": "c", "updatedAt": 1}},
                   {"a": 1, "b": 1, "c": 1})
    (s / "a.jsonl.lock").write_text(json.dumps({"pid": dead_pid(), "createdAt": "2026-01-01T00:00:00Z"}))
    (s / "b.jsonl.lock").write_text(json.dumps({"pid": os.getpid()}))       # live and fresh
    (s / "sessions.json.lock").write_text(json.dumps({"pid": os.getpid()}))  # live but old
    old = (NOW_MS - 60 * 1000) / 1000
    os.utime(s / "sessions.json.lock", (old, old))
    (s / "sessions.json.1.x.tmp").write_text("{}")
    ten_min = (NOW_MS - 10 * 60 * 1000) / 1000
    os.utime(s / "sessions.json.1.x.tmp", (ten_min, ten_min))
    (s / "sessions.json.2.y.tmp").write_text("{}")                        # fresh: a write in progress
    _code, doc = run_scan(tmp_path)
    stale = {h["path"].rsplit("/", 1)[1]: h["detail"] for h in findings(doc, "stale-lock")}
    assert set(stale) == {"a.jsonl.lock", "sessions.json.lock"}
    assert "dead pid" in stale["a.jsonl.lock"]
    assert "over 30 s" in stale["sessions.json.lock"]
    temps = findings(doc, "temp-leftover")
    assert [h["path"] for h in temps] == ["agents/main/sessions/sessions.json.1.x.tmp"]


def test_peer_bound_in_two_agents(tmp_path):
    make_agent(tmp_path, "main", {"agent:main:telegram:direct:4242": {"sessionId": "a", "updatedAt": 1}}, {"a": 1})
    make_agent(tmp_path, "work", {"agent:work:telegram:direct:999": {
        "sessionId": "b", "updatedAt": 1, "deliveryContext": {"to": "telegram:4242"}}}, {"b": 1})
    make_agent(tmp_path, "solo", {"agent:solo:telegram:direct:777": {"sessionId": "c", "updatedAt": 1}}, {"c": 1})
    _code, doc = run_scan(tmp_path)
    shared = findings(doc, "peer-shared")
    assert sorted(h["agent"] for h in shared) == ["main", "work"]
    assert all("4242" in h["detail"] and h["severity"] == "warning" for h in shared)


def test_half_migrated_is_critical(tmp_path):
    make_agent(tmp_path, "main", {"agent:main:main": {"sessionId": "a", "updatedAt": 1}}, {"a": 1})
    (tmp_path / "agents" / "main" / "agent").mkdir()
    (tmp_path / "agents" / "main" / "agent" / "openclaw-agent.sqlite").write_bytes(b"SQLite format 3\0")
    _code, doc = run_scan(tmp_path)
    half = findings(doc, "half-migrated")
    assert len(half) == 1 and half[0]["severity"] == "critical"
    assert "openclaw doctor --fix" in half[0]["detail"]
    assert doc["agents"][0]["era"] == "half-migrated"


def test_transcripts_without_a_store(tmp_path):
    s = make_agent(tmp_path, "main", {}, {"a": 1, "b": 2})
    (s / "sessions.json").unlink()
    _code, doc = run_scan(tmp_path)
    assert [h["severity"] for h in findings(doc, "store-missing")] == ["warning"]
    assert findings(doc, "orphan-transcript") == []
    assert {f["kind"] for f in doc["files"]} == {"transcript"}
