"""Helpers for letting OpenClaw judge what fleet did: run fleet, list what OpenClaw sees, load transcripts."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBE = HERE / "load_transcript.mjs"


def write_inventory(path, state):
    path.write_text('[hosts.genuine]\nconnection = "local"\nstate_dir = "%s"\n' % state)
    return path


def run_fleet(tmp_path, state, playbook, hours_later=48.0, extra=(), inventory=None):
    """`fleet run PLAYBOOK -i <local inventory> --json` with the clock HOURS ahead; the JSON document."""
    inventory = inventory or write_inventory(tmp_path / "inventory.toml", state)
    env = dict(os.environ, FLEET_STATE_DIR=str(tmp_path / "fleet-state"))
    proc = subprocess.run([sys.executable, str(HERE / "fleet_later.py"), str(hours_later), "run", str(playbook),
                           "-i", str(inventory), "--json"] + list(extra),
                          capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, "fleet run %s exited %d:\n%s\n%s" % (
        playbook, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return json.loads(proc.stdout)


def host_files(doc):
    (host,) = doc["hosts"]
    assert host["ok"], host["error"]
    return host["files"]


def store_keys(state, agent="main"):
    with open(Path(state) / "agents" / agent / "sessions" / "sessions.json") as f:
        return json.load(f)


def listed_keys(openclaw):
    return {s["key"] for s in openclaw.sessions()["sessions"]}


def load_with_openclaw(node, pkg, transcript, scratch):
    """OpenClaw's SessionManager on a copy of `transcript` (see load_transcript.mjs)."""
    scratch.mkdir(exist_ok=True)
    copy = scratch / transcript.name
    shutil.copyfile(transcript, copy)
    proc = subprocess.run([str(node), str(PROBE), str(pkg), str(copy)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def user_texts(transcript):
    """The user messages' text of a transcript, in order."""
    out = []
    with open(transcript) as f:
        for line in f:
            doc = json.loads(line)
            msg = doc.get("message") if doc.get("type") == "message" else None
            if msg and msg.get("role") == "user":
                content = msg.get("content")
                if isinstance(content, list):
                    content = " ".join(b.get("text", "") for b in content if isinstance(b, dict))
                out.append(content)
    return out


def sent_text(request):
    """Everything OpenClaw sent the model in one request, as one string."""
    return json.dumps(request.get("messages"))


def write_turn_config(state, base_url):
    """openclaw.json for a turn on data built earlier: the mock provider, and no session reset by time.

    OpenClaw before 2026.8 resets every direct session at 04:00 local time by default
    (`session.reset.mode = "daily"`), so a turn on state built before the last 04:00 would start a new,
    empty session and the test would judge the clock, not fleet. `mode = "idle"` without `idleMinutes`
    never expires, and every release accepts it (2026.8 made "none" the default and added it as a mode).
    Written over genuine.write_config's file rather than in it: genuine.py's digest keys the cached
    OpenClaw data, and the builds do not need it."""
    import genuine
    genuine.write_config(state, base_url)
    path = Path(state) / "openclaw.json"
    config = json.loads(path.read_text())
    config["session"] = {"reset": {"mode": "idle"}}
    path.write_text(json.dumps(config, indent=2))


def next_turn_sent(openclaw, state, message):
    """One more real OpenClaw turn on main (mock model); returns everything OpenClaw sent the model."""
    import genuine
    from mock_model import MockModel
    mock = MockModel.start()
    try:
        write_turn_config(state, mock.base_url)
        assert openclaw.turn(genuine.MAIN_KEY, message).get("payloads")
    finally:
        mock.stop()
    return sent_text(mock.requests[0])


def assert_openclaw_clean(openclaw, db, lint_before, after):
    """`doctor --lint` finds nothing new since `lint_before`; the database passes integrity_check and
    foreign_key_check."""
    import sqlite3
    new = {(c, s) for c, s, _ in openclaw.lint()} - {(c, s) for c, s, _ in lint_before}
    assert not new, "doctor --lint has new findings after %s: %s" % (after, sorted(new))
    conn = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


# The SQLite era's agent database, relative to the state dir.
DB = "agents/main/agent/openclaw-agent.sqlite"


def openclaw_on_path(tmp_path, node, pkg):
    """A folder with an `openclaw` program, as `npm install -g openclaw` leaves one."""
    folder = tmp_path / "bin"
    folder.mkdir()
    prog = folder / "openclaw"
    prog.write_text('#!/bin/sh\nexec "%s" "%s" "$@"\n' % (node, pkg / "openclaw.mjs"))
    prog.chmod(0o755)
    return folder


def openclaw_state(tmp_path, monkeypatch, node, pkg, cached):
    """(state, OpenClaw): a private copy of the cached state, and its OpenClaw, found on PATH as
    fleet finds it on a host (no openclaw_cmd in the inventory)."""
    import genuine
    state = genuine.copy_state(cached, tmp_path / "state")
    monkeypatch.setenv("PATH", "%s:%s" % (openclaw_on_path(tmp_path, node, pkg), os.environ["PATH"]))
    return state, genuine.OpenClaw(node, pkg, state)


def sqlite_records(files):
    """{path: (action, before bytes/records, after bytes/records)} of the database's own records."""
    return {f["path"]: (f["action"], f["before"]["bytes"], f["before"]["records"], f["after"]["bytes"],
                        f["after"]["records"]) for f in files if f["path"] == DB or f["path"].startswith(DB + "#")}


def dry_run_then_run(tmp_path, state, playbook, after_dry_run=None):
    """(the run's files, its document) after `--dry-run` then the real run of `playbook`, now; the
    dry run's numbers for the database and its sessions must equal the run's. `after_dry_run`, if
    given, is called (to assert) between the two."""
    dry = host_files(run_fleet(tmp_path, state, playbook, hours_later=0, extra=["--dry-run"]))
    if after_dry_run is not None:
        after_dry_run()
    doc = run_fleet(tmp_path, state, playbook, hours_later=0)
    real = host_files(doc)
    assert sqlite_records(dry) == sqlite_records(real), "the dry run's numbers differ from the run's"
    return real, doc
