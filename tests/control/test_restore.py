"""`fleet restore` end to end on the real-sshd test fleet (weekly run, then restore), plus the
pure plan building."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path


from fleet.report import history
from fleet.demo.gen import HostSpec, generate_host, tiny_agent
from fleet.control.restore import restore_files
from fleet.report.results import FileResult, HostResult, RunResult, Stats
from helpers import assert_markdown_adds_up
from helpers import agents_snapshot as snapshot, cli_status as cli

KB = 1024


# --- plan building (pure) -----------------------------------------------------------------

def fr(path, action, before_sha, after_sha, backup=None, backup_sha=None, archived_to=None, error=None, agent="main"):
    return FileResult(agent, path, "transcript", action, (action,), Stats(10, 1, before_sha), Stats(5, 1, after_sha),
                      backup=backup, backup_sha256=backup_sha, archived_to=archived_to, error=error)


def test_restore_files_from_a_run_record():
    host = HostResult("pc-a", True, backup_dir="/s/fleet-backups/R", files=(
        fr("agents/main/sessions/a.jsonl", "trim", "A", "a2", "/s/fleet-backups/R/agents/main/sessions/a.jsonl", "A"),
        fr("agents/main/sessions/b.jsonl", "archive", "B", "B", "/s/fleet-backups/R/agents/main/sessions/b.jsonl",
           "B", archived_to="agents/main/sessions/b.jsonl.deleted.x"),
        fr("agents/main/sessions/c.tmp", "delete", "C", None, "/s/fleet-backups/R/agents/main/sessions/c.tmp", "C"),
        fr("agents/main/sessions/d.jsonl", "none", None, None),
        fr("agents/main/sessions/e.jsonl", "trim", "E", "E", "/s/x", "E", error="not valid JSON"),
        # Changed twice in one run: the record names the second backup (of the intermediate
        # bytes); the plan points at the first one, of the original bytes.
        fr("agents/ops/sessions/sessions.json", "prune", "S0", "S2",
           "/s/fleet-backups/R/agents/ops/sessions/sessions.json.2.gz", "S1", agent="ops"),
    ))
    files = {f["path"].rsplit("/", 1)[1]: f for f in restore_files(host)}
    assert set(files) == {"a.jsonl", "b.jsonl", "c.tmp", "sessions.json"}
    assert files["a.jsonl"]["expect_sha256"] == "a2" and files["a.jsonl"]["backup_sha256"] == "A"
    assert files["b.jsonl"]["expect_sha256"] is None
    assert files["b.jsonl"]["archived_to"] == "agents/main/sessions/b.jsonl.deleted.x"
    assert files["c.tmp"]["expect_sha256"] is None
    assert files["sessions.json"]["backup"] == "/s/fleet-backups/R/agents/ops/sessions/sessions.json.gz"
    assert files["sessions.json"]["backup_sha256"] == "S0"
    assert [f["agent"] for f in restore_files(host, agent="ops")] == ["ops"]


# --- end to end on real sshd --------------------------------------------------------------

def populate(state_dir: Path, i: int) -> None:
    now = int(time.time() * 1000)
    if i == 0:
        # One transcript over the weekly playbook's 2 MB tier, so the run trims it.
        spec = HostSpec("host1", (tiny_agent("main", main_bytes=2300 * KB, main_records=500),))
    else:
        spec = HostSpec("host2", (tiny_agent("main", 24 * KB, 30), tiny_agent("ops", 16 * KB, 24)))
    generate_host(state_dir, spec, seed=7, now_ms=now)


def test_restore_brings_a_weekly_run_back_byte_identical(ssh_fleet, capsys):
    fleet = ssh_fleet(2, populate=populate)
    inventory = str(fleet.inventory)
    before = {h.name: snapshot(h.state_dir) for h in fleet.hosts}

    assert cli(["run", "weekly", "-i", inventory, "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    changed = {h["host"]: [f for f in h["files"] if f["action"] not in ("none", "skip")] for h in run["hosts"]}
    actions = {f["action"] for fs in changed.values() for f in fs}
    assert {"trim", "prune", "archive"} <= actions, actions
    after_run = {h.name: snapshot(h.state_dir) for h in fleet.hosts}
    assert after_run != before

    # The markdown report of that run: per-host and per-agent tables add up to the JSON.
    assert cli(["report", "-i", inventory, "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert_markdown_adds_up(md, run)

    # A dry-run restore changes nothing.
    assert cli(["restore", run["run_id"], "-i", inventory, "--dry-run"]) == 0
    capsys.readouterr()
    assert {h.name: snapshot(h.state_dir) for h in fleet.hosts} == after_run

    assert cli(["restore", run["run_id"], "-i", inventory, "--json"]) == 0
    restore = json.loads(capsys.readouterr().out)
    assert {h.name: snapshot(h.state_dir) for h in fleet.hosts} == before
    assert restore["kind"] == "restore" and restore["restored_run"] == run["run_id"]
    restored = [f for h in restore["hosts"] for f in h["files"]]
    backed_up = [f for fs in changed.values() for f in fs if f["backup"]]
    # The only changes without a backup are stale lock files the run removed (no session data).
    assert all(f["kind"] == "lock" or f["path"].endswith(".lock") for fs in changed.values() for f in fs
               if not f["backup"])
    assert sorted(f["path"] for f in restored) == sorted(f["path"] for f in backed_up)
    assert all(f["action"] == "restore" and f["error"] is None for f in restored)
    assert history.load_run(restore["run_id"]).kind == "restore"
    listed = [r["kind"] for r in history.list_runs(5)]
    assert listed == ["restore", "restore", "run"]


def test_file_modified_after_the_run_is_refused_without_force(ssh_fleet, capsys):
    fleet = ssh_fleet(1, populate=populate)
    inventory = str(fleet.inventory)
    original = snapshot(fleet.hosts[0].state_dir)
    assert cli(["run", "weekly", "-i", inventory, "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    trimmed = [f for f in run["hosts"][0]["files"] if f["action"] == "trim"][0]
    path = fleet.hosts[0].state_dir / trimmed["path"]
    newer = path.read_bytes() + b'{"type":"message","id":"late","parentId":null,"message":{"role":"user"}}\n'
    path.write_bytes(newer)

    assert cli(["restore", run["run_id"], "-i", inventory]) == 1
    captured = capsys.readouterr()
    assert "changed since the run" in captured.out and "--force" in captured.err
    assert path.read_bytes() == newer
    # Everything else was restored.
    now = snapshot(fleet.hosts[0].state_dir)
    assert {k: v for k, v in now.items() if k != trimmed["path"]} == \
        {k: v for k, v in original.items() if k != trimmed["path"]}

    assert cli(["restore", run["run_id"], "-i", inventory, "--force", "--json"]) == 0
    forced = json.loads(capsys.readouterr().out)
    assert snapshot(fleet.hosts[0].state_dir) == original
    record = [f for f in forced["hosts"][0]["files"] if f["path"] == trimmed["path"]][0]
    # What --force overwrote is kept in the restore run's own backup, verified.
    assert record["backup"] and record["before"]["sha256"] == hashlib.sha256(newer).hexdigest()
    assert Path(record["backup"]).read_bytes() == newer


def test_restore_of_unknown_run_or_scan_exits_2(tmp_path, capsys):
    inventory = tmp_path / "inventory.toml"
    inventory.write_text('[hosts.a]\nconnection = "local"\n')
    assert cli(["restore", "nope", "-i", str(inventory)]) == 2
    assert "no runs recorded yet" in capsys.readouterr().err
    history.record_run(RunResult("20261121T000000Z-scan00", "scan", None, False, "2026-11-21T00:00:00Z",
                                 "2026-11-21T00:00:01Z", ()))
    assert cli(["restore", "20261121T000000Z-scan00", "-i", str(inventory)]) == 2
    assert "is a scan" in capsys.readouterr().err


def test_restore_with_nothing_to_restore_exits_1_and_an_unknown_agent_exits_2(tmp_path, capsys):
    inventory = tmp_path / "inventory.toml"
    inventory.write_text('[hosts.a]\nconnection = "local"\n')
    untouched = HostResult("a", True, files=(fr("agents/main/sessions/d.jsonl", "none", "D", "D"),))
    history.record_run(RunResult("20261121T000000Z-none00", "run", "weekly", False, "2026-11-21T00:00:00Z",
                                 "2026-11-21T00:00:01Z", (untouched,)))
    assert cli(["restore", "20261121T000000Z-none00", "-i", str(inventory)]) == 1
    assert "has no backups to restore: nothing was restored" in capsys.readouterr().err
    trimmed = HostResult("a", True, backup_dir="/s/fleet-backups/R", files=(
        fr("agents/main/sessions/a.jsonl", "trim", "A", "a2", "/s/fleet-backups/R/agents/main/sessions/a.jsonl", "A"),))
    history.record_run(RunResult("20261121T000000Z-trim00", "run", "weekly", False, "2026-11-21T00:00:00Z",
                                 "2026-11-21T00:00:01Z", (trimmed,)))
    assert cli(["restore", "20261121T000000Z-trim00", "--agent", "ghost", "-i", str(inventory)]) == 2
    assert "has no agent 'ghost'" in capsys.readouterr().err
    assert cli(["restore", "20261121T000000Z-trim00", "--host", "b", "-i", str(inventory)]) == 2
    assert "has no host 'b'" in capsys.readouterr().err
