"""Side by side: OpenClaw's own `openclaw sessions cleanup` and fleet on copies of the same genuine store.

    flock /work/coord/bench.lock .venv/bin/python bench/openclaw_cleanup_vs_fleet.py [--main-turns 12]

One aged data set per release (tests/interop/aged.py: real `openclaw agent --local` turns against
the mock model; a cron run, a subagent and a topic written 13 days ago by OpenClaw with its clock
shifted, a heartbeat and a main session of MAIN turns today; cached under ~/.cache/fleet-interop,
built on first use, which takes minutes): 2026.7.1 (JSON era), 2026.8.2 (SQLite, schema 19) and
2026.9.6 (SQLite, schema 23). Each contender gets its own fresh copy, clocks are not moved:
- `openclaw sessions cleanup --store <sessions.json or db> --enforce --json` with OpenClaw's defaults;
- the same with `session.maintenance.pruneAfter = "24h"` (the age fleet's weekly prunes at);
- fleet's `weekly` through the real CLI with OpenClaw found on PATH (on the SQLite era: OpenClaw's
  cleanup with the playbook's age, rehearsed; trajectory cap; space given back).
Printed per contender, side by side in one run: bytes freed on disk under agents/, the agent
database + WAL before and after (SQLite era), store entries removed, whether main survived, wall time.
"""
import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "interop"))

import aged  # noqa: E402
import genuine  # noqa: E402
from judge import write_inventory  # noqa: E402

DB = "agents/main/agent/openclaw-agent.sqlite"
RELEASES = ("2026.7.1", "2026.8.2", "2026.9.6")


def agents_bytes(state):
    return sum(p.stat().st_size for p in (state / "agents").rglob("*") if p.is_file() and not p.is_symlink())


def keys(state):
    store = state / "agents/main/sessions/sessions.json"
    if store.is_file():
        return set(json.loads(store.read_text()))
    conn = sqlite3.connect("file:%s?mode=ro" % (state / DB), uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT session_key FROM session_nodes")}
    finally:
        conn.close()


def db_bytes(state):
    return sum((state / (DB + x)).stat().st_size for x in ("", "-wal") if (state / (DB + x)).exists())


def measure(name, cached, work, scratch):
    slot = "%02d-%s" % (len(list(scratch.iterdir())), "".join(c if c.isalnum() else "-" for c in name))
    state = genuine.copy_state(cached, scratch / slot / "state")
    b0, k0, d0 = agents_bytes(state), keys(state), db_bytes(state)
    t0 = time.monotonic()
    work(state)
    elapsed = time.monotonic() - t0
    k1 = keys(state)
    return name, b0 - agents_bytes(state), (d0, db_bytes(state)), len(k0 - k1), genuine.MAIN_KEY in k1, elapsed


def openclaw_cleanup(node, pkg, prune_after=None, store=False):
    def work(state):
        if prune_after:
            config = json.loads((state / "openclaw.json").read_text())
            config["session"] = {"maintenance": {"mode": "enforce", "pruneAfter": prune_after}}
            (state / "openclaw.json").write_text(json.dumps(config, indent=2))
        # --store runs the cleanup in this process (without it, OpenClaw asks a gateway).
        target = state / DB if store else state / "agents/main/sessions/sessions.json"
        args = ["sessions", "cleanup", "--enforce", "--json", "--store", str(target)]
        genuine.OpenClaw(node, pkg, state).run(*args, timeout=600)
    return work


def fleet_playbook(playbook, hours, openclaw_path=None):
    def work(state):
        inventory = write_inventory(state.parent / "inventory.toml", state)
        env = dict(os.environ, FLEET_STATE_DIR=str(state.parent / "fleet-state"))
        if openclaw_path:
            folder = state.parent / "bin"
            folder.mkdir(exist_ok=True)
            (folder / "openclaw").write_text('#!/bin/sh\nexec "%s" "%s" "$@"\n' % (openclaw_path[0],
                                                                                 openclaw_path[1] / "openclaw.mjs"))
            (folder / "openclaw").chmod(0o755)
            env["PATH"] = "%s:%s" % (folder, env["PATH"])
        proc = subprocess.run([sys.executable, str(REPO / "tests/interop/fleet_later.py"), str(hours), "run", playbook,
                               "-i", str(inventory), "--json"], capture_output=True, text=True, env=env,
                              cwd=str(state.parent), timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return work


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--main-turns", type=int, default=12, help="main session turns of the aged data (12)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        scratch = Path(tmp)
        for version in RELEASES:
            node, more = genuine.install(version)
            pv = more[version]
            s = aged.aged_state(version, node, pv, args.main_turns)
            store = (s / DB).is_file()
            rows.append((version,) + measure("openclaw sessions cleanup (defaults)", s,
                                             openclaw_cleanup(node, pv, store=store), scratch))
            rows.append((version,) + measure("openclaw sessions cleanup (pruneAfter 24h)", s,
                                             openclaw_cleanup(node, pv, prune_after="24h", store=store), scratch))
            rows.append((version,) + measure("fleet weekly (OpenClaw found on PATH)", s,
                                             fleet_playbook("weekly", 0, openclaw_path=(node, pv)), scratch))
    print("%-9s %-43s %13s %18s %8s %6s %7s" % ("openclaw", "contender", "agents/ freed", "db+WAL before>after",
                                                 "removed", "main", "time s"))
    for version, name, reclaimed, db, removed, main_kept, elapsed in rows:
        print("%-9s %-43s %13s %18s %8d %6s %7.1f" % (
            version, name, human(reclaimed), "%s>%s" % (human(db[0]), human(db[1])) if db[0] else "-", removed,
            "kept" if main_kept else "LOST", elapsed))
    print("agents/ freed: bytes of the files on disk under agents/ (archives fleet keeps in place still count); "
          "db+WAL: the agent's SQLite database and its -wal; removed: store entries (sessions) removed; "
          "all on copies of one aged data set per release (disposable sessions 13 days old, main %d turns today)."
          % args.main_turns)


def human(n):
    return "%.2f MB" % (n / 1048576.0) if abs(n) >= 1048576 else "%.0f KB" % (n / 1024.0)


if __name__ == "__main__":
    main()
