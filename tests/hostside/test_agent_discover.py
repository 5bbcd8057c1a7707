"""Discovery on hand-made state dirs: state dir resolution, agents, eras, every file kind,
symlinks never followed, and an unreadable store never turning transcripts into orphans."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fleet.hostside.discover import (StateDirError, classify_session_file, discover, discover_agent,
                                  list_agents, resolve_state_dir)

SID = "0f5d59ee-034e-47d9-ac97-d383e6c022b8"
SID2 = "1a2b3c4d-0000-4000-8000-000000000002"


def write_store(sessions: Path, entries: dict) -> None:
    sessions.mkdir(parents=True, exist_ok=True)
    (sessions / "sessions.json").write_text(json.dumps(entries, indent=2))


def transcript(path: Path, records: int) -> None:
    lines = [json.dumps({"type": "session", "version": 3, "id": path.stem})]
    lines += [json.dumps({"type": "message", "id": "%08x" % i}) for i in range(records)]
    path.write_text("\n".join(lines) + "\n")


def kinds_of(af):
    return {os.path.basename(f.path): f.kind for f in af.files}


def full_agent(state: Path) -> Path:
    """One JSON-era agent with a file of every kind."""
    agent = state / "agents" / "main"
    s = agent / "sessions"
    write_store(s, {
        "agent:main:main": {"sessionId": SID, "updatedAt": 1},
        "agent:main:telegram:group:-100:topic:7": {"sessionId": SID2, "updatedAt": 2,
                                                    "sessionFile": "/elsewhere/%s-topic-7.jsonl" % SID2},
    })
    transcript(s / ("%s.jsonl" % SID), 3)
    transcript(s / ("%s-topic-7.jsonl" % SID2), 2)
    transcript(s / "deadbeef.jsonl", 1)
    transcript(s / "deadbeef-topic-3.jsonl", 1)
    (s / ("%s.trajectory.jsonl" % SID)).write_text("{}\n{}\n")
    (s / ("%s.trajectory-path.json" % SID)).write_text("{}")
    (s / ("%s.checkpoint.11111111-2222-3333-4444-555555555555.jsonl" % SID)).write_text("{}\n")
    for name in ("x.jsonl.deleted.2026-07-01T12-34-56.789Z", "y.jsonl.reset.2026-07-01T12-34-56.789Z",
                 "z.jsonl.bak.2026-07-01T12-34-56.789Z", "sessions.json.bak.1763700000000",
                 "%s.jsonl.corrupt-2026-07-01T12-34-56.789Z-abcdef01.jsonl" % SID):
        (s / name).write_text("{}\n")
    (s / "sessions.json.123.abc.tmp").write_text("{}")
    (s / "sessions.json.lock").write_text('{"pid": 1}')
    (s / ("%s.jsonl.lock" % SID)).write_text('{"pid": 1}')
    (s / "main.session.json").write_text("[]")
    blob = s / "skills-prompts" / "sha256" / "ab"
    blob.mkdir(parents=True)
    (blob / "abcdef.txt").write_text("prompt")
    (agent / "agent").mkdir()
    (agent / "agent" / "auth-profiles.json").write_text("{}")
    return agent


def test_every_kind_is_classified(tmp_path):
    agent = full_agent(tmp_path)
    af = discover_agent(str(tmp_path), "main", str(agent))
    k = kinds_of(af)
    assert k["sessions.json"] == "store"
    assert k["%s.jsonl" % SID] == "transcript"
    assert k["%s-topic-7.jsonl" % SID2] == "transcript"      # referenced through sessionFile
    assert k["deadbeef.jsonl"] == "orphan"
    assert k["deadbeef-topic-3.jsonl"] == "orphan"
    assert k["%s.trajectory.jsonl" % SID] == "trajectory"
    assert k["%s.trajectory-path.json" % SID] == "trajectory"
    assert k["%s.checkpoint.11111111-2222-3333-4444-555555555555.jsonl" % SID] == "checkpoint"
    for name in ("x.jsonl.deleted.2026-07-01T12-34-56.789Z", "y.jsonl.reset.2026-07-01T12-34-56.789Z",
                 "z.jsonl.bak.2026-07-01T12-34-56.789Z", "sessions.json.bak.1763700000000",
                 "%s.jsonl.corrupt-2026-07-01T12-34-56.789Z-abcdef01.jsonl" % SID):
        assert k[name] == "archive", name
    assert k["sessions.json.123.abc.tmp"] == "temp"
    assert k["sessions.json.lock"] == "lock"
    assert k["%s.jsonl.lock" % SID] == "lock"
    assert k["main.session.json"] == "legacy"
    assert k["abcdef.txt"] == "other"
    assert k["auth-profiles.json"] == "other"
    assert af.era == "json" and af.store_usable and af.problems == {}
    by_name = {os.path.basename(f.path): f for f in af.files}
    assert by_name["%s-topic-7.jsonl" % SID2].session_id == SID2
    assert by_name["%s-topic-7.jsonl" % SID2].topic == 7
    assert by_name["%s.trajectory.jsonl" % SID].session_id == SID
    # Sizes are the files' own (lstat), paths relative to the state dir.
    for f in af.files:
        assert f.size == os.lstat(f.path).st_size
        assert f.rel == os.path.relpath(f.path, str(tmp_path))


def test_classify_without_a_store_calls_nothing_an_orphan():
    assert classify_session_file("abc.jsonl", None) == ("transcript", "abc", None)
    assert classify_session_file("abc.jsonl", ({"x.jsonl"}, {"x"}))[0] == "orphan"
    assert classify_session_file("abc-topic-2.jsonl", ({"x.jsonl"}, {"abc"})) == ("transcript", "abc", 2)
    assert classify_session_file("abc.jsonl.fleet-12.tmp", None)[0] == "temp"
    assert classify_session_file("notes.txt", None)[0] == "other"
    assert classify_session_file("abc-topic-4.trajectory.jsonl", None) == ("trajectory", "abc", 4)
    assert classify_session_file("abc-topic-4.checkpoint.u-1.jsonl", None) == ("checkpoint", "abc", 4)
    assert classify_session_file("abc.checkpoint.u-1.jsonl", None) == ("checkpoint", "abc", None)


@pytest.mark.parametrize("content,check", [
    (b"", "store-empty"),
    (b"{\"agent:main:main\": {\"sessionId\": ", "store-invalid"),
    (b"[1, 2]", "store-shape"),
    (b"{\"agent:main:main\": 3}", "store-shape"),
])
def test_bad_store_is_unusable_and_makes_no_orphans(tmp_path, content, check):
    s = tmp_path / "agents" / "main" / "sessions"
    s.mkdir(parents=True)
    (s / "sessions.json").write_bytes(content)
    transcript(s / "aaaa.jsonl", 2)
    af = discover_agent(str(tmp_path), "main", str(s.parent))
    assert not af.store_usable
    assert af.store_problem[0] == check
    assert kinds_of(af)["aaaa.jsonl"] == "transcript"


def test_symlinks_are_reported_not_followed(tmp_path):
    outside = tmp_path / "secret.jsonl"
    outside.write_text("x\n" * 100)
    agent = full_agent(tmp_path / "state")
    (agent / "sessions" / "link.jsonl").symlink_to(outside)
    (agent / "sessions" / "linkdir").symlink_to(tmp_path)
    af = discover_agent(str(tmp_path / "state"), "main", str(agent))
    for name in ("link.jsonl", "linkdir"):
        info = [f for f in af.files if os.path.basename(f.path) == name][0]
        assert info.kind == "other"
        assert af.problems[info.rel] == "symlink, not followed"
    # Nothing under the symlinked folder was listed.
    assert not any("secret" in f.path for f in af.files)


def test_eras(tmp_path):
    state = tmp_path
    full_agent(state)
    sq = state / "agents" / "new" / "agent"
    sq.mkdir(parents=True)
    (sq / "openclaw-agent.sqlite").write_bytes(b"SQLite format 3\0")
    (sq / "openclaw-agent.sqlite-wal").write_bytes(b"")
    half = state / "agents" / "half"
    (half / "agent").mkdir(parents=True)
    (half / "agent" / "openclaw-agent.sqlite").write_bytes(b"SQLite format 3\0")
    write_store(half / "sessions", {"agent:half:main": {"sessionId": SID, "updatedAt": 1}})
    (state / "agents" / "idle").mkdir()
    eras = {af.agent: af.era for af in discover(str(state))}
    assert eras == {"main": "json", "new": "sqlite", "half": "half-migrated", "idle": "empty"}
    new = [af for af in discover(str(state), ["new"])][0]
    assert sorted(kinds_of(new).values()) == ["sqlite", "sqlite"]


def test_state_dir_resolution(tmp_path, monkeypatch):
    a, b, home = tmp_path / "a", tmp_path / "b", tmp_path / "home"
    for d in (a, b, home / ".openclaw", home / ".openclaw-work"):
        d.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    env = {"HOME": str(home)}
    assert resolve_state_dir(None, env) == str(home / ".openclaw")
    assert resolve_state_dir(None, dict(env, OPENCLAW_HOME=str(b))) == str(b)
    assert resolve_state_dir(None, dict(env, OPENCLAW_HOME=str(b), OPENCLAW_STATE_DIR=str(a))) == str(a)
    assert resolve_state_dir("~/.openclaw-work", env) == str(home / ".openclaw-work")
    monkeypatch.setenv("FLEET_TEST_STATE", str(a))
    assert resolve_state_dir("$FLEET_TEST_STATE", env) == str(a)
    with pytest.raises(StateDirError, match="does not exist"):
        resolve_state_dir(str(tmp_path / "missing"), env)
    (tmp_path / "file").write_text("")
    with pytest.raises(StateDirError, match="not a directory"):
        resolve_state_dir(str(tmp_path / "file"), env)


def test_agent_listing_refuses_bad_ids_and_symlinks_out(tmp_path):
    state = tmp_path / "state"
    full_agent(state)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "sessions").mkdir(parents=True)
    (state / "agents" / "evil").symlink_to(elsewhere)
    (state / "agents" / "alias").symlink_to(state / "agents" / "main")
    listed = {name: error for name, _path, error in list_agents(str(state))}
    assert set(listed) == {"main", "evil", "alias"}
    assert listed["main"] is None and listed["alias"] is None
    assert "symlink out of the state dir" in listed["evil"]
    assert [n for n, _p, _e in list_agents(str(state), ["main", "main"])] == ["main"]
    wanted = {name: error for name, _p, error in list_agents(str(state), ["main", "nope", "../x"])}
    assert wanted["main"] is None
    assert "not found" in wanted["nope"]
    assert "not a safe agent id" in wanted["../x"]
    refused = [af for af in discover(str(state)) if af.agent == "evil"][0]
    assert refused.error and refused.files == []


def test_no_agents_folder_means_no_agents(tmp_path):
    assert discover(str(tmp_path)) == []


def test_discovery_matches_the_generator(tmp_path):
    from fleet.demo.gen import HostSpec, generate_host, tiny_agent

    now_ms = 1795000000000
    host = generate_host(tmp_path / "state", HostSpec("t", (tiny_agent("main"), tiny_agent("ops", 16 * 1024, 20))),
                         seed=7, now_ms=now_ms)
    found = {af.agent: af for af in discover(str(host.state_dir))}
    assert set(found) == {"main", "ops"}
    for summary in host.agents:
        af = found[summary.agent_id]
        assert af.era == "json" and af.store_usable and af.problems == {}
        kinds = {f.path: f.kind for f in af.files}
        expected = {str(summary.store_path): "store"}
        expected.update({str(p): "transcript" for p in summary.transcripts})
        expected.update({str(p): "trajectory" for p in summary.trajectories})
        expected.update({str(p): "orphan" for p in summary.orphans})
        expected.update({str(p): "archive" for p in summary.archives})
        expected.update({str(p): "temp" for p in summary.temp_files})
        if summary.lock is not None:
            expected[str(summary.lock)] = "lock"
        for path, kind in expected.items():
            assert kinds.get(path) == kind, path
        assert len(af.store) == sum(len(v) for v in summary.keys_by_kind.values())
        assert sum(f.size for f in af.files) == summary.total_bytes
