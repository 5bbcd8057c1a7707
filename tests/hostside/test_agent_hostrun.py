"""One changing run per host (a kernel lock on the host), and a run that stops at a safe point when
its controller goes away: the real agent program, in its own processes, on real files."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from fleet.demo.gen import HostSpec, generate_host, tiny_agent
from fleet.hostside.journal import JOURNAL_NAME, read_events
from fleet.hostside.runlock import LOCK_NAME
from trees import tree

REPO = Path(__file__).resolve().parents[2]
GEN_NOW_MS = 1_795_000_000_000
HOLDER = {"run_id": "20261121T110000Z-holder", "origin": "alice@laptop", "pid": 0,
          "started_at": "2026-11-21T11:00:00.000Z", "mode": "run"}


def build_state(state: Path, sessions: int = 6) -> Path:
    """A generated agent with `sessions` direct chats of 8-12 KB each (all over the plan's tier)."""
    spec = tiny_agent("main", 24 * 1024, 30, key_mix={"direct": sessions}, side_kb=(8, 12))
    generate_host(state, HostSpec("h", (spec,)), 3, GEN_NOW_MS)
    return state


def plan_for(state: Path, dry_run: bool, run_id: str = "20261121T120000Z-aaaaaa", **extra) -> dict:
    plan = {"protocol": 1, "mode": "run", "run_id": run_id, "now_ms": GEN_NOW_MS, "dry_run": dry_run,
            "state_dir": str(state), "agents": None,
            "backup": {"dir": None, "gzip": False, "keep_runs": 5, "max_age_s": None},
            "operations": {"transcripts": {"tiers": [{"over_bytes": 4096, "keep_records": 4, "slim": None}]},
                           "store": {"prune": {"cron_run": 86400}}, "orphans": {"archive_after_s": 86400}}}
    plan.update(extra)
    return plan


def snapshot(root: Path) -> dict:
    return tree(root, absolute=True)


def agent(args, plan=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "fleet.hostside"] + args, cwd=str(REPO),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def run(plan, args=("run", "--plan", "-")):
    proc = agent(list(args))
    out, err = proc.communicate(json.dumps(plan).encode(), timeout=60)
    return proc.returncode, json.loads(out), err.decode()


def hold_lock(state: Path) -> subprocess.Popen:
    """Another process that holds the host's run lock until killed (by its pid)."""
    code = ("import json, os, sys, time\n"
            "from fleet.hostside.runlock import HostLock\n"
            "h = json.loads(sys.argv[2]); h['pid'] = os.getpid()\n"
            "HostLock(sys.argv[1]).acquire(h)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(state), json.dumps(HOLDER)], cwd=str(REPO),
                            stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"held\n"
    return proc


def without_lock(tree: dict) -> dict:
    return {k: v for k, v in tree.items() if not k.endswith(LOCK_NAME)}


def test_a_busy_host_refuses_a_run_and_a_restore_and_writes_nothing_but_scans_go_on(tmp_path):
    state = build_state(tmp_path / "state")
    holder = hold_lock(state)
    try:
        before = without_lock(snapshot(tmp_path))
        code, doc, err = run(plan_for(state, dry_run=False))
        assert code == 4, err
        assert doc["error"] == ("busy: run 20261121T110000Z-holder from alice@laptop since "
                                "2026-11-21T11:00:00.000Z")
        assert doc["busy"]["pid"] == holder.pid and doc["files"] == []
        restore = {"files": [{"path": "agents/main/sessions/s-main.jsonl", "backup": "/nonexistent",
                              "backup_sha256": "0" * 64}], "force": False}
        code, doc, _ = run(plan_for(state, dry_run=False, run_id="20261121T120001Z-rrrrrr", mode="restore",
                                    restore=restore))
        assert code == 4 and doc["error"].startswith("busy: run 20261121T110000Z-holder")
        assert without_lock(snapshot(tmp_path)) == before, "a busy host was written to"
        # Read-only work never waits for the lock: a scan and a dry run go ahead at once.
        started = time.monotonic()
        code, doc, _ = run(plan_for(state, dry_run=True))
        assert code == 0 and doc["files"]
        code, doc, _ = run({}, args=("scan", "--state-dir", str(state)))
        assert code == 0 and doc["files"]
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    # SIGKILLed holder: the kernel dropped its lock; no stale lock to clean up.
    code, doc, err = run(plan_for(state, dry_run=False))
    assert code == 0, err
    assert any(f["action"] == "trim" for f in doc["files"])


def test_the_lock_names_the_controller_from_the_plan(tmp_path):
    state = build_state(tmp_path / "state")
    plan = plan_for(state, dry_run=False, origin={"user": "bob", "host": "ctl-2", "playbook": "weekly"})
    proc = agent(["run", "--plan", "-", "--watch-fd", "0"])
    proc.stdin.write(json.dumps(plan).encode())
    proc.stdin.flush()
    # The agent reads the plan to EOF on stdin here, so --watch-fd 0 sees EOF at once: it must stop
    # before any file, holding the lock only while it decides.
    proc.stdin.close()
    out = proc.stdout.read()
    proc.wait(timeout=60)
    doc = json.loads(out)
    assert proc.returncode == 5 and doc["interrupted"] is True
    assert "the controller went away" in doc["error"]
    events = read_events(str(state / "fleet-backups" / plan["run_id"] / JOURNAL_NAME))
    assert events[0]["origin"]["controller"] == "bob@ctl-2" and events[0]["origin"]["playbook"] == "weekly"
    assert events[-1]["e"] == "end" and events[-1]["status"] == "interrupted"
    # Bound: at most the file in hand when the end-of-file was seen (here it is seen before any).
    assert len([e for e in events if e["e"] == "backup"]) <= 1, "files were started after the controller left"


def test_sigterm_stops_the_run_at_a_safe_point_and_the_journal_says_so(tmp_path):
    # Many transcripts so the run is still going when the signal lands.
    state = build_state(tmp_path / "state", sessions=60)
    plan = plan_for(state, dry_run=False)
    r, w = os.pipe()
    # The controller's channel is a pipe we keep open: only the signal may stop the run.
    proc = subprocess.Popen([sys.executable, "-m", "fleet.hostside", "run", "--plan", "-", "--watch-fd", str(r)],
                            cwd=str(REPO), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            pass_fds=(r,))
    os.close(r)
    try:
        proc.stdin.write(json.dumps(plan).encode())
        proc.stdin.close()
        files_seen = 0
        buf = b""
        while files_seen < 3:
            ready, _, _ = select.select([proc.stderr], [], [], 30)
            assert ready, "no progress from the agent"
            chunk = os.read(proc.stderr.fileno(), 65536)
            assert chunk, "the agent ended before the signal"
            buf += chunk
            files_seen = buf.count(b'"action": "trim"')
        proc.send_signal(signal.SIGTERM)
        out = proc.stdout.read()
        proc.wait(timeout=60)
    finally:
        os.close(w)
    doc = json.loads(out)
    assert proc.returncode == 5, doc.get("error")
    assert "stopped by signal %d" % signal.SIGTERM in doc["error"]
    assert doc["stopped_after_s"] < 2.0
    events = read_events(str(state / "fleet-backups" / plan["run_id"] / JOURNAL_NAME))
    assert events[-1]["status"] == "interrupted"
    trimmed = [e for e in events if e["e"] == "done" and e["record"]["action"] == "trim"]
    assert 0 < len(trimmed) < 60, "the run did not stop early"
    started = {e["path"] for e in events if e["e"] == "backup"}
    assert started <= {e["record"]["path"] for e in events if e["e"] == "done"}, \
        "a file was backed up for a change and never finished"
