"""Lines too long to read whole (issue 15): the scans skim them (bigline) and the results are
exactly those of reading them whole; memory stays flat on a one-line transcript of tens of MB.

Equivalence: the same trims and caps run twice on the same generated files, once as shipped and
once with the "too long" threshold lowered to a few KB so that most lines are skimmed; the bytes
written and the records must be identical. Memory: the real agent, a process of its own, on a
40 MB one-line transcript (a valid header, and garbage): its peak RSS stays under 64 MB (reading
the line whole, as before, costs three to four times the line).
"""
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.hostside import bigline, trajectory, transcript
from test_agent_transcript import NOW_MS, POLICY, branchy_chat, parsed_lines, trim

MB = 1 << 20


def skim(data, head=5):
    f = io.BytesIO(data)
    digest = hashlib.sha256()
    value, length, ended = bigline.skim_line(f, f.read(head), digest.update)
    return value, length, ended, f.tell(), digest.hexdigest()


@pytest.mark.parametrize("line", [
    b'{"a":1,"b":[true,false,null,-1.5e3,0,2],"c":"x\\"y\\\\","d":{"e":[]},"f":"\\u00e9"}\n',
    b'{"k":"' + b"z" * 300 + b'","n":{"deep":[1,[2,[3]]]}}\r\nNEXT LINE\n',
    b'[1, 2 , {"x" : "y"} ]', b'not json\nrest\n', b'{"a":1} trailing\n', b'{"a":"unterminated\n',
    b'{"a":1', b'{"a":tru}\n', b'{"s":"\\\\\\"\\\\"}\n',
])
def test_skim_agrees_with_json_and_stops_at_the_line_end(line, monkeypatch):
    monkeypatch.setattr(bigline, "CHUNK", 7)              # every token crosses a chunk edge
    monkeypatch.setattr(bigline, "SMALL_STRING", 64)
    value, length, ended, pos, digest = skim(line)
    end = line.find(b"\n") + 1 or len(line)
    assert (length, pos, ended) == (end, end, line[end - 1:end] == b"\n")
    assert digest == hashlib.sha256(line[:end]).hexdigest()
    try:
        expected = json.loads(line[:end])
    except ValueError:
        expected = None
    if bigline.has_big(value):
        assert expected["k"] == "z" * 300 and value["k"].size == 300 and value["n"] == expected["n"]
    else:
        assert value == expected


def small_threshold(monkeypatch, size=2048):
    monkeypatch.setattr(transcript, "BIG_LINE", size)
    monkeypatch.setattr(trajectory, "BIG_LINE", size)
    monkeypatch.setattr(bigline, "SMALL_STRING", 256)


@pytest.mark.parametrize("slim", [None, "tool-output", "aggressive"])
def test_skimmed_trims_write_exactly_what_whole_lines_do(tmp_path, monkeypatch, slim):
    c = branchy_chat()
    for size in (5000, 9000, 3000):                      # tool outputs well over the threshold
        c.turn(calls=1, size=size)
    c.turn()
    c.turn()
    data = c.encode()
    results = []
    for skimmed in (False, True):
        with monkeypatch.context() as m:
            if skimmed:
                small_threshold(m)
            root = tmp_path / ("skim" if skimmed else "whole")
            path = root / "agents" / "main" / "sessions" / "0f5d59ee.jsonl"
            path.parent.mkdir(parents=True)
            path.write_bytes(data)
            record = trim(root, path, 30, slim=slim, policy=POLICY)
            results.append((record["after"], record["actions"], path.read_bytes()))
    assert results[0] == results[1]
    assert results[1][2] != data and parsed_lines(results[1][2])[0]["type"] == "session"


def test_skimmed_trajectory_cap_writes_what_whole_lines_do(tmp_path, monkeypatch):
    from fleet.hostside.context import FileInfo, RunContext
    from fleet.hostside.fsutil import BackupStore
    events = []
    for run in range(6):
        events.append({"type": "trace.metadata", "runId": "r%d" % run, "ts": NOW_MS - 1000})
        events.append({"type": "model.completed", "runId": "r%d" % run, "ts": NOW_MS - 900,
                       "data": {"text": "t" * (1000 * (run + 1))}})
    data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    out = []
    for skimmed in (False, True):
        with monkeypatch.context() as m:
            if skimmed:
                small_threshold(m)
            root = tmp_path / str(skimmed)
            path = root / "agents" / "main" / "sessions" / "s.trajectory.jsonl"
            path.parent.mkdir(parents=True)
            path.write_bytes(data)
            ctx = RunContext(str(root), "run1", NOW_MS, False, BackupStore(str(root / "b")), {})
            st = path.stat()
            info = FileInfo("main", str(path), "agents/main/sessions/s.trajectory.jsonl", "trajectory",
                            st.st_size, st.st_mtime_ns, session_id="s")
            rec = trajectory.cap_trajectory(ctx, "main", info, {"keep_runs": 2, "max_age_s": None})
            out.append((rec["after"], path.read_bytes()))
    assert out[0] == out[1] and out[1][0]["records"] == 4


def one_line_host(root: Path, first: bytes, size: int) -> Path:
    sessions = root / "openclaw" / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    with open(sessions / "s1.jsonl", "wb") as f:
        f.write(first)
        block = b"x" * MB
        for _ in range(size // MB):
            f.write(block)
        if first.startswith(b"{"):
            f.write(b'"}\n')
    (sessions / "sessions.json").write_text(json.dumps(
        {"agent:main:telegram:direct:s1": {"sessionId": "s1", "updatedAt": NOW_MS - 1000}}))
    plan = {"protocol": 1, "mode": "run", "run_id": "20261204T220000Z-mem001", "now_ms": NOW_MS,
            "dry_run": False, "state_dir": str(root / "openclaw"), "agents": None,
            "backup": {"dir": str(root / "backups"), "gzip": False, "keep_runs": None, "max_age_s": None},
            "operations": {"transcripts": {"tiers": [{"over_bytes": MB, "keep_records": 100,
                                                      "slim": "tool-output"}]}}}
    (root / "plan.json").write_text(json.dumps(plan))
    return root / "plan.json"


@pytest.mark.parametrize("first,code", [
    (b'{"type":"session","version":3,"id":"s1","timestamp":"2026-11-14T08:00:00.000Z","cwd":"', 0),
    (b"", 1),
])
def test_a_one_line_transcript_of_40_mb_stays_under_64_mb(tmp_path, first, code):
    plan = one_line_host(tmp_path, first, 40 * MB)
    repo = Path(__file__).resolve().parents[2]
    # A process forked from this test's (large) interpreter inherits its resident size into
    # ru_maxrss, even across exec: a small launcher forks the agent and reports its rusage.
    launcher = ("import json, os, subprocess, sys\n"
                "p = subprocess.Popen(sys.argv[1:], stdout=open(os.environ['AGENT_OUT'], 'wb'), "
                "stderr=subprocess.DEVNULL)\n"
                "_, status, usage = os.wait4(p.pid, 0)\n"
                "print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss]))\n")
    out_path = tmp_path / "agent.out"
    done = subprocess.run([sys.executable, "-c", launcher, sys.executable, "-m", "fleet.hostside", "run", "--plan",
                           str(plan)], cwd=str(repo), capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, AGENT_OUT=str(out_path)))
    exit_code, maxrss_kb = json.loads(done.stdout)
    doc = json.loads(out_path.read_bytes())
    assert exit_code == code, doc["files"]
    rec = next(f for f in doc["files"] if f["path"].endswith("s1.jsonl"))
    assert rec["action"] == "none" and (rec["error"] is None) == (code == 0)
    assert maxrss_kb / 1024.0 < 64, "peak RSS %.0f MB" % (maxrss_kb / 1024.0)
