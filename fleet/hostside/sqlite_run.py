"""Changes to a SQLite-era agent database (plan section `operations.sqlite`), see sqlite_era.py.

A verified online backup first (`Connection.backup`: a consistent snapshot while OpenClaw writes,
WAL included; the copy must pass `quick_check`, its sha256 is recorded), then the steps the plan
asks for, each rehearsed on a copy first (sqlite_clean.py): OpenClaw's own `sessions cleanup`
with the playbook's age, by an OpenClaw found on the host whose release writes the database's
schema (sqlite_schema.py); the trajectory cap, on the schemas where OpenClaw proved it; the space
reclaim (`incremental_vacuum` in short transactions, then a WAL checkpoint). Every step not done
is reported with its reason; an unknown schema is never changed.
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
from .sqlite_clean import (judge_prune, make_work_dir, nodes, openclaw_env, prune_config, reclaim, remove_work_dir,
                           run_openclaw)
from .sqlite_era import (AGENT_DB, BUSY_TIMEOUT_S, _size, agent_databases, connect, connect_path, inspect,
                         open_readonly, quick_check, scan_agent, session_records)
from .sqlite_plan import sqlite_settings, unsupported
from .sqlite_schema import find_openclaw, unknown_schema_message, usable_openclaw
from .sqlite_trim import InUse, apply_strips, apply_trims, openclaw_runtime, over_a_tier, plan_trims, sandbox_env
from .terms import SQLITE_DEFAULTS

# Schemas on which the direct trajectory delete (cap_trajectories) is proved by OpenClaw itself in
# tests/interop: listing, doctor --lint, integrity and a further turn after the cap (2026.8.2, 2026.9.5
# and 2026.9.6). All three declare the same trajectory_runtime_events (no trigger, the primary key and
# one index), and 2026.9.5's own trajectory bound deletes `session_id = ? AND seq <= ?` as 9.6's does.
CAP_PROVED = frozenset([19, 21, 23])


class StepFailed(FileError):
    """One step of OpenClaw's own code failed (`step` names it in the steps, `what` in the report)."""

    def __init__(self, step, what, exc):
        FileError.__init__(self, str(exc))
        self.step, self.what = step, what


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


def _writable(path):
    conn = connect_path(path, "rw")
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


def clean_database(ctx, af, cfg, records, want=None):
    """The plan's `sqlite` section on one SQLite-era agent: (records, notes, not_done).

    `want` is what the plan's other sections ask (sqlite_plan.sqlite_settings): store.prune and
    maintenance's caps go to OpenClaw's own cleanup (its session.maintenance), transcripts.tiers to
    OpenClaw's own transcript trim, store.strip_fields to OpenClaw's own entry update; each needs an
    OpenClaw of the database's schema. Beside them: the trajectory cap (a direct delete proved per
    schema by tests/interop) and the space reclaim. All of them are rehearsed on a copy first
    (sqlite_clean.py); a dry run reports the rehearsal. `not_done` lists (what, why) for every step
    the plan asked for and that was not done; nothing in the database is changed for an unknown schema.
    """
    cfg = dict(SQLITE_DEFAULTS, **(cfg or {}))
    want = dict({"prune": {}, "caps": {}, "tiers": [], "strip_fields": []}, **(want or {}))
    db_info = agent_databases(af)
    if db_info is None:
        return records, [], []
    info = getattr(af, "sqlite_info", None) or {}
    if "error" in info:
        return records, [], [("any change", "the database is not readable: %s" % info["error"])]
    if not info.get("schema_known"):
        return records, [], [("any change", unknown_schema_message(info.get("user_version")))]
    schema = info["user_version"]
    not_done, steps, found = [], {}, {}
    in_use = InUse(ctx.now_ms, cfg["busy_within_s"])

    def openclaw(what, code=False):
        """OpenClaw's command (or, with `code`, its node + dist folder for OpenClaw's own functions)
        for the step `what`, looked up once; None, with the reason in not_done, when there is none."""
        if "cmd" not in found:
            cmd, found["where"] = find_openclaw(cfg["openclaw_cmd"], ctx.state_dir)
            found["why"] = usable_openclaw(cmd, openclaw_env(ctx.state_dir), schema) if cmd else found["where"]
            found["cmd"] = cmd
        if code and not found["why"] and "runtime" not in found:
            found["runtime"], found["why_code"] = openclaw_runtime(found["cmd"])
        why = found["why"] or (found.get("why_code") if code else None)
        if why:
            not_done.append((what, why))
            return None
        return found["runtime"] if code else found["cmd"]

    if cfg["cleanup"] and (want["prune"] or want["caps"]):
        cmd = openclaw("pruning disposable sessions")
        if cmd:
            steps["prune"] = cmd
    over = over_a_tier(info.get("sessions") or {}, want["tiers"])
    if over:
        runtime = openclaw("transcript tiers (%d session(s) over %d bytes)"
                           % (len(over), want["tiers"][0]["over_bytes"]), code=True)
        if runtime:
            steps["trim"] = (runtime, want["tiers"], in_use)
    if want["strip_fields"] and info.get("entries_with_fields"):
        runtime = openclaw("stripping %s" % "/".join(want["strip_fields"]), code=True)
        if runtime:
            steps["strip"] = (runtime, list(want["strip_fields"]), in_use)
    if cfg["trajectory_keep_runs"]:
        if schema in CAP_PROVED:
            steps["cap"] = cfg["trajectory_keep_runs"]
        else:
            not_done.append(("trajectory cap", "the direct trajectory delete is not proved on schema %d "
                             "(proved: %s)" % (schema, ", ".join(str(s) for s in sorted(CAP_PROVED)))))
    if cfg["checkpoint"] and (steps or info.get("free_pages")):
        steps["reclaim"] = True
    if not steps:
        return records, [], not_done
    notes = ["OpenClaw from %s" % found["where"]] if {"prune", "trim", "strip"} & set(steps) else []
    # Beside the host's backups (a controller-side backup store has no folder on the host).
    work = make_work_dir(getattr(ctx.backups, "root", None) or os.path.join(ctx.state_dir, "fleet-backups", ctx.run_id))
    try:
        result = _rehearse_and_apply(ctx, af, db_info, cfg, steps, want, work, records, notes, not_done)
    finally:
        remove_work_dir(work)
    return result


def _apply(steps, path, env, cfg, not_done, agent=None, work=None):
    """Run `steps` on the database at `path` with OpenClaw's environment `env`; returns notes (a
    reclaim that could not be done, or a session a tier cannot trim, is added to `not_done`)."""
    notes = []
    if "prune" in steps:
        out = run_openclaw(steps["prune"], env, ["sessions", "cleanup", "--store", path, "--enforce", "--json"],
                           cfg["timeout_s"])
        notes.append("openclaw sessions cleanup: %s" % _summary(out))
    if "trim" in steps:
        runtime, tiers, in_use = steps["trim"]
        trims, skipped = plan_trims(path, inspect(path)["sessions"], tiers, in_use)
        not_done.extend(skipped)
        try:
            notes.extend(apply_trims(runtime, path, agent, trims, env, work, cfg["timeout_s"]))
        except FileError as exc:
            raise StepFailed("trim", "transcript tiers", exc)
    if "strip" in steps:
        runtime, fields, in_use = steps["strip"]
        try:
            notes.extend(apply_strips(runtime, path, agent, fields, env, work, cfg["timeout_s"], in_use))
        except FileError as exc:
            raise StepFailed("strip", "stripping %s" % "/".join(fields), exc)
    if "cap" in steps:
        removed = cap_trajectories(path, steps["cap"])
        notes.append("trajectories capped to the last %d runs per session: %d events removed" % (steps["cap"], removed))
    if "reclaim" in steps:
        said, done = reclaim(path)
        notes.extend(said)
        if not done:
            not_done.append(("giving space back", said[-1]))
    return notes


def _rehearse(ctx, af, db_info, cfg, steps, want, work, env, not_done):
    """(notes, session keys the prune removes, steps skipped) of the steps on a copy of the database.

    OpenClaw runs there with a scratch state folder (it records every database it opens in its own
    state database; the user's must not learn of the copy). A step that fails or is judged wrong
    on the copy is dropped from `steps` (reason in `not_done`) and the rehearsal starts again."""
    copy = os.path.join(work, AGENT_DB)
    sandbox = sandbox_env(env, work, env.get("OPENCLAW_CONFIG_PATH") or os.path.join(ctx.state_dir, "openclaw.json"))
    while True:
        # A new copy each time, without the last rehearsal's -wal/-shm (SQLite would read them as its own).
        for leftover in (copy, copy + "-wal", copy + "-shm", copy + "-journal"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        backup_database(db_info.path, copy)
        before_nodes = nodes(copy)
        skipped = []
        try:
            rehearsal = _apply(steps, copy, sandbox, cfg, skipped, agent=af.agent, work=work)
        except StepFailed as exc:
            not_done.append((exc.what, "it failed on a copy of the database, so it was not run: %s" % exc))
            del steps[exc.step]
            continue
        if "prune" not in steps:
            return rehearsal, [], skipped
        predicted, why = judge_prune(before_nodes, nodes(copy), want["prune"], ctx.now_ms, want["caps"])
        if not why:
            return rehearsal, predicted, skipped
        # The rehearsal is void: do it again without OpenClaw's cleanup.
        not_done.append(("pruning disposable sessions", why))
        del steps["prune"]


def _rehearse_and_apply(ctx, af, db_info, cfg, steps, want, work, records, notes, not_done):
    env = openclaw_env(ctx.state_dir)
    if "prune" in steps:
        ages = list(want["prune"].values()) + [v for k, v in want["caps"].items() if k == "stale_after_s"]
        config, why = prune_config(ctx.state_dir, min(ages) if ages else None, work, want["caps"].get("max_entries"))
        if why:
            not_done.append(("pruning disposable sessions", why))
            del steps["prune"]
        else:
            env = openclaw_env(ctx.state_dir, config)
    if "prune" in steps:
        # OpenClaw's own preview on the live store (read-only): files it would delete outside the
        # database have no fleet backup, so the cleanup is not run at all then.
        plan = run_openclaw(steps["prune"], env, ["sessions", "cleanup", "--store", db_info.path, "--dry-run",
                                                  "--enforce", "--json"], cfg["timeout_s"])
        files = _planned_file_deletions(plan)
        if files:
            not_done.append(("pruning disposable sessions", "OpenClaw's cleanup would also delete %d unreferenced "
                             "file(s) fleet has no backup of" % files))
            del steps["prune"]
    rehearsal, predicted, rehearsal_skips = _rehearse(ctx, af, db_info, cfg, steps, want, work, env, not_done)
    copy = os.path.join(work, AGENT_DB)
    if ctx.dry_run:
        not_done.extend(rehearsal_skips)
        after_info = inspect(copy)
        out = _records(af, db_info, records, after_info, _size(copy))
        db = next(r for r in out if r["path"] == db_info.rel)
        db["notes"] = ["dry run: these numbers are a rehearsal on a copy of the database"] + notes + rehearsal \
            + db["notes"]
        db["actions"] = _actions(steps)
        db["action"] = db["actions"][0] if db["actions"] else "none"
        # The rehearsal emptied its WAL: the run's own checkpoint (TRUNCATE) leaves the live -wal at
        # 0 bytes (or gone, when the last connection closes). The -shm, SQLite's shared-memory index
        # of the WAL, holds no data and is left to SQLite: it stays while anyone has the database open.
        af.sqlite_wal_emptied = any("(TRUNCATE): done" in n or "WAL checkpointed" in n for n in rehearsal)
        return out, [], not_done
    target = ctx.backups.target_for(db_info.rel)
    backup = backup_database(db_info.path, target)
    ctx.backups.stored_bytes += backup["stored_bytes"]
    notes.append("verified online backup (quick_check ok, sha256 %s)" % backup["sha256"][:16])
    live_before = nodes(db_info.path) if "prune" in steps else {}
    notes.extend(_apply(steps, db_info.path, env, cfg, not_done, agent=af.agent, work=work))
    if "prune" in steps:
        removed = sorted(set(live_before) - set(nodes(db_info.path)))
        if removed != predicted:
            notes.append("OpenClaw removed %s, the rehearsal %s (sessions changed in between)" % (removed, predicted))
    after_info = inspect(db_info.path)
    out = _records(af, db_info, records, after_info, _size(db_info.path))
    db = next(r for r in out if r["path"] == db_info.rel)
    db["actions"] = _actions(steps)
    db["action"] = db["actions"][0] if db["actions"] else "none"
    db["backup"], db["backup_sha256"] = backup["path"], backup["sha256"]
    # The file's own sha256 after the run: `fleet restore` refuses to put the backup back over a
    # database OpenClaw has written to since (its WAL would no longer match), unless forced.
    db["after"]["sha256"] = sha256_file(db_info.path)
    db["notes"] = notes + db["notes"]
    af.sqlite_entries = after_info["entries"]
    return out, [], not_done


def _actions(steps):
    """The database record's actions for the steps run (the same in a dry run and a run)."""
    out = []
    for action, step in (("prune", "prune"), ("trim", "trim"), ("trim", "cap"), ("strip", "strip"),
                         ("repair", "reclaim")):
        if step in steps and action not in out:
            out.append(action)
    return out


def _planned_file_deletions(doc):
    total = 0
    for section in ("unreferencedArtifacts", "diskBudget"):
        part = doc.get(section) if isinstance(doc, dict) else None
        if isinstance(part, dict) and isinstance(part.get("removedFiles"), int):
            total += part["removedFiles"]
    return total


def _records(af, db_info, records, after_info, db_size):
    """The agent's records after a run (or rehearsal): per-session rows re-read, `before` kept."""
    db_rel = db_info.rel
    db, recs = session_records(af, after_info, db_rel, db_size)
    before = dict((r["path"], r) for r in records)
    out = []
    for rec in [db] + recs:
        old = before.pop(rec["path"], None)
        rec["before"] = old["before"] if old is not None else stats(0, 0)
        if rec["kind"] == "trajectory" and rec["after"]["records"] < rec["before"]["records"]:
            rec["action"], rec["actions"] = "trim", ["trim"]
        out.append(rec)
    for path, old in before.items():
        if path.startswith(db_rel + "#"):
            out.append(dict(old, after=stats(0, 0), action="delete", actions=["delete"],
                            notes=list(old.get("notes") or []) + ["removed by openclaw sessions cleanup"]))
        else:
            out.append(old)
    return out


def _summary(doc):
    if not isinstance(doc, dict):
        return str(doc)[:200]
    keep = {k: v for k, v in doc.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return json.dumps(keep, sort_keys=True)[:400]


def run_steps(run, section):
    """The pass of a SQLite-era agent (`run` is runops.AgentWork; `section` the plan's `sqlite`
    section or None): what the plan's sections mean on this era (sqlite_plan.py, which reads the
    whole plan from `run.ctx.operations`). Every file of the agent gets its record here; every
    step not done becomes a warning finding in `run.findings` (the printed report)."""
    from .scan import untouched_record
    af, ctx = run.af, run.ctx
    base = scan_agent(af, [untouched_record(af, info) for info in af.files])
    not_done = []
    ops = dict(ctx.operations or {})
    if section is not None:
        ops["sqlite"] = section
    cfg, want = sqlite_settings(ops)
    if cfg is None:
        run.notes.append("SQLite era: the plan asks nothing of a SQLite-era agent")
        records = base
    else:
        try:
            records, notes, not_done = clean_database(ctx, af, cfg, base, want)
            run.notes.extend(notes)
        except (FileError, sqlite3.Error, OSError, subprocess.SubprocessError) as exc:
            records = base
            db = agent_databases(af)
            for rec in records:
                if db is not None and rec["path"] == db.rel:
                    rec["error"] = "SQLite step failed, database left as it was: %s" % exc
    info = getattr(af, "sqlite_info", None) or {}
    if info.get("schema_known"):
        not_done.extend(unsupported(ops, info))
    db = agent_databases(af)
    run.findings.extend([{"agent": af.agent, "severity": "warning", "check": "sqlite-not-done",
                     "detail": "%s not done%s: %s" % (what, " (dry run)" if ctx.dry_run else "", why),
                     "path": db.rel if db is not None else None} for what, why in not_done])
    run.notes.extend("SQLite era: %s not done: %s" % (what, why) for what, why in not_done)
    for rec in records:
        info = next((f for f in af.files if f.rel == rec["path"]), None)
        if info is not None and info.kind == "sqlite" and rec["action"] == "none" and not ctx.dry_run:
            rec["after"] = stats(_size(info.path), rec["after"]["records"])  # -wal after a checkpoint
        elif info is not None and ctx.dry_run and getattr(af, "sqlite_wal_emptied", False) and \
                info.rel == db.rel + "-wal":
            rec["after"] = stats(0, 0)
            rec["notes"] = list(rec.get("notes") or []) + ["predicted: emptied by the run's WAL checkpoint"]
        run.add(rec)
