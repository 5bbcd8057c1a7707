"""Shared by the crash tests and bench/crash_loop.py: a state dir where every operation has work,
the real exported agent run as a subprocess (optionally killed at write step N), and the check
that nothing was lost.

The agent's fault hook (fleet/hostside/fsutil.py `_FaultPoints`): with $FLEET_AGENT_FAULT_LOG every
write step appends "N PHASE STEP" to a file; with $FLEET_AGENT_FAULT_AT=N the agent SIGKILLs itself
at step N. Steps are counted in the same order on every run of the same plan on the same files, so
one logging run enumerates them all and each crash run dies at a known one.

"Whole" (`check_whole`) means, for every file the state dir held before the run (backups aside):
- byte-identical, or
- changed, archived or deleted, and a verified copy of its original bytes sits in a run's backup
  folder at its own relative path (`.N` for a second copy), never only a `.part`; and what is at
  its path now is a complete new version: a store that parses and holds a subset of the original
  entries (bulky fields stripped), a transcript with the original header whose lines are, by id, a
  subsequence of the original's, a trajectory whose lines are original lines in order.
New files may only be: archives (`<file>.deleted.<ts>`, the rotation's `sessions.json.bak.<ms>`)
holding an original's exact bytes or a complete new version of it, fleet's own temp files `.<name>.fleet-<pid>.tmp` (leftovers the
next run must handle), the store lock fleet takes and the host's run lock (`.fleet-run.lock`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fleet.control.bundle import export_agent
from fleet.demo.gen import KB, HostSpec, generate_host, tiny_agent

GEN_NOW_MS = 1_795_000_000_000      # the clock the generated data is relative to
DAY_MS = 86_400_000
STRIP = ("skillsSnapshot", "systemPromptReport")
RUN_ID = "20261118T060000Z-crash1"
FOLLOW_UP_RUN_ID = "20261118T060100Z-crash2"
FLEET_TMP_RE = re.compile(r"^\..+\.fleet-(\d+)\.tmp$")
REQUIRED_PHASES = ("backup", "trim", "prune", "archive", "rotate")


def build_state(state_dir: Path, *, scale: int = 1, seed: int = 7) -> Path:
    """A generated host where a plan from `plan_for` trims, slims, prunes, strips, archives removed
    sessions and orphans, expires archives, rotates the store, caps trajectories and removes temps.

    scale 1: one agent of ~150 KB (CI). Larger scales add agents and sessions (bench)."""
    agents = [tiny_agent("main", 48 * KB * scale, 60 * scale, trajectory_runs=3, n_orphans=2 + scale,
                         n_archives=2 + scale, side_kb=(4, 14))]
    for i in range(1, scale):
        mix = {"main": 1, "direct": 2, "group": 1, "cron_job": 1, "cron_run": 6 * scale, "subagent": 2,
               "heartbeat": 1, "hook": 1}
        agents.append(tiny_agent(f"agent{i}", 40 * KB * scale, 50 * scale, key_mix=mix, trajectory_runs=2,
                                 n_orphans=3, n_archives=3))
    generate_host(state_dir, HostSpec("crash", tuple(agents)), seed, GEN_NOW_MS)
    for agent in agents:
        sessions = state_dir / "agents" / agent.agent_id / "sessions"
        # Two older rotation copies: the rotation (keep 2) deletes the oldest.
        for age in (3, 2):
            old = sessions / f"sessions.json.bak.{GEN_NOW_MS - age * DAY_MS}"
            old.write_bytes(b'{"agent:%s:main": {"sessionId": "old-%d", "updatedAt": 1}}\n'
                            % (agent.agent_id.encode(), age))
            old.chmod(0o600)
    return state_dir


def plan_for(state_dir: Path, run_id: str = RUN_ID, now_ms: int = GEN_NOW_MS) -> dict:
    """A plan under which every operation has something to do on `build_state`'s files."""
    return {
        "protocol": 1, "mode": "run", "run_id": run_id, "now_ms": now_ms, "dry_run": False,
        "state_dir": str(state_dir), "agents": None,
        "backup": {"dir": None, "gzip": False, "keep_runs": 10, "max_age_s": None},
        "operations": {
            "transcripts": {"tiers": [{"over_bytes": 6 * KB, "keep_records": 4, "slim": None},
                                      {"over_bytes": 20 * KB, "keep_records": 20, "slim": "tool-output"}],
                            "tool_output_limit_bytes": 512, "untouched_turns": 2},
            "trajectories": {"keep_runs": 1, "max_age_s": None},
            "store": {"prune": {"cron_run": 86400, "subagent": 86400, "heartbeat": 86400, "acp": 86400,
                                "dashboard": 86400, "probe": 86400, "hook": 86400, "dreaming": 86400},
                      "strip_fields": list(STRIP), "rotate_over_bytes": 1024, "rotate_keep": 2},
            "orphans": {"archive_after_s": 86400},
            "archives": {"delete_after_s": 30 * 86400},
            "temp": {"remove_after_s": 1800},
            "locks": {"remove_stale": True},
        },
    }


@dataclass
class AgentExit:
    code: int
    result: Optional[dict]
    stderr: str


def export(tmp: Path) -> Path:
    path = tmp / "fleet-agent.pyz"
    export_agent(path)
    return path


def run_agent(agent: Path, plan: dict, plan_path: Path, *, fault_at: int = 0,
              fault_log: Optional[Path] = None, timeout: float = 120) -> AgentExit:
    """Run the exported agent on `plan` in a fresh process; fault_at=N kills it at write step N."""
    plan_path.write_text(json.dumps(plan))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_AGENT_FAULT")}
    if fault_at:
        env["FLEET_AGENT_FAULT_AT"] = str(fault_at)
    if fault_log is not None:
        env["FLEET_AGENT_FAULT_LOG"] = str(fault_log)
    done = subprocess.run([sys.executable, "-E", "-s", str(agent), "run", "--plan", str(plan_path)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    result = None
    if done.stdout.strip():
        result = json.loads(done.stdout)
    return AgentExit(done.returncode, result, done.stderr)


@dataclass(frozen=True)
class Step:
    number: int
    phase: str
    name: str


def read_steps(log: Path) -> List[Step]:
    steps = []
    for line in log.read_text().splitlines():
        number, phase, name = line.split(" ", 2)
        steps.append(Step(int(number), phase, name))
    return steps


def pick_points(steps: Sequence[Step], count: int) -> List[int]:
    """About `count` step numbers spread over every phase: each (phase, step name) pair at least
    once, each phase's first and last step, the rest evenly spaced over the whole run."""
    chosen = set()
    seen = {}
    for s in steps:
        seen.setdefault((s.phase, s.name), s.number)
    chosen.update(seen.values())
    by_phase: Dict[str, List[int]] = {}
    for s in steps:
        by_phase.setdefault(s.phase, []).append(s.number)
    for numbers in by_phase.values():
        chosen.update((numbers[0], numbers[-1]))
    rest = [s.number for s in steps if s.number not in chosen]
    room = count - len(chosen)
    if room > 0 and rest:
        stride = len(rest) / float(room)
        chosen.update(rest[int(i * stride)] for i in range(min(room, len(rest))))
    return sorted(chosen)


def snapshot(state_dir: Path) -> Dict[str, bytes]:
    """rel path -> bytes of every regular file under the state dir, fleet's backups aside."""
    out = {}
    for folder, dirs, files in os.walk(state_dir):
        rel_folder = os.path.relpath(folder, state_dir)
        if rel_folder == "fleet-backups" or rel_folder.startswith("fleet-backups" + os.sep):
            dirs[:] = []
            continue
        for name in files:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path):
                out[os.path.normpath(os.path.join(rel_folder, name))] = Path(path).read_bytes()
    return out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def backup_copies(state_dir: Path) -> Dict[str, List[str]]:
    """rel path (as backed up) -> sha256 of each complete copy in any run's backup folder."""
    root = state_dir / "fleet-backups"
    out: Dict[str, List[str]] = {}
    if not root.is_dir():
        return out
    for run in sorted(root.iterdir()):
        for folder, _dirs, files in os.walk(run):
            for name in files:
                if name.endswith(".part"):
                    continue
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, run)
                base = re.sub(r"\.\d+$", "", rel)
                data = Path(path).read_bytes()
                out.setdefault(rel, []).append(sha(data))
                if base != rel:
                    out.setdefault(base, []).append(sha(data))
    return out


def leftovers(state_dir: Path) -> Dict[str, List[str]]:
    """Fleet's own leftovers: temp files in the sessions folders, `.part` files among backups."""
    temps, parts = [], []
    for folder, _dirs, files in os.walk(state_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), state_dir)
            in_backups = rel.startswith("fleet-backups" + os.sep)
            if name.endswith(".part") and in_backups:
                parts.append(rel)
            elif FLEET_TMP_RE.match(name) and not in_backups:
                temps.append(rel)
    return {"temps": sorted(temps), "parts": sorted(parts)}


def _json_lines(data: bytes) -> List[dict]:
    if data and not data.endswith(b"\n"):
        raise AssertionError("does not end with a complete line")
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _subsequence(small: Sequence, big: Sequence) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def _complete_new_version(rel: str, old: bytes, new: bytes) -> Optional[str]:
    """None when `new` is a complete version of `old` that fleet could have written, else why not."""
    name = os.path.basename(rel)
    try:
        if name == "sessions.json":
            before, after = json.loads(old), json.loads(new)
            if not isinstance(after, dict) or not set(after) <= set(before):
                return "store has entries the original did not"
            for key, entry in after.items():
                if entry != {k: v for k, v in before[key].items() if k not in STRIP}:
                    return f"store entry {key} is not the original minus stripped fields"
            return None
        if name.endswith(".trajectory.jsonl"):
            _json_lines(new)
            if not _subsequence(new.splitlines(), old.splitlines()):
                return "trajectory lines are not original lines in order"
            return None
        if name.endswith(".jsonl"):
            old_lines, new_lines = _json_lines(old), _json_lines(new)
            if new.split(b"\n", 1)[0] != old.split(b"\n", 1)[0]:
                return "transcript header changed"
            ids_old = [x.get("id") for x in old_lines[1:]]
            ids_new = [x.get("id") for x in new_lines[1:]]
            if not ids_new or not _subsequence(ids_new, ids_old):
                return "transcript lines are not a subsequence of the original's"
            return None
    except (ValueError, AssertionError) as exc:
        return f"incomplete or invalid: {exc}"
    return "a file fleet never rewrites was changed"


def check_whole(original: Dict[str, bytes], state_dir: Path) -> List[str]:
    """Every way the state dir is not whole (see the module docstring); [] when it is."""
    now = snapshot(state_dir)
    copies = backup_copies(state_dir)
    problems = []
    original_shas = {sha(b) for b in original.values()}
    for rel, old in original.items():
        new = now.get(rel)
        if new == old:
            continue
        lock = rel.endswith(".lock")
        if sha(old) not in copies.get(rel, []) and not lock:
            problems.append(f"{rel}: {'gone' if new is None else 'changed'} without a verified backup")
        if new is not None and not lock:
            why = _complete_new_version(rel, old, new)
            if why:
                problems.append(f"{rel}: {why}")
    for rel, data in now.items():
        if rel in original:
            continue
        name = os.path.basename(rel)
        if FLEET_TMP_RE.match(name) or name == "sessions.json.lock" or rel == ".fleet-run.lock":
            continue        # ... or the host's run lock (fleet/hostside/runlock.py)
        if sha(data) in original_shas and (".deleted." in name or name.startswith("sessions.json.bak.")):
            continue
        # An archive made by a later run holds a version an earlier (crashed) run already wrote.
        source = re.sub(r"\.deleted\.[^/]+$", "", rel) if ".deleted." in name else (
            os.path.join(os.path.dirname(rel), "sessions.json") if name.startswith("sessions.json.bak.") else None)
        if source in original and _complete_new_version(source, original[source], data) is None:
            continue
        problems.append(f"{rel}: unexpected new file")
    return problems


@contextmanager
def fast_dir(fallback: Path):
    """A fresh private folder on tmpfs (/dev/shm) when there is one, else `fallback`; removed after.

    A process killed by SIGKILL loses nothing the kernel already has, so the crash semantics are
    the same on tmpfs, while the agent's many fsyncs cost nothing there (about 5x faster)."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        path = Path(tempfile.mkdtemp(prefix="fleet-crash-", dir="/dev/shm"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    else:
        fallback.mkdir(parents=True, exist_ok=True)
        yield fallback


def copy_state(src: Path, dst: Path) -> Path:
    """A fresh copy of a state dir with the same mtimes (ages of orphans and temps are mtime-based)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


# --- processes frozen by the agent's fault hook (FLEET_AGENT_FAULT_STOP) --------------------

def process_tree(root: int) -> list:
    """`root` and every process descending from it (by /proc's parent pids)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    data = f.read()
                parents[int(name)] = int(data[data.rfind(b")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def stopped(pid: int) -> bool:
    """True when `pid` is frozen by SIGSTOP (state T in /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2:].split()[0] == b"T"


def wait_for(done, what: str, alive=lambda: True, hang_s: float = 120.0):
    """Wait until `done()` gives something true and return it; fail if `alive()` turns false first."""
    deadline = time.monotonic() + hang_s
    while True:
        found = done()
        if found:
            return found
        assert alive() and time.monotonic() < deadline, what
        time.sleep(0.01)


# The playbook of the controller-level reliability tests: every operation has work on build_state's state.
PLAYBOOK = """\
description = "reliability: every operation has work on crashkit's state"

[backup]
keep_runs = 5

[[transcripts.tier]]
over = "6KB"
keep_records = 4

[[transcripts.tier]]
over = "20KB"
keep_records = 20
slim = "tool-output"

[trajectories]
keep_runs = 1

[store]
disposable_after = "24h"
strip_fields = ["skillsSnapshot", "systemPromptReport"]

[orphans]
archive_after = "24h"

[archives]
delete_after = "30d"

[temp]
remove_after = "30m"
"""
