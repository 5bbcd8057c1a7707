"""The run orchestrator: per agent, every operation of the plan in a fixed order.

Order per agent: store rotation (a copy of the store as it was) → store prune → archive files
of removed sessions → archive orphans → transcript trims (highest matching tier; a transcript
locked by a live pid is skipped) → trajectory caps → legacy trims → archive expiry, temp
cleanup, stale locks.
At the end of a real run, backups of old runs expire. Every change goes through the operation
modules, which use fsutil (verified backup first; a dry run writes nothing). A file no
operation touched gets an action-"none" record, so before/after totals cover every file.

Operation modules are imported lazily: one missing from this build is a per-agent error
("operation X not available in this agent build"), never a crash. A FileError (or any
unexpected exception) in one file becomes that file's error; the file is left as it was.
"""
import importlib
import os

from .context import stats
from .discover import discover
from .fsutil import BackupStore, FileError, inside, set_phase
from .locks import transcript_in_use
from .protocol import PlanError
from .space import backup_shortfall
from . import health, scan


class OperationMissing(Exception):
    """The operation's module or function is not part of this agent build."""


def load_operation(module, function):
    """The function `function` of sibling module `module`; raise OperationMissing if absent."""
    full = "%s.%s" % (__package__, module)
    try:
        mod = importlib.import_module("." + module, __package__)
    except ImportError as exc:
        if getattr(exc, "name", None) in (full, module):
            raise OperationMissing("operation %s.%s not available in this agent build" % (module, function))
        raise
    fn = getattr(mod, function, None)
    if fn is None:
        raise OperationMissing("operation %s.%s not available in this agent build" % (module, function))
    return fn


def merge_record(old, new):
    """Two operations on one path: keep the first `before` and its backup, the last `after`, all
    actions and notes."""
    merged = dict(new)
    merged["before"] = old["before"]
    merged["actions"] = list(old.get("actions") or []) + list(new.get("actions") or [])
    if new.get("action") in (None, "none"):
        merged["action"] = old.get("action", "none")
    merged["notes"] = list(old.get("notes") or []) + list(new.get("notes") or [])
    # The first backup holds the bytes `before` describes: that is the one a restore needs.
    if old.get("backup") is not None:
        if new.get("backup") not in (None, old["backup"]):
            merged["notes"].append("intermediate version backed up at %s" % new["backup"])
        merged["backup"], merged["backup_sha256"] = old["backup"], old.get("backup_sha256")
    for key in ("backup", "backup_sha256", "archived_to", "error", "session_key"):
        if merged.get(key) is None and old.get(key) is not None:
            merged[key] = old[key]
    return merged


def transcript_in_use_note(transcript_path, now_ms):
    """"in use: …" when a live process holds `<transcript>.lock`, else None."""
    busy, detail = transcript_in_use(transcript_path, now_ms)
    if not busy:
        return None
    return detail if detail and str(detail).startswith("in use") else "in use: %s" % (detail,)


class AgentRun(object):
    """One agent's run: its records by path, per-agent errors and notes."""

    def __init__(self, ctx, af):
        self.ctx = ctx
        self.af = af
        self.records = {}
        self.errors = []
        self.notes = []

    def handled(self, info):
        return info.rel in self.records

    def pending(self, *kinds):
        return [f for f in self.af.files if f.kind in kinds and not self.handled(f)]

    def add(self, rec):
        if not isinstance(rec, dict) or "path" not in rec:
            self.errors.append("an operation returned a malformed record: %r" % (rec,))
            return
        path = rec["path"]
        if path in self.records:
            rec = merge_record(self.records[path], rec)
        self.records[path] = rec
        if rec.get("action") not in (None, "none") or rec.get("error"):
            self.ctx.progress(event="file", agent=self.af.agent, path=path, action=rec.get("action"),
                              error=rec.get("error"))

    def error_record(self, info, message):
        """The record of a file an operation could not handle (left as it was)."""
        rec = scan.untouched_record(self.af, info)
        if rec["error"] is None:
            rec["error"] = message
        return rec

    def op(self, module, function):
        """The operation function, or None after noting it as a per-agent error."""
        try:
            return load_operation(module, function)
        except OperationMissing as exc:
            if str(exc) not in self.errors:
                self.errors.append(str(exc))
            return None

    def per_file(self, info, label, call):
        """Run `call()` for one file; a FileError or crash becomes that file's error."""
        try:
            rec = call()
        except FileError as exc:
            rec = self.error_record(info, str(exc))
        except Exception as exc:  # a bug in one operation must not stop the others
            rec = self.error_record(info, "internal error in %s: %s: %s" % (label, type(exc).__name__, exc))
        if rec is not None:
            self.add(rec)

    def batch(self, label, infos, call):
        """Run `call()` over several files; returns its records (or marks the files on a crash)."""
        try:
            recs = call()
        except Exception as exc:
            message = "%s failed: %s: %s" % (label, type(exc).__name__, exc)
            self.errors.append(message)
            for info in infos:
                if not self.handled(info):
                    self.add(self._after_crash(info, message))
            return
        for rec in recs or ():
            self.add(rec)

    def _after_crash(self, info, message):
        rec = self.error_record(info, message)
        try:
            size = os.lstat(info.path).st_size
        except OSError:
            size = 0
        rec["after"] = stats(size, rec["before"]["records"] if size == info.size else 0)
        return rec


def run_agent(ctx, af):
    """Every planned operation on one discovered agent; returns its AgentRun (never raises).

    A crash outside any one file's step becomes this agent's error; files handled so far keep
    their records, and the rest get action-"none" records (no step was changing them).
    """
    run = AgentRun(ctx, af)
    if af.error:
        run.errors.append(af.error)
        return run
    ctx.progress(event="agent", agent=af.agent, phase="start", era=af.era)
    try:
        _run_steps(run)
    except Exception as exc:
        run.errors.append("internal error in agent %s: %s: %s" % (af.agent, type(exc).__name__, exc))
    return _finish(run)


def _run_steps(run):
    af, ops = run.af, run.ctx.operations
    if af.era == "half-migrated":
        run.notes.append("half-migrated to SQLite: nothing changed; run `openclaw doctor --fix` first")
        return
    if af.era == "sqlite":
        run_sqlite = run.op("sqlite_run", "run_steps")
        if run_sqlite is not None:
            run_sqlite(run, ops)
        return
    shortfall = backup_shortfall(run.ctx, af, ops)
    if shortfall:
        run.errors.append(shortfall)
        return
    if af.store_problem is not None and af.store_info is not None:
        run.add(run.error_record(af.store_info, "%s; nothing store-dependent was done for this agent"
                                 % af.store_problem[1]))
    _store_pass(run, ops)
    _file_passes(run, ops)
    _housekeeping(run, ops)


def _store_pass(run, ops):
    af, ctx = run.af, run.ctx
    if not af.store_usable or af.store_info is None:
        return
    removed = {}
    if "store" in ops and ops["store"].get("rotate_over_bytes") is not None:
        # Before the prune, so the rotation copy holds the store as it was (OpenClaw 2026.4).
        rotate = run.op("store", "rotate_store")
        if rotate is not None:
            set_phase("rotate")
            rotated = [i for i in af.files if i.kind == "archive"
                       and os.path.basename(i.path).startswith("sessions.json.bak.")]
            run.batch("store rotation", rotated,
                      lambda: _as_list(rotate(ctx, af.agent, af.store_info, ops["store"])))
    if "store" in ops:
        prune = run.op("store", "prune_store")
        if prune is not None:
            ctx.progress(event="agent", agent=af.agent, phase="store")
            set_phase("prune")
            try:
                rec, removed = prune(ctx, af.agent, af.store_info, ops["store"])
                run.add(rec)
                _lock_taken_over(run, rec)
                removed = removed if not rec.get("error") else {}
            except FileError as exc:
                run.add(run.error_record(af.store_info, str(exc)))
                removed = {}
            except Exception as exc:
                run.add(run.error_record(af.store_info, "internal error in store prune: %s: %s"
                                         % (type(exc).__name__, exc)))
                removed = {}
    set_phase("archive")
    if removed:
        archive = run.op("archive", "archive_session_files")
        if archive is not None:
            by_sid = {}
            for info in run.pending("transcript", "trajectory", "checkpoint"):
                if info.session_id is not None:
                    by_sid.setdefault(info.session_id, []).append(info)
            files = [i for group in by_sid.values() for i in group]
            run.batch("archiving removed sessions' files", files,
                      lambda: archive(ctx, af.agent, by_sid, removed))
    if "orphans" in ops:
        archive_orphans = run.op("archive", "archive_orphans")
        if archive_orphans is not None:
            orphans = run.pending("orphan")
            if orphans:
                run.batch("archiving orphans", orphans,
                          lambda: archive_orphans(ctx, af.agent, orphans, ops["orphans"]))


def _lock_taken_over(run, store_rec):
    """The store pass takes over a stale `sessions.json.lock` (and removes it); say so for that file."""
    notes = [n for n in store_rec.get("notes") or () if "take over stale store lock" in n
             or "took over stale store lock" in n]
    if not notes:
        return
    for info in run.pending("lock"):
        if os.path.basename(info.path) == "sessions.json.lock":
            rec = scan.untouched_record(run.af, info)
            rec.update(action="delete", actions=["delete"], after=stats(0, 0), notes=notes)
            run.add(rec)


def pick_tier(tiers, size):
    """The highest tier whose over_bytes is below `size` (tiers sorted by over_bytes), or None."""
    chosen = None
    for tier in tiers:
        if size > tier["over_bytes"]:
            chosen = tier
    return chosen


def _in_use_record(run, info, note):
    rec = scan.untouched_record(run.af, info)
    rec["action"] = "skip"
    rec["actions"] = ["skip"]
    rec["notes"].append(note)
    return rec


def _file_passes(run, ops):
    af, ctx = run.af, run.ctx
    set_phase("trim")
    if "transcripts" in ops and ops["transcripts"].get("tiers"):
        trim = run.op("transcript", "trim_transcript")
        if trim is not None:
            for info in run.pending("transcript"):
                tier = pick_tier(ops["transcripts"]["tiers"], info.size)
                if tier is None or info.rel in af.problems:
                    continue
                run.per_file(info, "transcript trim", lambda i=info, t=tier: _trim_or_skip(
                    run, i, lambda: trim(ctx, af.agent, i, t, ops["transcripts"])))
    if "trajectories" in ops:
        cap = run.op("trajectory", "cap_trajectory")
        if cap is not None:
            for info in run.pending("trajectory"):
                if not info.path.endswith(".jsonl") or info.rel in af.problems:
                    continue
                transcript = os.path.join(os.path.dirname(info.path), "%s%s.jsonl" % (
                    info.session_id, "" if info.topic is None else "-topic-%d" % info.topic))
                run.per_file(info, "trajectory cap", lambda i=info, t=transcript: _trim_or_skip(
                    run, i, lambda: cap(ctx, af.agent, i, ops["trajectories"]), t))
    if "legacy" in ops:
        trim_legacy = run.op("legacy", "trim_legacy")
        if trim_legacy is not None:
            for info in run.pending("legacy"):
                if info.rel in af.problems:
                    continue
                run.per_file(info, "legacy trim", lambda i=info: trim_legacy(ctx, af.agent, i, ops["legacy"]))


def _trim_or_skip(run, info, call, transcript_path=None):
    note = transcript_in_use_note(transcript_path or info.path, run.ctx.now_ms)
    if note is not None:
        return _in_use_record(run, info, note)
    return call()


def _housekeeping(run, ops):
    af, ctx = run.af, run.ctx
    steps = (
        ("archives", "archive", "expire_archives", ("archive",)),
        ("temp", "archive", "cleanup_temp", ("temp",)),
        ("locks", "archive", "remove_stale_locks", ("lock",)),
    )
    for section, module, function, kinds in steps:
        if section not in ops:
            continue
        infos = [i for i in run.pending(*kinds) if i.rel not in af.problems]
        fn = run.op(module, function) if infos else None
        if fn is None:
            continue
        set_phase("delete")
        run.batch(function.replace("_", " "), infos,
                  lambda f=fn, i=infos, s=section: f(ctx, af.agent, i, ops[s]))


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _finish(run):
    """Add the action-none record of every file no operation touched."""
    for info in run.af.files:
        if not run.handled(info):
            rec = scan.untouched_record(run.af, info)
            if not run.ctx.dry_run and not os.path.lexists(info.path):
                rec["after"] = stats(0, 0)
                rec["notes"].append("gone by the end of the run (removed by another process)")
            run.add(rec)
    return run


def backup_root(state_dir, plan):
    """(parent of all runs' backups, this run's backup dir); refuses a dir inside agents/."""
    configured = plan["backup"]["dir"]
    if configured:
        parent = os.path.abspath(os.path.expanduser(os.path.expandvars(configured)))
    else:
        parent = os.path.join(state_dir, "fleet-backups")
    run_dir = os.path.join(parent, plan["run_id"])
    if inside(os.path.join(state_dir, "agents"), run_dir):
        raise PlanError("at 'backup.dir': %s is inside the agents folder; backups must live outside "
                        "agents/ (the default is <state_dir>/fleet-backups)" % parent)
    return parent, run_dir


def execute_plan(ctx, plan, result):
    """Run a `run` or `restore` plan into `result` (files, agents, health, backup)."""
    parent, run_dir = backup_root(ctx.state_dir, plan)
    in_state = os.path.abspath(parent).startswith(ctx.state_dir.rstrip(os.sep) + os.sep)
    ctx.backups = BackupStore(run_dir, use_gzip=plan["backup"]["gzip"], dry_run=ctx.dry_run,
                              refuse_links=(parent, run_dir) if in_state else (run_dir,))
    result["backup"]["dir"] = run_dir
    if plan["mode"] == "restore":
        _restore(ctx, plan, result)
    else:
        agents = discover(ctx.state_dir, plan["agents"])
        findings_before = health.check_all(agents, ctx.now_ms, scan.classify_key)
        not_done = []  # steps an agent's operation could not do, with why (the printed report lists them)
        for af in agents:
            run = run_agent(ctx, af)
            not_done.extend(getattr(run, "findings", ()))
            records = list(run.records.values())
            result["files"].extend(records)
            summary = scan.agent_summary(af, records)
            summary["errors"] = run.errors
            summary["notes"] = run.notes
            result["agents"].append(summary)
        result["health"].extend(_health_after(ctx, plan, findings_before))
        result["health"].extend(not_done)
        _expire_backups(ctx, plan, parent, result)
        _remove_partial_copies(ctx, parent, result)
    result["backup"]["bytes"] = ctx.backups.stored_bytes
    return result


def _health_after(ctx, plan, findings_before):
    """What is still wrong once the run is done: a report that lists a stale lock the run just
    removed would send the operator chasing ghosts. A dry run changed nothing, so its findings
    are the ones from before; so are they when the state cannot be read again."""
    if ctx.dry_run:
        return findings_before
    try:
        return health.check_all(discover(ctx.state_dir, plan["agents"]), ctx.now_ms, scan.classify_key)
    except Exception:  # the files were handled; a failed re-check must not fail the run
        return findings_before


def _restore(ctx, plan, result):
    try:
        run_restore = load_operation("restore", "run_restore")
    except OperationMissing as exc:
        result["backup"]["error"] = str(exc)
        return
    ctx.progress(event="agent", agent=None, phase="restore")
    set_phase("restore")
    result["files"].extend(run_restore(ctx, plan["restore"]) or ())


def _expire_backups(ctx, plan, parent, result):
    b = plan["backup"]
    if b["keep_runs"] is None and b["max_age_s"] is None:
        return
    try:
        expire = load_operation("retention", "expire_backups")
        ctx.progress(event="agent", agent=None, phase="backup-retention")
        out = expire(parent, plan["run_id"], b["keep_runs"], b["max_age_s"], ctx.now_ms, ctx.dry_run) or {}
    except OperationMissing as exc:
        result["backup"]["error"] = str(exc)
        return
    except Exception as exc:  # an old run's backups that cannot expire: reported, the run still counts
        result["backup"]["error"] = "backup retention failed: %s: %s" % (type(exc).__name__, exc)
        return
    result["backup"]["expired_runs"] = list(out.get("expired_runs") or [])
    result["backup"]["expired_bytes"] = int(out.get("expired_bytes") or 0)
    if out.get("errors"):
        result["backup"]["error"] = "; ".join(str(e) for e in out["errors"])


def _remove_partial_copies(ctx, parent, result):
    """A killed run's `.part` backup copies go (listed in backup.partials_removed)."""
    try:
        remove = load_operation("retention", "remove_partial_copies")
        out = remove(parent, ctx.dry_run)
    except Exception as exc:  # leftovers cost space only: reported, the run still counts
        out = {"removed": [], "errors": ["partial backup cleanup failed: %s: %s" % (type(exc).__name__, exc)]}
    if out["removed"]:
        result["backup"]["partials_removed"] = out["removed"]
    if out["errors"]:
        errors = [result["backup"]["error"]] if result["backup"].get("error") else []
        result["backup"]["error"] = "; ".join(errors + out["errors"])
