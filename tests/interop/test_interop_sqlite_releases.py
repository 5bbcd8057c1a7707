"""Each supported SQLite-era release judges fleet on its own genuine, aged data (aged.py).

Per release (2026.8.2: schema 19, no `event_zstd`; 2026.9.6: schema 23), with the disposable
sessions written 13 days ago by real OpenClaw and a main session of today:
- `fleet scan`: the host is ok, no record has an error, no unknown-schema warning, every session
  OpenClaw lists has a record, and not one byte of the database or its WAL changes;
- `fleet run weekly --dry-run`, then `fleet run weekly`, with OpenClaw found on PATH (no
  `openclaw_cmd` in the inventory): the dry run's per-session and database numbers equal the real
  run's; the 13-day-old cron run and subagent are gone, main, the topic and today's heartbeat kept; OpenClaw lists
  exactly the (key, session id) pairs fleet reports as kept; `doctor --lint` has no new finding;
  `PRAGMA integrity_check` and `foreign_key_check` are clean; weekly's bulky fields are gone from
  every entry (OpenClaw's own entry update) and nothing is reported as not done; the database + WAL
  shrink on disk; and one more `openclaw agent --local` turn on main works and sends main's last
  kept message; `fleet restore` of the run (forced: OpenClaw wrote a turn since) brings back
  exactly the sessions OpenClaw listed before;
- a transcript tier over main: OpenClaw's own transcript trim keeps a turn-aligned tail, the dry
  run equals the run, OpenClaw's state database never hears of fleet's rehearsal copy, OpenClaw
  agrees (listing, lint, integrity) and its next turn sends the kept tail, not the dropped head.
"""
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

import aged
import genuine
from genuine import MAIN_KEY, OpenClaw
from judge import (DB, assert_openclaw_clean, dry_run_then_run, host_files, next_turn_sent, openclaw_state,
                   run_fleet, sent_text, write_inventory, write_turn_config)
from mock_model import MockModel

pytestmark = pytest.mark.timeout(1500)
RELEASES = ("2026.8.2", "2026.9.6")
MAIN_TURNS = 12


@pytest.fixture(scope="module", params=RELEASES)
def release(request, tmp_path_factory):
    """(version, node, package dir, cached aged state, lint findings of an untouched copy)."""
    version = request.param
    node, pkgs = genuine.install(version)
    cached = aged.aged_state(version, node, pkgs[version], MAIN_TURNS)
    baseline = genuine.copy_state(cached, tmp_path_factory.mktemp("baseline") / "state")
    return version, node, pkgs[version], cached, OpenClaw(node, pkgs[version], baseline).lint()


def fleet_cli(tmp_path, *args):
    proc = subprocess.run([sys.executable, "-m", "fleet"] + list(args), capture_output=True, text=True,
                          timeout=600, cwd=str(tmp_path), env=dict(os.environ, FLEET_STATE_DIR=str(tmp_path / "fleet-state")))
    assert proc.returncode in (0, 1), "fleet %s exited %d:\n%s\n%s" % (args, proc.returncode, proc.stdout[-2000:],
                                                                     proc.stderr[-2000:])
    return proc


def on_disk(state):
    return sum(os.path.getsize(str(state / (DB + s))) for s in ("", "-wal") if (state / (DB + s)).exists())


def db_digests(state):
    import hashlib
    return {s: hashlib.sha256((state / (DB + s)).read_bytes()).hexdigest()
            for s in ("", "-wal") if (state / (DB + s)).exists()}


def test_scan_reads_the_release_schema_and_changes_no_byte(release, tmp_path):
    version, node, pkg, cached, _lint = release
    state = genuine.copy_state(cached, tmp_path / "state")
    before = db_digests(state)
    inventory = write_inventory(tmp_path / "inventory.toml", state)
    proc = subprocess.run([sys.executable, "-m", "fleet", "scan", "-i", str(inventory), "--json"],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                          env=dict(os.environ, FLEET_STATE_DIR=str(tmp_path / "fleet-state")))
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    (host,) = json.loads(proc.stdout)["hosts"]
    assert host["ok"], host["error"]
    assert db_digests(state) == before, "fleet scan changed the database or its WAL"
    assert not [f for f in host["files"] if f["error"]], [f["error"] for f in host["files"] if f["error"]]
    assert not [h for h in host["health"] if h["check"] in ("sqlite-schema", "sqlite-unreadable")], host["health"]
    ids = {f["path"].rsplit("/", 1)[1] for f in host["files"] if f["path"].startswith(DB + "#transcript/")}
    listed = {s["sessionId"] for s in OpenClaw(node, pkg, state).sessions()["sessions"]}
    assert len(listed) == 5 and listed <= ids
    (db,) = [f for f in host["files"] if f["path"] == DB]
    assert any("user_version %d" % {"2026.8.2": 19, "2026.9.6": 23}[version] in n for n in db["notes"]), db["notes"]


def test_weekly_prunes_like_the_json_era_dry_run_equals_run_and_openclaw_agrees(release, tmp_path, monkeypatch):
    version, node, pkg, cached, lint_before = release
    state, openclaw = openclaw_state(tmp_path, monkeypatch, node, pkg, cached)
    bytes_before = on_disk(state)
    ids_before = {s["key"]: s["sessionId"] for s in openclaw.sessions()["sessions"]}
    real, doc = dry_run_then_run(tmp_path, state, "weekly")
    (host,) = doc["hosts"]
    assert not [h for h in host["health"] if h["check"] == "sqlite-not-done" and "pruning" in h["detail"]], \
        host["health"]
    kept = {f["path"].rsplit("/", 1)[1] for f in real
            if f["path"].startswith(DB + "#transcript/") and f["after"]["records"] > 0}
    listed = {s["key"]: s["sessionId"] for s in openclaw.sessions()["sessions"]}
    assert set(listed.values()) == kept
    assert set(listed) == set(aged.KEPT_KEYS)
    gone = {f["path"].rsplit("/", 1)[1] for f in real if f["path"].startswith(DB + "#") and f["action"] == "delete"}
    assert gone == {ids_before[k] for k in aged.DISPOSABLE_KEYS}
    assert_openclaw_clean(openclaw, state / DB, lint_before, "weekly")
    # weekly's strip_fields went through OpenClaw's own entry update: no kept entry has them.
    conn = sqlite3.connect("file:%s?mode=ro" % (state / DB), uri=True)
    try:
        entries = dict((k, (u, json.loads(e))) for k, u, e in conn.execute(
            "SELECT session_key, updated_at, entry_json FROM session_nodes"))
    finally:
        conn.close()
    assert not [k for k, (_u, e) in entries.items() if "skillsSnapshot" in e or "systemPromptReport" in e], entries
    (db,) = [f for f in real if f["path"] == DB]
    assert "strip" in db["actions"] and any("stripped from" in n for n in db["notes"]), db
    # Nothing weekly asks is left undone on this agent, and the printed report says what was done.
    assert not [h for h in host["health"] if h["check"] == "sqlite-not-done"], host["health"]
    bytes_after = on_disk(state)
    print("%s: database + WAL %d -> %d bytes (-%.0f %%)" % (version, bytes_before, bytes_after,
                                                          100.0 * (bytes_before - bytes_after) / bytes_before))
    assert bytes_after < bytes_before * 0.85, (bytes_before, bytes_after)
    sent = next_turn_sent(openclaw, state, "one more turn after fleet")
    assert "one more turn after fleet" in sent and "main turn %d" % (MAIN_TURNS - 1) in sent
    # The printed report has nothing not done to say for this agent.
    printed = fleet_cli(tmp_path, "report")
    assert "sqlite-not-done" not in printed.stdout, printed.stdout
    # Restore: OpenClaw wrote a turn since the run, so --force; it lists what it listed before.
    restored = json.loads(fleet_cli(tmp_path, "restore", doc["run_id"], "-i", str(tmp_path / "inventory.toml"),
                                    "--force", "--json").stdout)
    (rhost,) = restored["hosts"]
    (rdb,) = [f for f in rhost["files"] if f["path"] == DB]
    assert rdb["action"] == "restore" and rdb["error"] is None, rdb
    assert {s["key"]: s["sessionId"] for s in openclaw.sessions()["sessions"]} == ids_before


def test_weekly_beside_a_live_openclaw_writing_loses_no_write(release, tmp_path, monkeypatch):
    """OpenClaw runs turns on main during the whole `fleet run weekly` (its own write path, its own
    locking): every turn succeeds and every acknowledged one is still in main's history afterwards,
    integrity_check is ok, and OpenClaw's next turn works. main's entry is in use, so weekly leaves its
    bulky fields (OpenClaw refuses a turn whose entry another process wrote meanwhile) and says so."""
    import threading
    version, node, pkg, cached, _lint = release
    state, openclaw = openclaw_state(tmp_path, monkeypatch, node, pkg, cached)
    mock = MockModel.start()
    acknowledged, failures, stop = [], [], threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            proc = openclaw.run("agent", "--local", "--session-key", MAIN_KEY, "--message", "live turn %d" % i,
                                "--json", timeout=600, check=False)
            (acknowledged if proc.returncode == 0 else failures).append((i, proc.stderr[-300:]))
            i += 1

    try:
        write_turn_config(state, mock.base_url)
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            # main is in use once OpenClaw has answered on it (and keeps being used all along).
            deadline = time.monotonic() + 300
            while not (acknowledged or failures) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert acknowledged, failures
            doc = run_fleet(tmp_path, state, "weekly", hours_later=0)
        finally:
            stop.set()
            thread.join()
        assert host_files(doc)
        assert acknowledged and not failures, failures
        (db,) = [f for f in host_files(doc) if f["path"] == DB]
        assert any("OpenClaw updated in the last 10 min (in use" in n for n in db["notes"]), db["notes"]
        conn = sqlite3.connect("file:%s?mode=ro" % (state / DB), uri=True)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
        mock.requests.clear()
        assert openclaw.turn(MAIN_KEY, "after the live run").get("payloads")
    finally:
        mock.stop()
    sent = sent_text(mock.requests[0])
    lost = [i for i, _ in acknowledged if "live turn %d" % i not in sent]
    assert not lost, "turns OpenClaw acknowledged are missing from main's history: %s" % lost
    print("%s: %d live turns during weekly, none lost" % (version, len(acknowledged)))


TIER_PLAYBOOK = """description = "one small transcript tier"
[transcripts]
[[transcripts.tier]]
over = "2KB"
keep_records = 10
"""


def test_a_transcript_tier_is_trimmed_by_openclaws_own_code_and_openclaw_agrees(release, tmp_path, monkeypatch):
    """A tier over main's transcript: OpenClaw's own trim (loaded with the host's Node) keeps a
    turn-aligned tail of at most 10 records; the dry run equals the run; the rehearsal leaves no
    trace in OpenClaw's own state database; OpenClaw still lists every session, `doctor --lint` has
    nothing new, integrity is clean; the next turn sends the kept tail and not the dropped head;
    `fleet restore` brings every event back."""
    version, node, pkg, cached, lint_before = release
    state, openclaw = openclaw_state(tmp_path, monkeypatch, node, pkg, cached)
    playbook = tmp_path / "tier.toml"
    playbook.write_text(TIER_PLAYBOOK)
    ids_before = {s["key"]: s["sessionId"] for s in openclaw.sessions()["sessions"]}
    main_id = ids_before[MAIN_KEY]

    def main_events():
        conn = sqlite3.connect("file:%s?mode=ro" % (state / DB), uri=True)
        try:
            return [json.loads(e) for (e,) in conn.execute(
                "SELECT event_json FROM transcript_events WHERE session_id = ? ORDER BY seq", (main_id,))]
        finally:
            conn.close()

    events_before = main_events()
    def untouched():
        assert main_events() == events_before, "the dry run changed main's transcript"

    real, doc = dry_run_then_run(tmp_path, state, playbook, after_dry_run=untouched)
    (host,) = doc["hosts"]
    assert not [h for h in host["health"] if h["check"] == "sqlite-not-done" and "tier" in h["detail"]], host["health"]
    events = main_events()
    assert events[0] == events_before[0], "the header changed"
    assert 1 < len(events) <= 11 < len(events_before)
    first = events[1]
    assert first["type"] == "message" and first["message"]["role"] == "user", first
    (main_rec,) = [f for f in real if f["path"] == "%s#transcript/%s" % (DB, main_id)]
    assert (main_rec["before"]["records"], main_rec["after"]["records"]) == (len(events_before) - 1, len(events) - 1)
    assert {s["key"]: s["sessionId"] for s in openclaw.sessions()["sessions"]} == ids_before
    assert_openclaw_clean(openclaw, state / DB, lint_before, "the trim")
    conn = sqlite3.connect("file:%s?mode=ro" % (state / "state" / "openclaw.sqlite"), uri=True)
    try:
        registered = [p for (p,) in conn.execute("SELECT path FROM agent_databases")] \
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'agent_databases'").fetchone() else []
    finally:
        conn.close()
    assert not [p for p in registered if p.startswith("/") and not p.startswith(str(state))], registered
    sent = next_turn_sent(openclaw, state, "one more turn after the trim")
    assert "main turn %d:" % (MAIN_TURNS - 1) in sent and "main turn 0:" not in sent
    restored = json.loads(fleet_cli(tmp_path, "restore", doc["run_id"], "-i", str(tmp_path / "inventory.toml"),
                                    "--force", "--json").stdout)
    (rdb,) = [f for f in restored["hosts"][0]["files"] if f["path"] == DB]
    assert rdb["action"] == "restore" and rdb["error"] is None, rdb
    assert main_events() == events_before


def test_a_session_in_use_is_neither_trimmed_nor_stripped_and_the_report_says_so(release, tmp_path, monkeypatch):
    """Right after an OpenClaw turn on main, a tier over main and weekly's strips leave main alone:
    OpenClaw's trim and entry update rewrite the entry, and OpenClaw refuses a turn whose entry
    another process wrote meanwhile. The run says what it left and why (sqlite-not-done, a note).
    With `busy_within = "0s"` the next run trims and strips it."""
    version, node, pkg, cached, _lint = release
    state, openclaw = openclaw_state(tmp_path, monkeypatch, node, pkg, cached)
    playbook = tmp_path / "tier.toml"
    playbook.write_text(TIER_PLAYBOOK + '[store]\nstrip_fields = ["skillsSnapshot", "systemPromptReport"]\n')
    next_turn_sent(openclaw, state, "a turn just before fleet")
    before = _main_entry_and_event_count(state)
    assert "systemPromptReport" in before[0]
    doc = run_fleet(tmp_path, state, playbook, hours_later=0)
    (host,) = doc["hosts"]
    left = [h["detail"] for h in host["health"] if h["check"] == "sqlite-not-done"]
    assert any(MAIN_KEY in d and "in use" in d for d in left), host["health"]
    (db,) = [f for f in host_files(doc) if f["path"] == DB]
    assert any("in use" in n for n in db["notes"]), db["notes"]
    assert _main_entry_and_event_count(state) == before
    # The operator's switch: with `[sqlite] busy_within = "0s"` the same run trims and strips main.
    playbook.write_text(playbook.read_text() + '[sqlite]\nbusy_within = "0s"\n')
    doc = run_fleet(tmp_path, state, playbook, hours_later=0)
    (host,) = doc["hosts"]
    assert not [h for h in host["health"] if h["check"] == "sqlite-not-done" and "in use" in h["detail"]]
    entry, events = _main_entry_and_event_count(state)
    assert events < before[1] and "systemPromptReport" not in entry


def _main_entry_and_event_count(state):
    """(main's entry_json, the number of transcript events) of the agent database."""
    conn = sqlite3.connect("file:%s?mode=ro" % (state / DB), uri=True)
    try:
        return (conn.execute("SELECT entry_json FROM session_nodes WHERE session_key = ?", (MAIN_KEY,)).fetchone()[0],
                conn.execute("SELECT COUNT(*) FROM transcript_events").fetchone()[0])
    finally:
        conn.close()


CAPS_PLAYBOOK = """description = "maintenance's caps, tighter"
[store]
stale_after = "7d"
max_entries = 3
"""


def test_maintenance_caps_go_through_openclaws_own_session_maintenance(release, tmp_path, monkeypatch):
    """stale_after / max_entries on a SQLite agent: OpenClaw's own cleanup with pruneAfter /
    maxEntries, judged on a copy: the 13-day-old cron run and subagent go, main, the topic and
    today's heartbeat stay (3 = the cap), nothing is reported as not done, dry run = run."""
    version, node, pkg, cached, lint_before = release
    state, openclaw = openclaw_state(tmp_path, monkeypatch, node, pkg, cached)
    playbook = tmp_path / "caps.toml"
    playbook.write_text(CAPS_PLAYBOOK)
    real, doc = dry_run_then_run(tmp_path, state, playbook)
    (host,) = doc["hosts"]
    assert not [h for h in host["health"] if h["check"] == "sqlite-not-done"], host["health"]
    assert set(s["key"] for s in openclaw.sessions()["sessions"]) == set(aged.KEPT_KEYS)
    assert_openclaw_clean(openclaw, state / DB, lint_before, "the caps")
