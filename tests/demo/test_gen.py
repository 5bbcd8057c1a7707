"""The generator writes valid OpenClaw JSON-era state, deterministically, at the promised sizes."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.demo.gen import (DEMO_FLEET, DEMO_MAIN_BYTES, KINDS, MB, TINY_FLEET, generate_agent, generate_fleet,
                       generate_host, tiny_agent)
from fleet.demo.gen.check import active_path, read_lines, split_name, store_problems, tool_calls, transcript_problems

NOW_MS = 1_795_000_000_000          # a fixed clock: 2026-11-18
DAY_MS = 86_400_000


def _all_files(root: Path):
    return sorted(p for p in root.rglob("*") if p.is_file())


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in _all_files(root)}


def _sessions_dirs(root: Path):
    return sorted(root.rglob("agents/*/sessions"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return root, generate_fleet(root, TINY_FLEET, seed=7, now_ms=NOW_MS)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return root, generate_fleet(root, DEMO_FLEET, seed=1, now_ms=NOW_MS)


def test_every_store_and_transcript_is_valid(tiny, demo):
    checked = 0
    for root, _ in (tiny, demo):
        for sessions in _sessions_dirs(root):
            assert store_problems(sessions / "sessions.json") == []
            for path in sessions.iterdir():
                sid, what = split_name(path.name)
                if what in ("transcript", "archive", "checkpoint"):
                    assert transcript_problems(path) == [], path
                    checked += 1
                elif what == "trajectory":
                    events = read_lines(path)
                    assert {e["traceSchema"] for e in events} == {"openclaw-trajectory"}
                    assert all(e["sessionId"] == sid and e["runId"] for e in events)
                elif what == "trajectory-pointer":
                    pointer = json.loads(path.read_text())
                    assert pointer["traceSchema"] == "openclaw-trajectory-pointer"
                    assert Path(pointer["runtimeFile"]).is_file()
    assert checked > 100


def test_store_has_every_key_kind_and_bulk_on_every_entry(tiny):
    root, hosts = tiny
    agent = hosts[0].agents[0]
    store = json.loads(agent.store_path.read_text())
    assert set(agent.keys_by_kind) == set(KINDS)
    assert list(store)[0] == "agent:main:main"
    patterns = {
        "direct": r"^agent:main:(\w+:)?(default:)?(direct|dm):", "group": r":telegram:group:-\d+$",
        "topic": r":group:-\d+:topic:\d+$", "thread": r":thread:[\d.]+$", "cron_job": r"^agent:main:cron:[0-9a-f-]+$",
        "cron_run": r"^agent:main:cron:[0-9a-f-]+:run:[0-9a-f-]+$", "subagent": r"^agent:main:subagent:",
        "acp": r"^agent:main:acp:", "dashboard": r"^agent:main:dashboard:", "probe": r":explicit:model-run-",
        "hook": r"^hook:", "heartbeat": r":heartbeat$", "dreaming": r"^dreaming-narrative-(light|deep|rem)-[0-9a-f]{12}",
    }
    for kind, pattern in patterns.items():
        assert all(re.search(pattern, key) for key in agent.keys_by_kind[kind]), kind
    for key, entry in store.items():
        assert {"sessionId", "updatedAt", "sessionFile", "modelProvider", "totalTokens"} <= set(entry), key
        assert "skillsSnapshot" in entry and "systemPromptReport" in entry, key
        assert Path(entry["sessionFile"]).is_absolute() and Path(entry["sessionFile"]).is_file(), key
        assert Path(entry["sessionFile"]).parent == agent.sessions_dir
    topic_entry = store[agent.keys_by_kind["topic"][0]]
    assert re.search(r"-topic-\d+\.jsonl$", topic_entry["sessionFile"])
    assert topic_entry["deliveryContext"]["threadId"] == int(topic_entry["sessionFile"].rsplit("-", 1)[1].split(".")[0])
    # A cron job's template entry points at its latest run's transcript (pruning the run must keep it).
    job = store[agent.keys_by_kind["cron_job"][0]]
    assert any(store[k]["sessionId"] == job["sessionId"] for k in agent.keys_by_kind["cron_run"])
    # Half the cron runs are older than OpenClaw's 24 h retention, the others are not.
    ages = [NOW_MS - store[k]["updatedAt"] for k in agent.keys_by_kind["cron_run"]]
    assert any(a > DAY_MS for a in ages) and any(a < DAY_MS for a in ages)
    refs = [e["skillsSnapshot"]["promptRef"] for e in store.values() if "promptRef" in e["skillsSnapshot"]]
    assert refs and all((agent.sessions_dir / "skills-prompts" / "sha256" / r["hash"][:2] / f"{r['hash']}.txt").stat().st_size
                        == r["bytes"] for r in refs)
    assert agent.store_path.read_text().startswith('{\n  "agent:main:main": {\n    "sessionId"')
    assert agent.store_path.stat().st_mode & 0o777 == 0o600


def test_bulk_fields_are_the_bulk_of_the_demo_store(demo):
    _, hosts = demo
    store_path = hosts[0].agents[0].store_path
    store = json.loads(store_path.read_text())
    sizes = [len(json.dumps(e, indent=2, ensure_ascii=False).encode()) for e in store.values()]
    slim = [len(json.dumps({k: v for k, v in e.items() if k not in ("skillsSnapshot", "systemPromptReport")}).encode())
            for e in store.values()]
    assert min(sizes) > 15 * 1024 and max(sizes) < 200 * 1024
    assert sum(slim) < 0.1 * sum(sizes)


def test_main_transcript_has_every_feature(demo):
    _, hosts = demo
    agent = hosts[0].agents[0]
    records = read_lines(agent.main_transcript)
    body = records[1:]
    types = {r["type"] for r in body}
    assert {"message", "model_change", "thinking_level_change", "compaction", "custom", "branch_summary"} <= types
    path_ids = {r["id"] for r in active_path(records)}
    abandoned = [r for r in body if r["id"] not in path_ids]
    assert abandoned and any(tool_calls(r) for r in abandoned)
    messages = [r["message"] for r in body if r["type"] == "message"]
    roles = {m["role"] for m in messages}
    assert roles == {"user", "assistant", "toolResult"}
    assert any(isinstance(m["content"], str) for m in messages if m["role"] == "user")
    blocks = [b for m in messages if isinstance(m["content"], list) for b in m["content"]]
    assert any(b["type"] == "thinking" for b in blocks)
    images = [b for b in blocks if b["type"] == "image"]
    assert images and base64.b64decode(images[0]["data"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert any(m.get("stopReason") == "aborted" for m in messages)
    biggest = max(len(json.dumps(r, ensure_ascii=False).encode()) for r in body if r.get("message", {}).get("role") == "toolResult")
    assert biggest > 400 * 1024
    text = agent.main_transcript.read_text(encoding="utf-8")
    assert re.search(r"[\u3040-\u30ff]", text) and re.search(r"[\U0001F300-\U0001FAFF]", text)
    compaction = next(r for r in body if r["type"] == "compaction")
    assert compaction["firstKeptEntryId"] in {r["id"] for r in body}
    custom_types = {r["customType"] for r in body if r["type"] == "custom"}
    assert {"openclaw:bootstrap-context:full", "model-snapshot"} <= custom_types


def test_leftovers_orphans_archives_lock_temp(tiny):
    _, hosts = tiny
    agent = hosts[0].agents[0]
    store = json.loads(agent.store_path.read_text())
    referenced = {Path(e["sessionFile"]).name for e in store.values()}
    assert agent.orphans and not {p.name for p in agent.orphans} & referenced
    orphan_ages = [NOW_MS - os.stat(p).st_mtime_ns // 1_000_000 for p in agent.orphans]
    assert any(a > DAY_MS for a in orphan_ages) and any(a < DAY_MS for a in orphan_ages)
    assert any(re.search(r"\.jsonl\.deleted\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}Z$", p.name) for p in agent.archives)
    assert any(NOW_MS - os.stat(p).st_mtime_ns // 1_000_000 > 30 * DAY_MS for p in agent.archives)
    lock = json.loads(agent.lock.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(lock["pid"], 0)
    assert NOW_MS - os.stat(agent.lock).st_mtime_ns // 1_000_000 > 30_000
    assert re.fullmatch(r"sessions\.json\.\d+\.[0-9a-f-]{36}\.tmp", agent.temp_files[0].name)
    assert agent.trajectories and agent.trajectories[0].name == f"{agent.main_session_id}.trajectory.jsonl"
    # Transcript mtimes follow the sessions' clocks.
    for key in agent.keys_by_kind["cron_run"]:
        entry = store[key]
        assert os.stat(entry["sessionFile"]).st_mtime_ns // 1_000_000 == entry["updatedAt"]


def test_session_ids_and_file_names_are_safe(tiny, demo):
    for root, _ in (tiny, demo):
        for sessions in _sessions_dirs(root):
            store = json.loads((sessions / "sessions.json").read_text())
            for entry in store.values():
                assert re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,127}", entry["sessionId"])
            for path in sessions.iterdir():
                if path.is_file():
                    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", path.name), path


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    target = tmp_path / "state"
    spec = TINY_FLEET[1]
    generate_host(target, spec, seed=3, now_ms=NOW_MS)
    first = _digest(target)
    import shutil

    shutil.rmtree(target)
    generate_host(target, spec, seed=3, now_ms=NOW_MS)
    assert _digest(target) == first
    assert len(first) > 50
    shutil.rmtree(target)
    generate_host(target, spec, seed=4, now_ms=NOW_MS)
    other = _digest(target)
    same = {k for k, v in first.items() if other.get(k) == v}
    assert same <= {"openclaw.json", "agents/main/sessions/sessions.json.lock", "agents/ops/sessions/sessions.json.lock"}


def test_demo_sizes_match_the_field_report(demo):
    _, hosts = demo
    by_host = {h.name: h for h in hosts}
    pc_a = by_host["pc-a"].agent("main")
    assert pc_a.main_records == 4040
    assert abs(pc_a.main_bytes - 9.2 * MB) <= 0.1 * 9.2 * MB
    t440 = by_host["t440"]
    assert len(t440.agents) == 15
    expected = {"techsfree-web": 2.9, "learning": 1.8, "docomo-pj": 1.2, "health": 0.9}
    for agent in t440.agents:
        size = agent.main_transcript.stat().st_size
        assert size == agent.main_bytes
        assert abs(size - DEMO_MAIN_BYTES[("t440", agent.agent_id)]) <= 0.1 * DEMO_MAIN_BYTES[("t440", agent.agent_id)]
        if agent.agent_id in expected:
            assert abs(size - expected[agent.agent_id] * MB) <= 0.1 * expected[agent.agent_id] * MB
        else:
            assert 0.1 * MB * 0.9 <= size <= 0.5 * MB * 1.1
        assert len(read_lines(agent.main_transcript)) - 1 == agent.main_records


@pytest.mark.parametrize("n_bytes,n_records", [(64 * 1024, 40), (300 * 1024, 120), (2 * MB, 900)])
def test_targets_hit_within_five_percent(tmp_path, n_bytes, n_records):
    summary = generate_agent(tmp_path, "a1", main_bytes=n_bytes, main_records=n_records, seed=1, now_ms=NOW_MS,
                             entry_kb=(1, 2), side_kb=(2, 3))
    assert summary.main_records == n_records == len(read_lines(summary.main_transcript)) - 1
    assert abs(summary.main_transcript.stat().st_size - n_bytes) <= 0.05 * n_bytes


def test_cli_writes_about_the_total_asked_for(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = tmp_path / "bench"
    done = subprocess.run([sys.executable, "-m", "fleet.demo.gen", str(out), "--agents", "3", "--total", "3MB",
                           "--seed", "1", "--now-ms", str(NOW_MS)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    total = sum(p.stat().st_size for p in _all_files(out))
    assert abs(total - 3 * MB) <= 0.1 * 3 * MB
    assert sorted(p.name for p in (out / "agents").iterdir()) == ["agent-02", "agent-03", "main"]
    helped = subprocess.run([sys.executable, "-m", "fleet.demo.gen", "--help"], capture_output=True, text=True, env=env)
    assert helped.returncode == 0 and "--total" in helped.stdout and "--seed" in helped.stdout


def test_tiny_agent_keeps_every_feature_small(tmp_path):
    spec = tiny_agent("ops")
    summary = generate_agent(tmp_path, spec.agent_id, main_bytes=spec.main_bytes, main_records=spec.main_records,
                             seed=2, now_ms=NOW_MS, key_mix=spec.key_mix, entry_kb=spec.entry_kb, side_kb=spec.side_kb,
                             trajectory_runs=2, trajectory_run_kb=4)
    assert summary.total_bytes < 400 * 1024
    assert set(summary.keys_by_kind) == set(KINDS)
    assert transcript_problems(summary.main_transcript) == []


def test_checker_catches_a_broken_tree_and_a_lost_tool_call(tiny, tmp_path):
    _, hosts = tiny
    records = read_lines(hosts[0].agents[0].main_transcript)
    call_index = next(i for i, r in enumerate(records) if tool_calls(r))
    result_index = next(i for i, r in enumerate(records) if r.get("message", {}).get("role") == "toolResult"
                        and r["message"]["toolCallId"] in tool_calls(records[call_index]))
    without_call = [dict(r) for i, r in enumerate(records) if i != call_index]
    for r in without_call:                      # re-link around the removed line: only the toolCall is missing
        if r.get("parentId") == records[call_index]["id"]:
            r["parentId"] = records[call_index]["parentId"]
    problems = transcript_problems(tmp_path / "t.jsonl", without_call)
    assert any("has no toolCall on its path" in p for p in problems)
    dangling = [dict(r) for r in records]
    dangling[result_index]["parentId"] = "deadbeef"
    assert any("names no earlier line" in p for p in transcript_problems(tmp_path / "t.jsonl", dangling))
    assert any("header" in p for p in transcript_problems(tmp_path / "t.jsonl", records[1:]))


def test_cron_run_count_and_ages_follow_the_parameters(tmp_path):
    summary = generate_agent(tmp_path, "cron-heavy", main_bytes=32 * 1024, main_records=30, seed=5, now_ms=NOW_MS,
                             entry_kb=(1, 2), side_kb=(2, 3), n_cron_runs=12, age_days=3)
    store = json.loads(summary.store_path.read_text())
    runs = summary.keys_by_kind["cron_run"]
    assert len(runs) == 12 and all(":run:" in k and k in store for k in runs)
    ages = [NOW_MS - store[k]["updatedAt"] for k in runs]
    assert sum(a > DAY_MS for a in ages) == 6 and max(ages) <= 4 * DAY_MS
    assert set(summary.prunable_keys) >= set(runs) and "agent:cron-heavy:main" not in summary.prunable_keys
