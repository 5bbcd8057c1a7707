"""Live gateway: while a process imitating OpenClaw (gateway_writer.py) appends to transcripts and
rewrites sessions.json under the 2026.2 / 2026.4 lock protocols or with no lock (2026.5-2026.7),
the real exported agent trims and prunes the same folder several times. Nothing either side
wrote may be lost.

What "nothing lost" means here, precisely:
- every line the writer appended is in the final transcript, or (cut as part of a trimmed head)
  in a verified backup of that transcript taken by one of the runs; the writer's lines still in
  the final file are a gapless suffix of all it appended, in order, ending with its last line, and
  every line after the first points at the line before it (no line carried out of order);
- every entry the writer added to sessions.json is in the final store, and `agent:main:main`
  carries the last `updatedAt` the writer gave it (no stale store was renamed over a newer one);
- a transcript whose `.jsonl.lock` names the writer's (live) pid is never rewritten: it ends as
  its original bytes plus exactly the writer's lines, and no run backed it up or touched it;
- a transcript lock of a dead pid is reported as stale and left while the plan says
  `remove_stale = false`; a later run with `remove_stale = true` removes it (backed up).

No clock decides anything here. Every run freezes itself mid-trim (the agent's fault hook,
$FLEET_AGENT_FAULT_STOP: SIGSTOP right after a trimmed temp file is written, before it is checked
and renamed in) and stays frozen until the writer has done PAUSE_WRITES more writes, store
rewrites among them; so each run has writes inside it however slow the machine, and the store
rewrites prove fleet does not hold `sessions.json.lock` across its trims (the writer, told to wait
for the lock as long as it takes, would never finish them). The writer runs until told to stop.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import crashkit as ck
from fleet.demo.gen import KB, HostSpec, generate_host, tiny_agent

WRITER = Path(__file__).with_name("gateway_writer.py")
RUNS = 3
PAUSE_AT = "trim:temp-written"        # the agent's first trim, its new version written, not yet renamed in
PAUSE_WRITES = 8                      # writer writes while it is frozen there (every 4th a store rewrite)
HANG_S = 120                          # only a hang is this slow: each wait below ends on an event


def gateway_plan(state: Path, run_id: str, remove_stale: bool = False) -> dict:
    return {
        "protocol": 1, "mode": "run", "run_id": run_id, "now_ms": int(time.time() * 1000), "dry_run": False,
        "state_dir": str(state), "agents": ["main"],
        # Every run's backups are kept: lines a trim cut must be found in them afterwards.
        "backup": {"dir": None, "gzip": False, "keep_runs": None, "max_age_s": None},
        "operations": {
            "transcripts": {"tiers": [{"over_bytes": 2 * KB, "keep_records": 10, "slim": None}]},
            "store": {"strip_fields": list(ck.STRIP)},
            "locks": {"remove_stale": remove_stale},
        },
    }


def build(tmp: Path):
    """A state dir and the transcripts by role: appended, held (live lock), stale (dead pid's lock)."""
    state = tmp / "state"
    host = generate_host(state, HostSpec("gw", (tiny_agent("main", 24 * KB, 40, side_kb=(4, 8)),)), 3,
                         ck.GEN_NOW_MS)
    agent = host.agent("main")
    store = json.loads(agent.store_path.read_bytes())

    def transcript_of(kind: str) -> str:
        entry = store[agent.keys_by_kind[kind][0]]
        name = Path(entry.get("sessionFile") or f"{entry['sessionId']}.jsonl").name
        assert (agent.sessions_dir / name).is_file(), name
        return name

    roles = {"appended": [agent.main_transcript.name, transcript_of("group"), transcript_of("direct")],
             "held": transcript_of("channel"), "stale": transcript_of("thread")}
    extend(agent.sessions_dir / roles["stale"], 16)      # over the tier's 10 records: a trim is due
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock = agent.sessions_dir / (roles["stale"] + ".lock")
    lock.write_text(json.dumps({"pid": gone.pid, "createdAt": "2026-11-18T00:00:00.000Z", "maxHoldMs": 60000}))
    return state, agent.sessions_dir, roles


def extend(path: Path, n: int) -> None:
    """Append `n` chained user/assistant lines to a transcript."""
    parent = json.loads(path.read_bytes().splitlines()[-1])["id"]
    with open(path, "a") as f:
        for i in range(n):
            line_id = f"e{i:07x}"
            role = "user" if i % 2 == 0 else "assistant"
            f.write(json.dumps({"type": "message", "id": line_id, "parentId": parent,
                                "timestamp": "2026-11-18T00:00:00.000Z",
                                "message": {"role": role, "content": [{"type": "text", "text": f"more {i}"}]}}) + "\n")
            parent = line_id


def wait_for(done, what: str, alive=lambda: True) -> None:
    """Wait until `done()` is true; fail when `alive()` turns false first, or on a hang."""
    deadline = time.monotonic() + HANG_S
    while not done():
        assert alive(), what
        assert time.monotonic() < deadline, f"hung: {what}"
        time.sleep(0.005)


def frozen(pid: int) -> bool:
    """True when `pid` is stopped (SIGSTOP): state T in /proc/PID/stat."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return data[data.rfind(b")") + 2:].split()[0] == b"T"


def run_paused(agent: Path, plan: dict, tmp: Path, log: Path, writer) -> tuple:
    """Run the agent; while it is frozen at PAUSE_AT, let the writer do PAUSE_WRITES writes.

    Returns (AgentExit, the monotonic times the pause began and ended)."""
    plan_path, out, err = tmp / "plan.json", tmp / "agent.out", tmp / "agent.err"
    plan_path.write_text(json.dumps(plan))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_AGENT_FAULT")}
    env["FLEET_AGENT_FAULT_STOP"] = PAUSE_AT
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-E", "-s", str(agent), "run", "--plan", str(plan_path)],
                                stdout=stdout, stderr=stderr, env=env)
    try:
        wait_for(lambda: frozen(proc.pid), "the agent ended without trimming a transcript",
                 alive=lambda: proc.poll() is None)
        paused = time.monotonic()

        def enough():
            new = [e for e in writes(read_log(log)) if e[0] >= paused]
            return len(new) >= PAUSE_WRITES and sum(1 for e in new if e[2] == "store") >= 2

        wait_for(enough, "the writer stopped writing while fleet was paused mid-trim (is fleet holding "
                         "sessions.json.lock across its trims?)", alive=lambda: writer.poll() is None)
        resumed = time.monotonic()
        os.kill(proc.pid, signal.SIGCONT)
        proc.wait(timeout=HANG_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text()
    return ck.AgentExit(proc.returncode, json.loads(text) if text.strip() else None, err.read_text()), (paused, resumed)


def writes(events: list) -> list:
    return [e for e in events if e[2] in ("append", "store")]


def read_log(path: Path) -> list:
    out = []
    for line in path.read_text().split("\n")[:-1]:     # a line being written has no newline yet
        mono, wall, kind, what, detail = line.split(" ", 4)
        out.append((float(mono), int(wall), kind, what, detail))
    return out


def ids_of(data: bytes) -> list:
    return [json.loads(x).get("id") for x in data.splitlines()[1:] if x.strip()]


def backed_up_ids(state: Path, rel: str) -> set:
    found = set()
    for run in (state / "fleet-backups").iterdir():
        for copy in run.glob(rel + "*"):
            if not copy.name.endswith(".part"):
                found.update(ids_of(copy.read_bytes()))
    return found


@pytest.mark.parametrize("mode", ["2026.2", "2026.4", "nolock"])
def test_live_gateway_loses_nothing(mode, tmp_path):
    state, sessions, roles = build(tmp_path)
    originals = {name: (sessions / name).read_bytes() for name in roles["appended"] + [roles["held"]]}
    agent = ck.export(tmp_path)
    log, stop = tmp_path / "writer.log", tmp_path / "stop"
    # The writer waits for a held store lock as long as it takes: only a lock fleet never gives back
    # (the pause below would then never see a store rewrite) could stop it, never a slow machine.
    cmd = [sys.executable, str(WRITER), str(sessions), "--mode", mode, "--log", str(log),
           "--lock-wait", "inf", "--stop-file", str(stop), "--hold-lock", roles["held"]]
    for name in roles["appended"] + [roles["held"]]:
        cmd += ["--transcript", name]
    writer = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    windows, pauses, runs = [], [], []
    try:
        wait_for(lambda: log.exists() and "ready" in log.read_text(), "the writer did not start",
                 alive=lambda: writer.poll() is None)
        for i in range(RUNS):
            began = time.monotonic()
            run, pause = run_paused(agent, gateway_plan(state, f"20261121T0600{i:02d}Z-live{i}"), tmp_path, log, writer)
            runs.append(run)
            pauses.append(pause)
            windows.append((began, time.monotonic()))
        stop.touch()
        assert writer.wait(timeout=HANG_S) == 0, writer.stderr.read().decode()[-2000:]
    finally:
        if writer.poll() is None:
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait()
        writer.stderr.close()

    events = read_log(log)
    for (began, ended), (paused, resumed) in zip(windows, pauses):
        inside = [e for e in writes(events) if paused <= e[0] <= resumed]
        assert began <= paused < resumed <= ended
        assert len(inside) >= PAUSE_WRITES and sum(1 for e in inside if e[2] == "store") >= 2

    # The runs: only the store may be refused (a gateway that keeps replacing it with no lock).
    for run in runs:
        assert run.code in (0, 1) and run.result is not None, run.stderr[-1000:]
        for f in run.result["files"]:
            if f["error"]:
                assert f["path"].endswith("sessions.json") and mode == "nolock", f
    store_recs = [f for run in runs for f in run.result["files"] if f["path"].endswith("/sessions.json")]
    assert any(f["action"] in ("prune", "strip") and not f["error"] for f in store_recs)

    rel_dir = os.path.relpath(sessions, state)
    for name in roles["appended"]:
        rel = f"{rel_dir}/{name}"
        trims = [f for run in runs for f in run.result["files"] if f["path"] == rel and f["action"] == "trim"]
        assert len(trims) >= 2, f"{name} was trimmed {len(trims)} times"
        final = (sessions / name).read_bytes()
        assert final.split(b"\n", 1)[0] == originals[name].split(b"\n", 1)[0]
        lines = [json.loads(x) for x in final.splitlines()]
        assert final.endswith(b"\n")
        for before, line in zip(lines[1:], lines[2:]):
            assert line["parentId"] == before["id"], f"{name}: line {line['id']} does not follow {before['id']}"
        appended = [e[4] for e in events if e[2] == "append" and e[3] == name]
        in_final = [i for i in ids_of(final) if i in set(appended)]
        assert in_final and in_final == appended[len(appended) - len(in_final):], f"{name}: appended lines lost"
        cut = set(appended[:len(appended) - len(in_final)])
        missing = cut - backed_up_ids(state, rel)
        assert not missing, f"{name}: {len(missing)} appended lines neither in the file nor in a backup"

    held = roles["held"]
    held_appended = [e[4] for e in events if e[2] == "append" and e[3] == held]
    final = (sessions / held).read_bytes()
    assert held_appended and final.startswith(originals[held])
    assert [json.loads(x)["id"] for x in final[len(originals[held]):].splitlines()] == held_appended
    for run in runs:
        rec = next(f for f in run.result["files"] if f["path"] == f"{rel_dir}/{held}")
        assert rec["action"] == "skip" and rec["backup"] is None and "in use" in " ".join(rec["notes"])
    assert not list((state / "fleet-backups").glob(f"*/{rel_dir}/{held}*"))

    store = json.loads((sessions / "sessions.json").read_bytes())
    added = [e[3] for e in events if e[2] == "store"]
    assert added and not [k for k in added if k not in store], "entries the writer added were lost"
    assert store["agent:main:main"]["updatedAt"] == int([e for e in events if e[2] == "store"][-1][4])

    stale = roles["stale"]
    lock_rel = f"{rel_dir}/{stale}.lock"
    assert (sessions / (stale + ".lock")).exists()
    first = runs[0].result["files"]
    assert any(f["path"] == lock_rel and f["action"] == "none" and "stale lock (dead pid" in " ".join(f["notes"])
               for f in first)
    assert next(f for f in first if f["path"] == f"{rel_dir}/{stale}")["action"] == "trim"
    assert any(h["check"] == "stale-lock" for h in runs[0].result["health"])

    cleanup = ck.run_agent(agent, gateway_plan(state, "20261121T061000Z-unlock", remove_stale=True),
                           tmp_path / "plan.json")
    assert cleanup.code == 0, cleanup.stderr[-1000:]
    rec = next(f for f in cleanup.result["files"] if f["path"] == lock_rel)
    assert rec["action"] == "delete" and Path(rec["backup"]).is_file()
    assert not (sessions / (stale + ".lock")).exists()


def test_a_store_renamed_in_at_the_last_moment_is_put_back(tmp_path, monkeypatch):
    """A lock-less gateway renames its store in after fleet's last re-check, just before fleet's own
    rename (the window a plain rename cannot see): the exchange notices, puts the gateway's version
    back, and the prune is redone on it, so the gateway's new entry and update survive."""
    from fleet.hostside import fsutil
    from fleet.hostside.context import FileInfo, RunContext
    from fleet.hostside.store import prune_store

    now = int(time.time() * 1000)
    sessions = tmp_path / "state" / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    path = sessions / "sessions.json"
    path.write_text(json.dumps({
        "agent:main:main": {"sessionId": "m", "updatedAt": now - 1000},
        "agent:main:cron:j:run:old": {"sessionId": "old", "updatedAt": now - 3 * 86_400_000}}, indent=2))
    fired = []

    def gateway_renames_in(step):
        if step == "before-rename" and not fired:
            fired.append(step)
            store = json.loads(path.read_bytes())
            store["agent:main:telegram:group:late"] = {"sessionId": "late", "updatedAt": now}
            store["agent:main:main"]["updatedAt"] = now
            tmp = sessions / f"sessions.json.{os.getpid()}.0a0b.tmp"
            tmp.write_text(json.dumps(store, indent=2))
            os.rename(tmp, path)

    monkeypatch.setattr(fsutil.FAULTS, "hit", gateway_renames_in)
    state = str(tmp_path / "state")
    ctx = RunContext(state, "run1", now, False, fsutil.BackupStore(os.path.join(state, "fleet-backups", "run1")),
                     {"store": {}})
    st = path.stat()
    info = FileInfo("main", str(path), os.path.relpath(path, state), "store", st.st_size, st.st_mtime_ns)
    rec, removed = prune_store(ctx, "main", info, {"prune": {"cron_run": 86400}})
    assert fired and rec["error"] is None and rec["action"] == "prune"
    assert any("changed during the rewrite" in n for n in rec["notes"])
    final = json.loads(path.read_bytes())
    assert set(final) == {"agent:main:main", "agent:main:telegram:group:late"}
    assert final["agent:main:main"]["updatedAt"] == now
    assert list(removed) == ["agent:main:cron:j:run:old"]
    assert [p.name for p in sessions.iterdir() if p.name.endswith(".tmp")] == []
