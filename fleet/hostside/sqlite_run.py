"""Changes to a SQLite-era agent database (plan section `operations.sqlite`), see sqlite_era.py.

A verified online backup first (`Connection.backup`: a consistent snapshot while OpenClaw writes,
WAL included; the copy must pass `quick_check`, its sha256 is recorded), then OpenClaw's own
`<openclaw_cmd> sessions cleanup --store <db> --enforce --json` (OpenClaw keeps its tables,
triggers and indexes consistent; fleet runs no SQL of its own on OpenClaw's rows), then
`PRAGMA wal_checkpoint(TRUNCATE)`, and `VACUUM` only when the plan says the gateway is stopped.
Without `openclaw_cmd` nothing is changed; a dry run only asks OpenClaw's `--dry-run`.
"""
import hashlib
import json
import os
import sqlite3
import subprocess

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover
    from urllib import quote

from .context import stats
from .fsutil import BackupError, FileError, makedirs_private
from .sqlite_era import (AGENT_DB, BUSY_TIMEOUT_S, SQLITE_DEFAULTS, _size, agent_databases, connect, inspect,
                         open_readonly, quick_check, scan_agent, session_records)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def backup_database(path, target):
    """SQLite online backup of `path` into `target` (0600, parent 0700), verified.

    Consistent while OpenClaw writes (the backup API copies a snapshot, WAL included). The copy
    must pass `quick_check`; returns {"path", "sha256", "bytes", "stored_bytes"} like BackupStore.
    """
    makedirs_private(os.path.dirname(target))
    tmp = "%s.%d.part" % (target, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        src, _how = open_readonly(path)
        try:
            dst = connect("file:%s" % quote(os.path.abspath(tmp)))
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")
                verdict = quick_check(dst)
            finally:
                dst.close()
        finally:
            src.close()
        if verdict != "ok":
            raise BackupError("backup of %s failed quick_check: %s" % (AGENT_DB, verdict))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.rename(tmp, target)
    except (OSError, sqlite3.Error) as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, BackupError):
            raise
        raise BackupError("online backup of %s failed: %s" % (AGENT_DB, exc))
    size = os.stat(target).st_size
    return {"path": target, "sha256": sha256_file(target), "bytes": size, "stored_bytes": size}


def _openclaw(cfg, state_dir, args):
    env = dict(os.environ, OPENCLAW_STATE_DIR=state_dir, NO_COLOR="1")
    proc = subprocess.run(list(cfg["openclaw_cmd"]) + list(args), env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=cfg["timeout_s"])
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise FileError("openclaw %s exited %d: %s" % (" ".join(args), proc.returncode,
                                                       (proc.stderr.decode("utf-8", "replace") or out)[-400:].strip()))
    start = out.find("{")
    try:
        return json.loads(out[start:]) if start >= 0 else {}
    except ValueError:
        return {"output": out[-400:]}


def _writable(path):
    conn = connect("file:%s?mode=rw" % quote(os.path.abspath(path)))
    conn.execute("PRAGMA busy_timeout = %d" % int(BUSY_TIMEOUT_S * 1000))
    return conn


def cap_trajectories(path, keep_runs):
    """Delete each session's trajectory events older than its last `keep_runs` runs; returns the count.

    The one direct change fleet makes, proved by tests/interop on genuine 2026.9.6 data (OpenClaw
    lists the same sessions, `doctor --lint` finds nothing new, further turns append traces): it is
    the delete OpenClaw's own trajectory bound runs (`session_id = ? AND seq <= ?`) on a table with
    no triggers, only its primary key and one index, and whole runs go (a run cut in the middle is
    worse than none). One write transaction (BEGIN IMMEDIATE, busy timeout) beside a live gateway.
    """
    conn = _writable(path)
    removed = 0
    try:
        conn.execute("BEGIN IMMEDIATE")
        starts = {}
        for sid, run_id, first in conn.execute(
                "SELECT session_id, run_id, MIN(seq) FROM trajectory_runtime_events WHERE run_id IS NOT NULL "
                "GROUP BY session_id, run_id"):
            starts.setdefault(sid, []).append(first)
        for sid, firsts in starts.items():
            if len(firsts) <= keep_runs:
                continue
            keep_from = sorted(firsts)[-keep_runs]
            removed += conn.execute("DELETE FROM trajectory_runtime_events WHERE session_id = ? AND seq < ?",
                                    (sid, keep_from)).rowcount
        conn.execute("COMMIT")
    except sqlite3.Error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    return removed


def clean_database(ctx, af, cfg, records):
    """The plan's `sqlite` section on one SQLite-era agent; returns the agent's records.

    Nothing happens without `openclaw_cmd` (a note says so). A dry run asks OpenClaw's
    `--dry-run` and changes nothing. The database's record carries the backup and the actions;
    its `after` is the file's size after the run, the per-session records are re-read.
    """
    cfg = dict(SQLITE_DEFAULTS, **(cfg or {}))
    db_info = agent_databases(af)
    if db_info is None:
        return records, []
    db_rel = db_info.rel
    if not cfg["openclaw_cmd"]:
        return records, ["SQLite era: no openclaw command in the plan (operations.sqlite.openclaw_cmd); "
                         "nothing changed"]
    if ctx.dry_run:
        preview = _openclaw(cfg, ctx.state_dir, ["sessions", "cleanup", "--store", db_info.path, "--dry-run",
                                                 "--enforce", "--json"])
        return records, ["dry run: openclaw sessions cleanup --dry-run says: %s" % _summary(preview)]
    target = ctx.backups.target_for(db_rel)
    backup = backup_database(db_info.path, target)
    ctx.backups.stored_bytes += backup["stored_bytes"]
    actions, notes = [], ["verified online backup (quick_check ok, sha256 %s)" % backup["sha256"][:16]]
    if cfg["cleanup"]:
        out = _openclaw(cfg, ctx.state_dir, ["sessions", "cleanup", "--store", db_info.path, "--enforce", "--json"])
        actions.append("prune")
        notes.append("openclaw sessions cleanup: %s" % _summary(out))
    if cfg["trajectory_keep_runs"]:
        removed = cap_trajectories(db_info.path, cfg["trajectory_keep_runs"])
        if removed:
            actions.append("trim")
        notes.append("trajectories capped to the last %d runs per session: %d events removed"
                     % (cfg["trajectory_keep_runs"], removed))
    if cfg["checkpoint"] or (cfg["vacuum"] and cfg["gateway_stopped"]):
        conn = _writable(db_info.path)
        try:
            if cfg["checkpoint"]:
                busy, log, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                notes.append("WAL checkpoint (TRUNCATE): %s" % ("busy, retried next run" if busy else "done"))
            if cfg["vacuum"] and cfg["gateway_stopped"]:
                conn.execute("VACUUM")
                actions.append("repair")
                notes.append("VACUUM (the plan says the gateway is stopped)")
        finally:
            conn.close()
    elif cfg["vacuum"]:
        notes.append("VACUUM skipped: the plan does not say the gateway is stopped")
    before = {r["path"]: r for r in records}
    after_info = inspect(db_info.path)
    db, recs = session_records(af, after_info, db_rel, _size(db_info.path))
    out = []
    for rec in [db] + recs:
        old = before.pop(rec["path"], None)
        rec["before"] = old["before"] if old is not None else stats(0, 0)
        if rec["kind"] == "trajectory" and rec["after"]["records"] < rec["before"]["records"]:
            rec["action"], rec["actions"] = "trim", ["trim"]
        out.append(rec)
    for path, old in before.items():
        if path.startswith(db_rel + "#"):
            gone = dict(old, after=stats(0, 0), action="delete", actions=["delete"],
                        notes=list(old.get("notes") or []) + ["removed by openclaw sessions cleanup"])
            out.append(gone)
        else:
            out.append(old)
    db["action"] = actions[0] if actions else "none"
    db["actions"] = actions
    db["backup"], db["backup_sha256"] = backup["path"], backup["sha256"]
    # The file's own sha256 after the run: `fleet restore` refuses to put the backup back over a
    # database OpenClaw has written to since (its WAL would no longer match), unless forced.
    db["after"]["sha256"] = sha256_file(db_info.path)
    db["notes"] = notes + db["notes"]
    af.sqlite_entries = after_info["entries"]
    return out, []


def _summary(doc):
    if not isinstance(doc, dict):
        return str(doc)[:200]
    keep = {k: v for k, v in doc.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return json.dumps(keep, sort_keys=True)[:400]


def run_steps(run, section):
    """The pass of a SQLite-era agent (`run` is runops.AgentWork; `section` the plan's `sqlite`
    section, or None for a note that the plan has none). Every file of the agent gets its record here."""
    from .scan import untouched_record
    af, ctx = run.af, run.ctx
    base = scan_agent(af, [untouched_record(af, info) for info in af.files])
    if section is None:
        run.notes.append("SQLite era: no `sqlite` section in the plan; sessions are left to "
                         "`openclaw sessions cleanup`")
        records = base
    else:
        try:
            records, notes = clean_database(ctx, af, section, base)
            run.notes.extend(notes)
        except (FileError, sqlite3.Error, OSError, subprocess.SubprocessError) as exc:
            records = base
            db = agent_databases(af)
            for rec in records:
                if db is not None and rec["path"] == db.rel:
                    rec["error"] = "SQLite step failed, database left as it was: %s" % exc
    for rec in records:
        info = next((f for f in af.files if f.rel == rec["path"]), None)
        if info is not None and info.kind == "sqlite" and rec["action"] == "none" and not ctx.dry_run:
            rec["after"] = stats(_size(info.path), rec["after"]["records"])  # -wal after a checkpoint
        run.add(rec)
