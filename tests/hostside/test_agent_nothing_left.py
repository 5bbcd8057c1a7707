"""Nothing left behind on a full disk (issue 15): a change that cannot complete takes back the
backup it made, leaves no `.part` or temp file, and the file's record says what happened.

Real file systems: each test mounts a small tmpfs (root only; skipped with the reason otherwise)
holding the state dir and its backups, as on a host whose disk is nearly full, and fills it so
that the free space is just above what the run's backup estimate (space.backup_need) asks for.
The backup fits, the rewrite's temp file does not.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

from fleet.hostside.main import main
from fullfs import PAGE, free_bytes, leave_free, stray_files, tmpfs, tree_bytes

NOW_MS = 1795000000000
RUN_ID = "20261204T210000Z-full01"


def transcript(path: Path, turns: int, text_bytes: int) -> None:
    """A schema-3 conversation whose user and assistant lines carry `text_bytes` of text each."""
    lines = [{"type": "session", "version": 3, "id": path.stem, "timestamp": "2026-11-14T08:00:00.000Z",
              "cwd": "/w"}]
    parent = None
    for i in range(turns * 2):
        role = ("user", "assistant")[i % 2]
        line_id = "%08x" % (i + 1)
        lines.append({"type": "message", "id": line_id, "parentId": parent,
                      "timestamp": "2026-11-14T08:00:01.000Z",
                      "message": {"role": role, "content": [{"type": "text", "text": "%s %d " % (role, i)
                                                             + "x" * text_bytes}]}})
        parent = line_id
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def state_with(state: Path, names: dict, agent: str = "main") -> Path:
    """agents/<agent>/sessions with a store naming every transcript in `names` (name -> (turns, bytes))."""
    sessions = state / "agents" / agent / "sessions"
    sessions.mkdir(parents=True)
    store = {}
    for name, (turns, size) in names.items():
        transcript(sessions / ("%s.jsonl" % name), turns, size)
        store["agent:%s:telegram:direct:%s" % (agent, name)] = {"sessionId": name, "updatedAt": NOW_MS - 1000}
    (sessions / "sessions.json").write_text(json.dumps(store, indent=2))
    return sessions


def plan(state: Path, keep_records: int = 100) -> dict:
    return {"protocol": 1, "mode": "run", "run_id": RUN_ID, "now_ms": NOW_MS, "dry_run": False,
            "state_dir": str(state), "agents": None,
            "backup": {"dir": None, "gzip": False, "keep_runs": None, "max_age_s": None},
            "operations": {"transcripts": {"tiers": [{"over_bytes": 512 * 1024, "keep_records": keep_records,
                                                      "slim": "tool-output"}]}}}


def run(doc: dict) -> tuple[int, dict]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["run"], stdin=io.StringIO(json.dumps(doc)), stdout=out, stderr=err)
    return code, json.loads(out.getvalue())


def pages(size: int) -> int:
    return (size + PAGE - 1) // PAGE * PAGE


def test_failed_rewrite_takes_its_backup_back(tmp_path):
    with tmpfs(tmp_path / "disk", 4 * 1024 * 1024) as disk:
        state = disk / "openclaw"
        sessions = state_with(state, {"big": (300, 3000)})        # ~1.8 MB, 600 records
        big = sessions / "big.jsonl"
        original = big.read_bytes()
        # Free space just above the estimate: the backup fits, the ~300 KB of kept lines do not.
        leave_free(disk, pages(len(original)) + 16 * 1024)
        free_before = free_bytes(disk)

        code, doc = run(plan(state))

        assert code == 1
        rec = next(f for f in doc["files"] if f["path"].endswith("big.jsonl"))
        assert rec["error"].startswith("no space for rewriting"), rec["error"]
        assert "the backup taken for this change was removed" in rec["error"]
        assert rec["action"] == "none" and rec["backup"] is None and rec["backup_sha256"] is None
        assert rec["after"] == rec["before"]
        assert big.read_bytes() == original
        assert stray_files(disk) == []
        assert tree_bytes(state / "fleet-backups") == 0          # 0 stray backup bytes
        assert not (state / "fleet-backups" / RUN_ID).exists()    # nor an empty run folder
        assert doc["backup"]["bytes"] == 0
        assert free_bytes(disk) == free_before


def test_completed_changes_keep_their_backups_and_the_rest_costs_nothing(tmp_path):
    """Two agents: agent a's trim completes (its backup stays), agent b's fails for want of room;
    the run ends with exactly a's backup and a's trim accounted for, nothing else."""
    with tmpfs(tmp_path / "disk", 6 * 1024 * 1024) as disk:
        state = disk / "openclaw"
        a = state_with(state, {"s-a": (300, 1500)}, agent="a") / "s-a.jsonl"
        b = state_with(state, {"s-b": (300, 3000)}, agent="b") / "s-b.jsonl"
        a_before, b_before = a.read_bytes(), b.read_bytes()
        code, dry = run(dict(plan(state), dry_run=True))
        assert code == 0
        a_after = next(f for f in dry["files"] if f["path"].endswith("s-a.jsonl"))["after"]["bytes"]
        # Room for a's backup and trim, then for b's backup, but not for b's rewrite.
        leave_free(disk, pages(a_after) + pages(len(b_before)) + 16 * 1024)
        free_before = free_bytes(disk)

        code, doc = run(plan(state))

        recs = {Path(f["path"]).name: f for f in doc["files"]}
        done, failed = recs["s-a.jsonl"], recs["s-b.jsonl"]
        assert code == 1
        assert done["error"] is None and done["action"] == "trim" and done["backup"], done
        assert done["after"]["bytes"] == a_after == a.stat().st_size
        assert failed["error"].startswith("no space for rewriting"), failed["error"]
        assert "backup taken for this change was removed" in failed["error"]
        assert failed["backup"] is None and b.read_bytes() == b_before
        assert Path(done["backup"]).read_bytes() == a_before
        assert tree_bytes(state / "fleet-backups") == len(a_before) == doc["backup"]["bytes"]
        assert stray_files(disk) == []
        # Only the completed change moved space: a's bytes became its backup plus its trimmed copy.
        assert free_bytes(disk) == free_before - pages(a_after)


def test_full_disk_rewrites_what_fits_first_and_retries_the_rest(tmp_path):
    """Backups on another volume, 100 KB free on the state dir's: the biggest transcript's kept
    tail (~300 KB) does not fit at first, the smaller one's does; once that one is trimmed the
    first is tried again and fits. Nothing stray stays, and the records say what happened."""
    with tmpfs(tmp_path / "disk", 8 * 1024 * 1024) as disk:
        state = disk / "openclaw"
        sessions = state_with(state, {"big": (300, 3000), "small": (2000, 200)})
        big, small = sessions / "big.jsonl", sessions / "small.jsonl"
        originals = {p.name: p.read_bytes() for p in (big, small)}
        leave_free(disk, 100 * 1024)
        doc_plan = plan(state)
        doc_plan["backup"]["dir"] = str(tmp_path / "elsewhere")

        code, doc = run(doc_plan)

        recs = {Path(f["path"]).name: f for f in doc["files"]}
        assert code == 0, {n: r["error"] for n, r in recs.items()}
        assert recs["big.jsonl"]["action"] == recs["small.jsonl"]["action"] == "trim"
        assert any("second try" in n for n in recs["big.jsonl"]["notes"])
        assert not any("second try" in n for n in recs["small.jsonl"]["notes"])
        assert any(n.startswith("disk nearly full") for n in doc["agents"][0]["notes"])
        for name, data in originals.items():
            assert Path(recs[name]["backup"]).read_bytes() == data
        assert stray_files(disk) == [] and stray_files(tmp_path / "elsewhere") == []
        assert doc["disk"]["after"]["free"] > doc["disk"]["before"]["free"]
