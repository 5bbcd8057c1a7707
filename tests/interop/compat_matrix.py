"""Measure fleet against OpenClaw releases and write docs/compatibility.md (scripts/compat-matrix.sh).

For each release: install it (scripts/install-openclaw.sh), let it write genuine aged data
(aged.py: disposable sessions 13 days old, a main session of today, mock model), then on private
copies of that data, through the real `fleet` CLI with OpenClaw on PATH:
- scan: the host is ok, no file error, no unknown-schema warning;
- weekly --dry-run, then weekly: the dry run's per-file numbers equal the run's; OpenClaw then
  lists exactly main and the topic (the disposable sessions are gone, the protected kept);
- restore of that run (forced: OpenClaw is asked for its list in between): OpenClaw lists again
  what it listed before;
- beside it, OpenClaw's own `sessions cleanup --enforce` on another copy: bytes freed on disk
  under agents/, sessions removed, time.
Usage: python tests/interop/compat_matrix.py OUT.md VERSION... (run from the repository root), in
priority order. Resumable: the rows already in OUT.md are kept and those releases skipped
(compat_table.py); OUT.md is rewritten after every release, so the table grows as the run goes.

Main turns: the SQLite era (2026.8+) is measured on the issue's "Done when" data, a main session of
26 turns; the JSON era on 6 (a release costs about a minute less; the JSON-era trim is measured on
26 turns by 2026.7.1's row). FLEET_COMPAT_MAIN_TURNS sets one count for all. The count is a column.
"""
import contextlib
import fcntl
import json
import shutil
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aged  # noqa: E402
import compat_table  # noqa: E402
import genuine  # noqa: E402
from genuine import OpenClaw  # noqa: E402

DB = "agents/main/agent/openclaw-agent.sqlite"
SQLITE_ERA = (2026, 8)


def main_turns(version):
    if os.environ.get("FLEET_COMPAT_MAIN_TURNS"):
        return int(os.environ["FLEET_COMPAT_MAIN_TURNS"])
    return 26 if compat_table.version_key(version)[:2] >= SQLITE_ERA else 6


def fleet(work, *args):
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "fleet"] + list(args), capture_output=True, text=True, timeout=1800,
                          cwd=str(work), env=dict(os.environ, FLEET_STATE_DIR=str(work / "fleet-state")))
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = None
    return proc, doc, time.time() - start


def agent_bytes(state):
    return sum(p.stat().st_size for p in (state / "agents").rglob("*") if p.is_file())


def listing(openclaw):
    return {s["key"]: s["sessionId"] for s in openclaw.sessions()["sessions"]}


def measure(version, work):
    t0 = time.time()
    node, pkgs = genuine.install(version)
    pkg = pkgs[version]
    t1 = time.time()
    cached = aged.aged_state(version, node, pkg, main_turns(version))
    # Where a release's time goes (printed with the row, not in the table): install, data, fleet + OpenClaw checks.
    row = {"version": version, "turns": str(main_turns(version)),
           "seconds": {"install": round(t1 - t0), "data": round(time.time() - t1), "start": time.time()}}
    db = cached / DB
    if db.is_file():
        conn = sqlite3.connect("file:%s?immutable=1" % db, uri=True)
        row["format"], row["schema"] = "SQLite", str(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.close()
    else:
        row["format"], row["schema"] = "JSON", "sessions.json"
    bin_dir = work / "bin"
    bin_dir.mkdir()
    (bin_dir / "openclaw").write_text('#!/bin/sh\nexec "%s" "%s" "$@"\n' % (node, pkg / "openclaw.mjs"))
    (bin_dir / "openclaw").chmod(0o755)
    os.environ["PATH"] = "%s:%s" % (bin_dir, os.environ["PATH"])
    state = genuine.copy_state(cached, work / "state")
    openclaw = OpenClaw(node, pkg, state)
    inventory = work / "inventory.toml"
    inventory.write_text('[hosts.genuine]\nconnection = "local"\nstate_dir = "%s"\n' % state)
    before = listing(openclaw)
    _p, scan, _t = fleet(work, "scan", "-i", str(inventory), "--json")
    host = scan["hosts"][0] if scan else {"ok": False, "error": _p.stderr[-200:], "files": [], "health": []}
    bad = [h["detail"] for h in host["health"] if h["check"] in ("sqlite-schema", "sqlite-unreadable")]
    errs = [f["error"] for f in host["files"] if f["error"]]
    row["scan"] = "FAILED: %s" % host["error"] if not host["ok"] else (
        "warning: %s" % bad[0][:80] if bad else ("file errors: %d" % len(errs) if errs else "ok"))
    bytes_before = agent_bytes(state)
    db_before = sum((state / (DB + x)).stat().st_size for x in ("", "-wal") if (state / (DB + x)).exists())
    _p, dry, _t = fleet(work, "run", "weekly", "-i", str(inventory), "--dry-run", "--json")
    _p, run, elapsed = fleet(work, "run", "weekly", "-i", str(inventory), "--json")
    if not run or not run["hosts"][0]["ok"]:
        row["run"] = "FAILED: %s" % ((run or {}).get("hosts", [{}])[0].get("error") or _p.stderr[-200:])
        row["dry run"] = row["restore"] = "-"
        return row
    def key(f):
        return (f["path"], f["action"], f["before"]["bytes"], f["before"]["records"], f["after"]["bytes"],
                f["after"]["records"])
    # The -shm (SQLite's shared-memory WAL index, no data) and an empty -wal are deleted by SQLite
    # when the last connection closes (OpenClaw's own --dry-run during fleet's dry run does that):
    # they are compared only when both runs found them.
    def comparable(files, other):
        paths = {f["path"] for f in other}
        return {key(f) for f in files if not f["path"].endswith(("-shm", "-wal")) or f["path"] in paths}
    dry_all = dry["hosts"][0]["files"] if dry else []
    run_all = run["hosts"][0]["files"]
    dry_files, run_files = comparable(dry_all, run_all), comparable(run_all, dry_all)
    differ = sorted({k[0].rsplit("/", 1)[-1] for k in dry_files ^ run_files})
    row["dry run"] = "exact" if not differ else "differs on: %s" % ", ".join(differ)
    after = listing(openclaw)
    kept_ok = set(after) == set(aged.KEPT_KEYS)
    not_done = sorted({h["detail"].split(" not done")[0] for h in run["hosts"][0]["health"]
                       if h["check"] == "sqlite-not-done"})
    freed = bytes_before - agent_bytes(state)
    db_after = sum((state / (DB + x)).stat().st_size for x in ("", "-wal") if (state / (DB + x)).exists())
    row["run"] = "%s; %d of %d sessions pruned; %s freed under agents/ (%.0f %%)%s in %.0f s%s" % (
        "ok" if kept_ok else "kept %s" % sorted(after), len(before) - len(after), len(before),
        human(freed), 100.0 * freed / max(1, bytes_before),
        "; database + WAL %s -> %s (-%.0f %%)" % (human(db_before), human(db_after),
                                                  100.0 * (db_before - db_after) / db_before) if db_before else "",
        elapsed,
        "; not done: %s" % ", ".join(not_done) if not_done else "")
    _p, restored, _t = fleet(work, "restore", run["run_id"], "-i", str(inventory), "--force", "--json")
    errors = [f["error"] for f in (restored or {"hosts": [{"files": []}]})["hosts"][0]["files"] if f["error"]]
    row["restore"] = "ok" if restored and not errors and listing(openclaw) == before else \
        "FAILED: %s" % ("; ".join(errors)[:120] or _p.stderr[-120:])
    own = genuine.copy_state(cached, work / "own")
    own_before, start = agent_bytes(own), time.time()
    own_oc = OpenClaw(node, pkg, own)
    args = ["sessions", "cleanup", "--enforce", "--json"] + (["--store", str(own / DB)] if (own / DB).is_file() else [])
    own_oc.run(*args, check=False)
    row["openclaw cleanup"] = "%d sessions removed, %s freed (%.0f %%) in %.0f s" % (
        len(before) - len(listing(own_oc)), human(own_before - agent_bytes(own)),
        100.0 * (own_before - agent_bytes(own)) / max(1, own_before), time.time() - start)
    return row


def human(n):
    return "%.2f MB" % (n / 1048576.0) if abs(n) >= 1048576 else "%.0f KB" % (n / 1024.0)


HEADER = """# Compatibility with OpenClaw releases

Measured by `scripts/compat-matrix.sh` on genuine data each release wrote itself (real
`openclaw agent --local` turns against a local mock model; a cron run, a subagent and a Telegram
topic written 13 days ago, a heartbeat and a main session of "main turns" turns today), through the
real `fleet` CLI with OpenClaw on PATH and nothing in the inventory but the state dir. Every cell is
measured; a release without a row was not measured (see "Not measured yet" below).

- **scan**: the host is ok, no file error, no unknown-schema warning;
- **dry run**: `weekly --dry-run`'s per-file numbers compared with the real `weekly`'s (SQLite's `-shm`
  index and an empty `-wal` only when both runs found them: SQLite deletes them when the last
  connection closes);
- **run**: `weekly`; "ok" = OpenClaw then lists exactly main, the topic and the heartbeat; bytes freed
  under `agents/` (2026.9.x also keeps ~0.3 MB of `memory-reindex` scratch databases per turn there,
  which fleet reports and leaves alone) and, on the SQLite era, of the agent database + WAL;
  steps reported as not done (`sqlite-not-done`) are named. A row with "3 of 5 sessions pruned" was
  measured (2026-12-04) on the earlier data set, whose heartbeat was 13 days old too and pruned; today's
  data writes the heartbeat now, and weekly keeps it ("2 of 5");
- **restore**: `fleet restore <run> --force`; "ok" = OpenClaw lists again what it listed before;
- **openclaw cleanup**: OpenClaw's own `sessions cleanup --enforce` (its default settings) on another
  copy of the same data, for comparison.

Releases: every stable version `npm view openclaw versions --json` lists from 2026.2 on; stable =
exactly `YEAR.MONTH.PATCH` (no `-beta.N`, no `-N` rebuild suffix). Measured in priority order: the
SQLite era first, then the newest release of each JSON-era month, then the rest, newest first.

SQLite-era schemas by release (`OPENCLAW_AGENT_SCHEMA_VERSION` in each published package): 19 =
2026.8.1, 8.2, 9.1 - 9.4; 21 = 2026.9.5; 23 = 2026.9.6. fleet reads all three and, on each, prunes
through OpenClaw's own cleanup (by an OpenClaw of the same schema), trims transcript tiers through
OpenClaw's own transcript trim and strips entry fields through OpenClaw's own entry update (both
loaded with the host's Node from the OpenClaw it found), and caps trajectories (the cap's direct
delete is proved per schema by OpenClaw's own checks: listing, `doctor --lint`, integrity, a further
turn). Any other schema is scanned for sizes only, with one warning, and never changed.
"""


@contextlib.contextmanager
def bench_lock():
    """flock(FLEET_COMPAT_LOCK) for one release's measurement, when set (two benches never overlap)."""
    name = os.environ.get("FLEET_COMPAT_LOCK")
    if not name:
        yield
        return
    with open(name, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


AHEAD = 2


def install_ahead(versions):
    """Install the next releases in the background (npm is mostly waiting on the network); the Popen list."""
    script = str(Path(__file__).resolve().parents[2] / "scripts" / "install-openclaw.sh")
    return [subprocess.Popen(["nice", "-n", "15", script, v], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for v in versions]


def main(argv):
    out, versions = Path(argv[0]), argv[1:]
    installed_before = {p.name for p in genuine.CACHE.glob("openclaw-*")} if genuine.CACHE.is_dir() else set()
    rows = compat_table.read_rows(out)
    pending = {v: "" for v in versions if v not in rows}
    command = "scripts/compat-matrix.sh" if len(versions) > 12 else "scripts/compat-matrix.sh %s" % " ".join(versions)
    out.write_text(compat_table.render(HEADER, rows, pending, command))
    todo = [v for v in versions if v in pending]
    for i, version in enumerate(todo):
        ahead = install_ahead(todo[i + 1:i + 1 + AHEAD])
        with tempfile.TemporaryDirectory(prefix="fleet-compat-") as tmp:
            path_before = os.environ["PATH"]
            start = time.time()
            try:
                with bench_lock():
                    rows[version] = measure(version, Path(tmp))
                del pending[version]
            except Exception as exc:  # one release failing to install or build must not hide the others
                pending[version] = "measurement could not start: %s: %s" % (type(exc).__name__,
                                                                            " ".join(str(exc).split())[-200:])
            finally:
                os.environ["PATH"] = path_before
        for proc in ahead:
            proc.wait()
        if "openclaw-%s" % version not in installed_before and not os.environ.get("FLEET_COMPAT_KEEP_INSTALLS"):
            shutil.rmtree(str(genuine.CACHE / ("openclaw-%s" % version)), ignore_errors=True)
        row = dict(rows.get(version) or {"version": version, "error": pending.get(version)})
        if isinstance(row.get("seconds"), dict):
            row["seconds"]["checks"] = round(time.time() - row["seconds"].pop("start"))
        row["total_seconds"] = round(time.time() - start)
        print(json.dumps(row), flush=True)
        out.write_text(compat_table.render(HEADER, rows, pending, command))


if __name__ == "__main__":
    main(sys.argv[1:])
