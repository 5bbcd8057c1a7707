"""The run orchestrator on real files: dry run writes nothing and predicts the real run exactly,
every file gets a record, backups are verified copies, live-locked transcripts are skipped, a
bad store stops every store-dependent step, and a build without an operation still runs."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

from fleet.hostside.fsutil import archive_timestamp
from fleet.hostside.main import main
from fleet.hostside.ops.transcripts import pick_tier
from fleet.hostside.runops import AgentWork
from trees import tree

REPO = Path(__file__).resolve().parents[2]
NOW_MS = int(time.time() * 1000)
DAY_MS = 86400 * 1000


def conversation(path: Path, sid: str, turns: int, pad: int = 200) -> None:
    """A schema-3 transcript: per turn user → assistant toolCall → toolResult → assistant text."""
    lines = [{"type": "session", "version": 3, "id": sid, "timestamp": "2026-11-14T08:00:00.000Z", "cwd": "/w"}]
    parent = None
    n = 0

    def add(message):
        nonlocal parent, n
        n += 1
        line_id = "%08x" % n
        lines.append({"type": "message", "id": line_id, "parentId": parent,
                      "timestamp": "2026-11-14T08:00:%02d.000Z" % (n % 60), "message": message})
        parent = line_id

    for t in range(turns):
        add({"role": "user", "content": [{"type": "text", "text": "question %d" % t}]})
        add({"role": "assistant", "content": [{"type": "toolCall", "id": "tc%d" % t, "name": "exec",
                                               "arguments": {"command": "ls"}}]})
        add({"role": "toolResult", "toolCallId": "tc%d" % t, "toolName": "exec",
             "content": [{"type": "text", "text": "out " * pad}], "details": {}, "isError": False})
        add({"role": "assistant", "content": [{"type": "text", "text": "answer %d" % t}]})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def set_age(path: Path, age_ms: int) -> None:
    t = (NOW_MS - age_ms) / 1000
    os.utime(path, (t, t))


def build_state(state: Path) -> Path:
    s = state / "agents" / "main" / "sessions"
    s.mkdir(parents=True)
    store = {
        "agent:main:main": {"sessionId": "s-main", "updatedAt": NOW_MS - 40 * DAY_MS,
                            "skillsSnapshot": {"prompt": "p" * 2000}},
        "agent:main:telegram:group:-100": {"sessionId": "s-group", "updatedAt": NOW_MS},
        "agent:main:cron:job:run:s-cron": {"sessionId": "s-cron", "updatedAt": NOW_MS - 3 * DAY_MS},
        "agent:main:subagent:fresh": {"sessionId": "s-sub", "updatedAt": NOW_MS},
    }
    (s / "sessions.json").write_text(json.dumps(store, indent=2))
    conversation(s / "s-main.jsonl", "s-main", 30)
    conversation(s / "s-group.jsonl", "s-group", 30)
    (s / "s-group.jsonl.lock").write_text(json.dumps({"pid": os.getpid(), "createdAt": "2026-11-21T00:00:00Z"}))
    conversation(s / "s-cron.jsonl", "s-cron", 2)
    (s / "s-cron.trajectory.jsonl").write_text('{"runId": "r1", "type": "session.started"}\n')
    conversation(s / "s-sub.jsonl", "s-sub", 1)
    conversation(s / "stray.jsonl", "stray", 1)
    set_age(s / "stray.jsonl", 5 * DAY_MS)
    old = s / ("gone.jsonl.deleted.%s" % archive_timestamp(NOW_MS - 60 * DAY_MS))
    old.write_text('{"type":"session"}\n')
    (s / "sessions.json.4242.0a1b.tmp").write_text("{}")
    set_age(s / "sessions.json.4242.0a1b.tmp", 2 * 3600 * 1000)
    return state


def plan_for(state: Path, dry_run: bool, run_id: str = "20261121T120000Z-aaaaaa", **extra) -> dict:
    plan = {
        "protocol": 1, "mode": "run", "run_id": run_id, "now_ms": NOW_MS, "dry_run": dry_run,
        "state_dir": str(state), "agents": None,
        "backup": {"dir": None, "gzip": False, "keep_runs": 5, "max_age_s": None},
        "operations": {
            "transcripts": {"tiers": [{"over_bytes": 10000, "keep_records": 8, "slim": "tool-output"}]},
            "store": {"prune": {"cron_run": 86400}},
            "orphans": {"archive_after_s": 86400},
            "archives": {"delete_after_s": 30 * 86400},
            "temp": {"remove_after_s": 3600},
        },
    }
    plan.update(extra)
    return plan


def run_plan(plan: dict) -> tuple[int, dict, list]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["run"], stdin=io.StringIO(json.dumps(plan)), stdout=out, stderr=err)
    return code, json.loads(out.getvalue()), [json.loads(x) for x in err.getvalue().splitlines()]


def snapshot(root: Path) -> dict:
    return tree(root, absolute=True)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def by_path(doc):
    return {f["path"]: f for f in doc["files"]}


def test_dry_run_writes_nothing_and_predicts_the_real_run(tmp_path):
    state = build_state(tmp_path / "state")
    before = snapshot(tmp_path)
    code, dry, events = run_plan(plan_for(state, dry_run=True))
    assert code == 0, [f for f in dry["files"] if f["error"]] or dry["agents"]
    assert snapshot(tmp_path) == before
    assert not (state / "fleet-backups").exists()
    assert events[-1] == {"event": "done"}

    files = by_path(dry)
    p = "agents/main/sessions/"
    assert files[p + "sessions.json"]["action"] == "prune"
    assert files[p + "sessions.json"]["after"]["records"] == 3
    assert files[p + "s-main.jsonl"]["action"] == "trim"
    assert files[p + "s-main.jsonl"]["after"]["records"] <= 8
    assert files[p + "s-group.jsonl"]["action"] == "skip"
    assert any(n.startswith("in use") for n in files[p + "s-group.jsonl"]["notes"])
    assert files[p + "s-cron.jsonl"]["action"] == "archive"
    assert files[p + "s-cron.trajectory.jsonl"]["action"] == "archive"
    assert files[p + "stray.jsonl"]["action"] == "archive"
    assert files[p + "sessions.json.4242.0a1b.tmp"]["action"] == "delete"
    assert [f["action"] for k, f in files.items() if ".deleted." in k] == ["delete"]
    assert files[p + "s-sub.jsonl"]["action"] == "none"
    # Every file of the agent has exactly one record.
    on_disk = sorted(str(x.relative_to(state)) for x in (state / "agents").rglob("*") if x.is_file())
    assert sorted(files) == on_disk

    code, real, _ = run_plan(plan_for(state, dry_run=False))
    assert code == 0
    real_files = by_path(real)
    assert sorted(real_files) == sorted(files)
    for path, f in files.items():
        r = real_files[path]
        assert (r["action"], r["after"]["bytes"], r["after"]["records"]) == \
               (f["action"], f["after"]["bytes"], f["after"]["records"]), path
        if f["after"]["sha256"] is not None:
            assert r["after"]["sha256"] == f["after"]["sha256"], path
    # What the result says is what is on disk.
    for path, r in real_files.items():
        target = state / (r["archived_to"] or path)
        if r["after"]["bytes"] == 0 and r["action"] == "delete":
            assert not (state / path).exists()
            continue
        assert target.stat().st_size == r["after"]["bytes"], path
        if r["after"]["sha256"]:
            assert sha(target) == r["after"]["sha256"], path
    disk_after = sum(x.stat().st_size for x in (state / "agents").rglob("*") if x.is_file())
    assert real["agents"][0]["after_bytes"] == disk_after
    assert real["agents"][0]["before_bytes"] == sum(v[1] for k, v in before.items()
                                                    if "/agents/" in k and v[3] is not None)


def test_backups_are_private_verified_copies(tmp_path):
    state = build_state(tmp_path / "state")
    originals = {str(x.relative_to(state)): x.read_bytes() for x in (state / "agents").rglob("*") if x.is_file()}
    code, doc, _ = run_plan(plan_for(state, dry_run=False))
    assert code == 0
    run_dir = state / "fleet-backups" / "20261121T120000Z-aaaaaa"
    assert doc["backup"]["dir"] == str(run_dir)
    backed = [f for f in doc["files"] if f["backup"]]
    assert len(backed) >= 6
    for f in backed:
        copy = Path(f["backup"])
        assert copy.is_relative_to(run_dir)
        assert copy.read_bytes() == originals[f["path"]]
        assert sha(copy) == f["backup_sha256"] == f["before"]["sha256"]
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    for d in [run_dir] + [p for p in run_dir.rglob("*") if p.is_dir()]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert doc["backup"]["bytes"] == sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())


def test_restore_puts_a_trimmed_transcript_back(tmp_path):
    state = build_state(tmp_path / "state")
    original = (state / "agents/main/sessions/s-main.jsonl").read_bytes()
    _code, doc, _ = run_plan(plan_for(state, dry_run=False))
    trimmed = by_path(doc)["agents/main/sessions/s-main.jsonl"]
    restore = {"files": [{"path": trimmed["path"], "backup": trimmed["backup"],
                          "backup_sha256": trimmed["backup_sha256"], "expect_sha256": trimmed["after"]["sha256"],
                          "archived_to": None}], "force": False}
    code, res, _ = run_plan(plan_for(state, dry_run=False, run_id="20261121T130000Z-bbbbbb",
                                     mode="restore", restore=restore))
    assert code == 0, res
    assert [f["action"] for f in res["files"]] == ["restore"]
    assert (state / "agents/main/sessions/s-main.jsonl").read_bytes() == original


def test_bad_store_stops_store_dependent_steps(tmp_path):
    state = build_state(tmp_path / "state")
    store = state / "agents/main/sessions/sessions.json"
    store.write_text('{"agent:main:main": {"sessionId": "s-main"')
    plan = plan_for(state, dry_run=False)
    del plan["operations"]["transcripts"]
    before = snapshot(state / "agents")
    code, doc, _ = run_plan(plan)
    assert code == 1
    files = by_path(doc)
    assert "not valid JSON" in files["agents/main/sessions/sessions.json"]["error"]
    # No orphan archived, no session archived (everything would have looked orphaned).
    assert all(f["action"] in ("none", "delete") for f in files.values())
    assert files["agents/main/sessions/stray.jsonl"]["kind"] == "transcript"
    after = snapshot(state / "agents")
    gone = set(before) - set(after)
    assert {os.path.basename(g) for g in gone} <= {"sessions.json.4242.0a1b.tmp",
                                                   "gone.jsonl.deleted.%s" % archive_timestamp(NOW_MS - 60 * DAY_MS)}
    assert after[str(store)] == before[str(store)]


def test_half_migrated_agent_is_left_alone(tmp_path):
    state = build_state(tmp_path / "state")
    (state / "agents/main/agent").mkdir()
    (state / "agents/main/agent/openclaw-agent.sqlite").write_bytes(b"SQLite format 3\0")
    before = snapshot(state / "agents")
    code, doc, _ = run_plan(plan_for(state, dry_run=False))
    assert code == 0
    assert snapshot(state / "agents") == before
    assert all(f["action"] == "none" for f in doc["files"])
    assert "openclaw doctor --fix" in doc["agents"][0]["notes"][0]
    assert any(h["check"] == "half-migrated" for h in doc["health"])


def test_a_build_without_an_operation_still_runs_the_rest(tmp_path):
    pkg = tmp_path / "build" / "fleet_agent"
    shutil.copytree(REPO / "fleet" / "hostside", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "transcript.py").unlink()
    (pkg / "legacy.py").unlink()   # imports transcript
    state = build_state(tmp_path / "state")
    proc = subprocess.run([sys.executable, "-m", "fleet_agent", "run"], input=json.dumps(plan_for(state, False)),
                          capture_output=True, text=True, cwd=tmp_path / "build", timeout=60)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["agents"][0]["errors"] == ["operation transcript.trim_transcript not available in this agent build"]
    files = by_path(doc)
    assert files["agents/main/sessions/sessions.json"]["action"] == "prune"
    assert files["agents/main/sessions/s-main.jsonl"]["action"] == "none"
    assert files["agents/main/sessions/s-main.jsonl"]["error"] is None


def test_a_crashing_operation_is_one_files_error(tmp_path):
    pkg = tmp_path / "build" / "fleet_agent"
    shutil.copytree(REPO / "fleet" / "hostside", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "trajectory.py").write_text("def cap_trajectory(ctx, agent, info, policy):\n"
                                       "    raise RuntimeError('boom')\n")
    state = build_state(tmp_path / "state")
    s = state / "agents/main/sessions"
    (s / "s-main.trajectory.jsonl").write_text('{"runId": "r1"}\n' * 5)
    before = (s / "s-main.trajectory.jsonl").read_bytes()
    plan = plan_for(state, False)
    plan["operations"]["trajectories"] = {"keep_runs": 1}
    proc = subprocess.run([sys.executable, "-m", "fleet_agent", "run"], input=json.dumps(plan),
                          capture_output=True, text=True, cwd=tmp_path / "build", timeout=60)
    assert proc.returncode == 1, proc.stderr
    files = by_path(json.loads(proc.stdout))
    traj = files["agents/main/sessions/s-main.trajectory.jsonl"]
    assert traj["error"] == "internal error in trajectory cap: RuntimeError: boom"
    assert traj["after"] == traj["before"] and (s / "s-main.trajectory.jsonl").read_bytes() == before
    assert files["agents/main/sessions/s-main.jsonl"]["action"] == "trim"      # the rest went on
    assert files["agents/main/sessions/sessions.json"]["action"] == "prune"


def test_a_missing_operation_is_one_agent_error_and_tier_choice():
    work = AgentWork(ctx=None, af=None)
    work.missing("no_such_module.run")
    work.missing("no_such_module.run")
    assert work.errors == ["operation no_such_module.run not available in this agent build"]
    tiers = [{"over_bytes": 10}, {"over_bytes": 100}, {"over_bytes": 1000}]
    assert pick_tier(tiers, 10) is None
    assert pick_tier(tiers, 11) == tiers[0]
    assert pick_tier(tiers, 5000) == tiers[2]


def test_generated_host_dry_then_real_run(tmp_path):
    from fleet.demo.gen import HostSpec, generate_host, tiny_agent

    host = generate_host(tmp_path / "state", HostSpec("t", (tiny_agent("main"), tiny_agent("ops", 16 * 1024, 20))),
                         seed=3, now_ms=NOW_MS)
    state = host.state_dir
    plan = plan_for(state, dry_run=True)
    plan["operations"]["transcripts"]["tiers"] = [{"over_bytes": 8 * 1024, "keep_records": 10, "slim": "tool-output"}]
    plan["operations"]["trajectories"] = {"keep_runs": 1}
    plan["operations"]["store"]["prune"] = {k: 86400 for k in ("cron_run", "subagent", "heartbeat", "acp",
                                                                "dashboard", "probe", "hook", "dreaming")}
    before = snapshot(tmp_path)
    code, dry, _ = run_plan(plan)
    assert code == 0, [(f["path"], f["error"]) for f in dry["files"] if f["error"]]
    assert snapshot(tmp_path) == before
    assert dry["agents"][0]["after_bytes"] < dry["agents"][0]["before_bytes"]
    assert dry["agents"][0]["before_bytes"] == host.agent("main").total_bytes
    code, real, _ = run_plan(dict(plan, dry_run=False))
    assert code == 0
    dry_files, real_files = by_path(dry), by_path(real)
    assert sorted(dry_files) == sorted(real_files)
    for path, f in dry_files.items():
        assert (real_files[path]["after"], real_files[path]["action"]) == (f["after"], f["action"]) or \
            f["after"]["sha256"] is None, path
    for a in real["agents"]:
        on_disk = sum(x.stat().st_size for x in (state / "agents" / a["agent"]).rglob("*") if x.is_file())
        assert a["after_bytes"] == on_disk, a["agent"]


def test_store_rotation_runs_before_the_prune(tmp_path):
    state = build_state(tmp_path / "state")
    s = state / "agents/main/sessions"
    original = (s / "sessions.json").read_bytes()
    (s / "sessions.json.bak.1700000000000").write_text("{}")
    plan = plan_for(state, dry_run=False)
    plan["operations"] = {"store": {"prune": {"cron_run": 86400}, "rotate_over_bytes": 100, "rotate_keep": 1}}
    code, doc, _ = run_plan(plan)
    assert code == 0, doc
    files = by_path(doc)
    new = "agents/main/sessions/sessions.json.bak.%d" % NOW_MS
    assert files[new]["action"] == "rotate"
    assert (state / new).read_bytes() == original            # the copy holds the store before the prune
    assert files["agents/main/sessions/sessions.json.bak.1700000000000"]["action"] == "delete"
    assert not (s / "sessions.json.bak.1700000000000").exists()
    assert files["agents/main/sessions/sessions.json"]["action"] == "prune"
    assert doc["agents"][0]["after_bytes"] == sum(x.stat().st_size for x in (state / "agents").rglob("*")
                                                  if x.is_file())


def test_dead_lock_is_reported_and_does_not_block_the_trim(tmp_path):
    state = build_state(tmp_path / "state")
    s = state / "agents/main/sessions"
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    (s / "s-main.jsonl.lock").write_text(json.dumps({"pid": p.pid, "createdAt": "2026-11-21T00:00:00Z"}))
    code, doc, _ = run_plan(plan_for(state, dry_run=False))
    assert code == 0
    assert by_path(doc)["agents/main/sessions/s-main.jsonl"]["action"] == "trim"
    stale = [h for h in doc["health"] if h["check"] == "stale-lock"]
    assert [h["path"] for h in stale] == ["agents/main/sessions/s-main.jsonl.lock"]


def test_hostile_session_ids_write_nothing_outside(tmp_path):
    state = build_state(tmp_path / "state")
    outside = tmp_path / "outside.jsonl"
    conversation(outside, "outside", 30)
    s = state / "agents/main/sessions"
    store = json.loads((s / "sessions.json").read_text())
    store["agent:main:cron:job:run:evil"] = {"sessionId": "../../../outside", "updatedAt": 1,
                                             "sessionFile": str(outside)}
    (s / "sessions.json").write_text(json.dumps(store))
    outside_before = snapshot(tmp_path / "state" / "agents" / "main" / "sessions")
    code, doc, _ = run_plan(plan_for(state, dry_run=False))
    assert code == 1
    assert by_path(doc)["agents/main/sessions/sessions.json"]["error"]
    assert outside.read_bytes().count(b"\n") == 121          # untouched, not archived
    assert not list(tmp_path.glob("outside.jsonl.*"))
    assert snapshot(tmp_path / "state" / "agents")[str(s / "sessions.json")] == \
        outside_before[str(s / "sessions.json")]
    assert any(h["check"] == "session-id-unsafe" for h in doc["health"])
