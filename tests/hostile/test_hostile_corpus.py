"""The hostile and broken input corpus, through the real exported agent (issue 8, item 3).

For every case in tests/hostile/corpus/ the bundled agent (fleet.control.bundle.export_agent) runs as a
subprocess, first `scan`, then `run` with a plan that enables every operation at its most eager
setting. Each time it must:

- exit 0 or 1 within the timeout, print one JSON result, and no Python traceback;
- name the bad file: the case's expected words appear in that file's record (error, notes), the
  health findings for it, or the agent's errors;
- leave the bad file as it was (same bytes, inode, mtime, mode) unless the case allows a change,
  and then hold a verified backup (a backup file with the original's sha256);
- change nothing outside the state dir (the whole tree around it is snapshotted before and
  after: paths, types, modes, sizes, mtimes, inodes, sha256, link targets), and never read
  through a link: no byte of an outside file (all hold SECRET) appears in the output or in any
  file under the state dir, backups included;
- write nothing at all in a scan, and still trim the healthy agent's transcript in a run;
- leave backups as 0600 files in 0700 folders and no temp file behind.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpus_builder import SECRET, build_case, files_containing, load_cases, snapshot, under
from fleet.control.bundle import export_agent
import pythons

CASES = load_cases()
RUN_ID = "20261121T101500Z-h0stil"
TIMEOUT_S = 60


def test_corpus_is_large_and_described():
    assert len(CASES) >= 100
    for case in CASES:
        assert case.get("what") and case.get("must"), case["name"]
        assert case.get("changes", "none") in ("none", "allowed"), case["name"]


def test_every_promise_to_report_is_checked():
    """A case whose `must` says "reported" names the words to find (`scan`/`run`) or the exact
    paths the results must list (`reported`); otherwise nothing would hold fleet to it."""
    unchecked = [c["name"] for c in CASES if "reported" in c["must"]
                 and not (c.get("scan") or c.get("run") or c.get("reported"))]
    assert unchecked == []
    exact = [c["name"] for c in CASES if "exact name" in c["must"]]
    assert exact and all(c.get("reported") for c in CASES if c["name"] in exact)


@pytest.fixture(scope="session")
def agent_pyz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("agent") / "fleet-agent.pyz"
    export_agent(path)
    return path


def eager_plan(state: Path, now_ms: int) -> dict:
    """Every operation on, at its most eager: whatever a file could provoke, it provokes."""
    ages = {k: 0 for k in ("cron_run", "subagent", "heartbeat", "acp", "dashboard", "probe", "hook", "dreaming")}
    return {
        "protocol": 1, "mode": "run", "run_id": RUN_ID, "now_ms": now_ms, "dry_run": False,
        "state_dir": str(state), "agents": None,
        "backup": {"dir": None, "gzip": False, "keep_runs": 1, "max_age_s": 0},
        "operations": {
            "transcripts": {"tiers": [{"over_bytes": 0, "keep_records": 4, "slim": "aggressive"}],
                            "tool_output_limit_bytes": 64, "assistant_text_limit_bytes": 64,
                            "untouched_turns": 0},
            "trajectories": {"keep_runs": 1, "max_age_s": 1},
            "store": {"prune": ages, "prune_direct_after_s": 0, "stale_after_s": 0, "max_entries": 1,
                      "strip_fields": ["skillsSnapshot", "systemPromptReport"], "rotate_over_bytes": 0,
                      "rotate_keep": 1},
            "orphans": {"archive_after_s": 0},
            "archives": {"delete_after_s": 0},
            "legacy": {"keep_records": 1, "slim": "aggressive"},
            "locks": {"remove_stale": True},
            "temp": {"remove_after_s": 0},
        },
    }


def run_agent(argv: list[str], python: str = sys.executable) -> tuple[int, dict, str, str]:
    try:
        done = subprocess.run([python, *argv], capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the agent hung (no answer within {TIMEOUT_S}s): {argv}") from exc
    out, err = done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err[-3000:]
    assert done.returncode in (0, 1), f"exit {done.returncode}: {err[-2000:]}"
    result = json.loads(out)
    assert result["error"] is None or "internal error" not in result["error"], result["error"]
    return done.returncode, result, out, err


def findings_text(result: dict, target: str | None) -> str:
    """Everything the result says about `target` (or about anything, when target is None)."""
    def about(path):
        return target is None or path == target or (path or "").startswith(target + "/")

    parts = [json.dumps([r for r in result["files"] if about(r["path"])], ensure_ascii=False),
             json.dumps([h for h in result["health"] if about(h.get("path"))], ensure_ascii=False),
             json.dumps([a.get("errors") for a in result["agents"]], ensure_ascii=False),
             str(result.get("error")), str((result.get("backup") or {}).get("error"))]
    return "\n".join(parts).lower()


def assert_expected(words, result, target, label):
    if not words:
        return
    text = findings_text(result, target)
    for word in words:
        assert word.lower() in text, f"{label}: {word!r} not said about {target}:\n{text[:4000]}"


def assert_listed(paths, result, label):
    """Each of `paths` has a record of its own in the result, under exactly that name (a name that
    is not UTF-8 as Python's surrogate escapes of its bytes)."""
    listed = {r["path"] for r in result["files"]}
    for path in paths or ():
        assert path in listed, f"{label}: {path!r} is not reported: {sorted(listed)}"


def assert_no_internal_errors(result):
    text = json.dumps(result)
    assert "internal error" not in text, [r for r in result["files"] if "internal error" in json.dumps(r)] or \
        [a["errors"] for a in result["agents"]]


def assert_backups_private(state: Path):
    backups = state / "fleet-backups" / RUN_ID
    if not backups.is_dir() or backups.is_symlink():
        return
    for folder, dirs, files in os.walk(backups):
        assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700, folder
        for name in files:
            assert stat.S_IMODE(os.lstat(os.path.join(folder, name)).st_mode) == 0o600, name


def backup_shas(state: Path) -> set[str]:
    snap = snapshot(state / "fleet-backups") if (state / "fleet-backups").is_dir() else {}
    return {v[6] for v in snap.values() if v[0] == "file"}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_corpus_case(case, agent_pyz, tmp_path):
    root = tmp_path / "root"
    state, outside, keep = build_case(case, root)
    try:
        _check_case(case, agent_pyz, root, state, outside, tmp_path)
    finally:
        for obj in keep:
            obj.close()


# The cases that lean on the interpreter (recursion limits, float parsing, O_NONBLOCK, special
# files) once more under the oldest Python >= 3.8 this machine has (3.8 where pyenv is; on a fresh
# Debian 12, its python3: the syntax promise of 3.8 is checked in tests/hostside/test_agent_py38.py).
OLDEST_PYTHON_CASES = ["transcript-deep-nesting", "legacy-deep-nesting", "trajectory-deep-nesting",
                       "store-huge-float", "store-nan-literal", "transcript-huge-float", "transcript-nan-in-line",
                       "fifo-as-store-lock", "fifo-as-transcript-lock", "chardev-zero-as-lock", "symlink-loop",
                       "transcript-wrong-message-types", "lock-huge-pid", "sessionfile-the-store-itself",
                       "symlink-agents-root", "symlink-backup-dir"]


@pytest.mark.parametrize("name", OLDEST_PYTHON_CASES)
def test_corpus_case_on_oldest_python(name, agent_pyz, tmp_path):
    supported = pythons.supported()
    assert supported, "no Python >= 3.8 found on PATH"
    oldest = supported[0]
    case = next(c for c in CASES if c["name"] == name)
    state, outside, keep = build_case(case, tmp_path / "root")
    try:
        result = _check_case(case, agent_pyz, tmp_path / "root", state, outside, tmp_path, python=oldest.path)
        assert result["host"]["python"] == oldest.says, result["host"]
    finally:
        for obj in keep:
            obj.close()


def _check_case(case, agent_pyz, root, state, outside, tmp_path, python=sys.executable):
    target = case.get("target")
    now_ms = int(time.time() * 1000) + 1000
    before = snapshot(root)
    target_bytes = _small_file_bytes(state / target) if target else None
    passwd_like = open("/etc/passwd", "rb").read().split(b"\n")[0]

    # --- scan: read-only, says what is wrong
    _, scan, scan_out, scan_err = run_agent([str(agent_pyz), "scan", "--state-dir", str(state),
                                             "--now-ms", str(now_ms)], python)
    assert snapshot(root) == before, "a scan changed something"
    assert_no_internal_errors(scan)
    assert_expected(case.get("scan"), scan, target, "scan")
    assert_listed(case.get("reported"), scan, "scan")

    # --- run: everything on
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(eager_plan(state, now_ms)))
    _, result, run_out, run_err = run_agent([str(agent_pyz), "run", "--plan", str(plan)], python)
    after = snapshot(root)
    assert_no_internal_errors(result)
    assert_expected(case.get("run"), result, target, "run")
    assert_listed(case.get("reported"), result, "run")

    # nothing outside the state dir changed, nothing was read through a link
    assert under(after, "outside") == under(before, "outside")
    assert set(after) - set(under(after, "state")) - set(under(after, "outside")) == set()
    for text in (scan_out, scan_err, run_out, run_err):
        assert SECRET not in text
        assert passwd_like.decode() not in text
    assert files_containing(state, SECRET.encode()) == []
    assert files_containing(state, passwd_like) == []

    # the bad file: untouched, or changed only after a verified backup
    untouched = case.get("untouched")
    if untouched is None:
        untouched = [target] if target and case.get("changes", "none") == "none" else []
    for rel in untouched:
        key = os.path.join("state", rel)
        assert under(after, key) == under(before, key), f"{rel} was changed"
    if target and case.get("changes") == "allowed":
        key = os.path.join("state", target)
        old = before.get(key)
        changed = old and old[0] == "file" and after.get(key) != old
        if changed and not _stale_lock_taken_over(result, target, after, key):
            assert old[6] in backup_shas(state), f"{target} changed without a backup of its old bytes"
        trimmed = [r for r in result["files"]
                   if r["path"] == target and r["kind"] == "transcript" and "trim" in r["actions"]]
        if trimmed and target_bytes is not None:
            assert_valid_trim(target_bytes, (state / target).read_bytes())
    for rel in case.get("must_exist") or ():
        assert after.get(os.path.join("state", rel), ("gone",))[0] == "file", f"{rel} is gone"

    # the rest of the fleet still handled; backups private; no temp file left
    if case.get("others_handled", True):
        good = [r for r in result["files"] if r["path"] == "agents/good/sessions/g-1.jsonl"]
        assert good and good[0]["action"] == "trim" and good[0]["error"] is None, good
    assert_backups_private(state)
    leftovers = [k for k in after if ".fleet-" in k and k.endswith(".tmp")]
    assert leftovers == []
    return result


def _stale_lock_taken_over(result, target, after, key) -> bool:
    """OpenClaw's own protocol: a stale store lock whose owner is gone is taken over (removed)."""
    notes = [n for r in result["files"] if r["path"] == target for n in r["notes"]]
    return target.endswith(".lock") and key not in after and any("took over stale store lock" in n for n in notes)


def _small_file_bytes(path: Path) -> bytes | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return path.read_bytes() if stat.S_ISREG(st.st_mode) and st.st_size < (1 << 20) else None


def assert_valid_trim(old: bytes, new: bytes) -> None:
    """What OpenClaw needs of a trimmed transcript: the header byte for byte and first; every later
    line a JSON object whose parentId names an earlier kept line (the first may be null); every
    toolResult after its toolCall; each line's ending kept; a crash fragment kept at the end."""
    old_lines, new_lines = old.splitlines(True), new.splitlines(True)
    assert new_lines[0] == old_lines[0]
    fragment = not old.endswith(b"\n")
    if fragment:
        assert new_lines[-1] == old_lines[-1] and not new.endswith(b"\n")
        new_lines = new_lines[:-1]
    endings = {line[-2:] == b"\r\n" for line in old_lines[:len(old_lines) - fragment]}
    ids, calls = set(), set()
    for number, raw in enumerate(new_lines[1:], 2):
        obj = json.loads(raw)
        assert isinstance(obj, dict), number
        if len(endings) == 1:
            assert (raw[-2:] == b"\r\n") in endings, f"line {number}: line ending changed"
        if number > 2:
            assert obj.get("parentId") in ids, f"line {number}: parent {obj.get('parentId')} not kept"
        ids.add(obj.get("id"))
        message = obj.get("message") if isinstance(obj.get("message"), dict) else {}
        if message.get("role") == "assistant" and isinstance(message.get("content"), list):
            calls.update(b.get("id") for b in message["content"] if isinstance(b, dict) and b.get("type") == "toolCall")
        if message.get("role") == "toolResult":
            assert message.get("toolCallId") in calls, f"line {number}: toolResult without its toolCall"
