"""Side by side: OpenClaw's own `openclaw sessions cleanup` and fleet on copies of the same genuine store.

    .venv/bin/python bench/openclaw_cleanup_vs_fleet.py [--hours-later 48]

Genuine data comes from tests/interop/genuine.py (real `openclaw agent --local` turns against the
mock model, cached under ~/.cache/fleet-interop; built on first use, which takes minutes). For each
era, each contender gets its own fresh copy; printed per contender: bytes reclaimed under agents/
(files on disk, SQLite database + WAL included), store entries removed, whether the main session
survived, wall time.

JSON era (2026.7.1): `openclaw sessions cleanup --store <sessions.json> --enforce --json` with OpenClaw's defaults, the same
with `session.maintenance.pruneAfter = "1m"` (so minutes-old genuine sessions count as stale, as
fleet's clock HOURS later makes them), and fleet's `daily-prune` and `weekly` through the real
controller with its clock HOURS later.
SQLite era (2026.8.2 and 2026.9.6, aged data from tests/interop/aged.py: disposable sessions written 13
days ago): `openclaw sessions cleanup --store <db> --enforce --json` with OpenClaw's defaults and
with `pruneAfter = "24h"`, and fleet's `weekly` through the real CLI with OpenClaw found on PATH
(OpenClaw's cleanup with the playbook's age, rehearsed; trajectory cap; space given back).
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
SQLITE_RELEASES = ("2026.8.2", "2026.9.6")


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


def measure(name, cached, work, scratch):
    slot = "%02d-%s" % (len(list(scratch.iterdir())), "".join(c if c.isalnum() else "-" for c in name))
    state = genuine.copy_state(cached, scratch / slot / "state")
    b0, k0 = agents_bytes(state), keys(state)
    t0 = time.monotonic()
    work(state)
    elapsed = time.monotonic() - t0
    k1 = keys(state)
    return name, b0 - agents_bytes(state), len(k0 - k1), genuine.MAIN_KEY in k1, elapsed


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
    parser.add_argument("--hours-later", type=float, default=48.0, help="fleet's clock offset (default 48)")
    args = parser.parse_args()
    node, pkgs = genuine.install(genuine.JSON_ERA)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        scratch = Path(tmp)
        j = genuine.genuine_state(genuine.JSON_ERA, node, pkgs[genuine.JSON_ERA])
        pj = pkgs[genuine.JSON_ERA]
        rows.append(("2026.7.1",) + measure("openclaw cleanup (defaults)", j, openclaw_cleanup(node, pj), scratch))
        rows.append(("2026.7.1",) + measure("openclaw cleanup (pruneAfter 1m)", j,
                                            openclaw_cleanup(node, pj, prune_after="1m"), scratch))
        for playbook in ("daily-prune", "weekly"):
            rows.append(("2026.7.1",) + measure("fleet %s (+%gh)" % (playbook, args.hours_later), j,
                                                fleet_playbook(playbook, args.hours_later), scratch))
        for version in SQLITE_RELEASES:
            node, more = genuine.install(version)
            pv = more[version]
            s = aged.aged_state(version, node, pv, 12)
            rows.append((version,) + measure("openclaw cleanup --store (defaults)", s,
                                             openclaw_cleanup(node, pv, store=True), scratch))
            rows.append((version,) + measure("openclaw cleanup --store (pruneAfter 24h)", s,
                                             openclaw_cleanup(node, pv, prune_after="24h", store=True), scratch))
            rows.append((version,) + measure("fleet weekly (OpenClaw found on PATH)", s,
                                             fleet_playbook("weekly", 0, openclaw_path=(node, pv)), scratch))
    print("%-9s %-48s %16s %16s %10s %9s" % ("openclaw", "contender", "bytes reclaimed", "entries removed",
                                               "main kept", "time s"))
    for version, name, reclaimed, removed, main_kept, elapsed in rows:
        print("%-9s %-48s %16d %16d %10s %9.2f" % (version, name, reclaimed, removed, "yes" if main_kept else "NO",
                                                   elapsed))
    print("bytes reclaimed: files under agents/ (archives fleet keeps in place still count); "
          "fleet's clock is --hours-later ahead, OpenClaw runs now.")


if __name__ == "__main__":
    main()
