"""The run orchestrator: per agent, every operation of the plan in the order of ops.PASSES.

A JSON-era agent gets, in order: store (rotation, prune, archive of removed sessions' files) →
orphans → transcript trims (highest matching tier; a transcript locked by a live pid is skipped)
→ trajectory caps → legacy trims → archive expiry, temp cleanup, stale locks. A SQLite-era agent
gets the sqlite pass alone; a half-migrated one nothing (a note says why). At the end of a real
run, backups of old runs expire. Every change goes through the operation modules, which use
fsutil (verified backup first; a dry run writes nothing). A file no operation touched gets an
action-"none" record, so before/after totals cover every file.

An operation whose implementation is missing from this build is a per-agent error ("operation X
not available in this agent build"), never a crash. A FileError (or any unexpected exception) in
one file becomes that file's error; the file is left as it was.
"""
import os

from .context import stats
from .discover import discover
from .fsutil import BackupStore, FileError, inside, set_phase
from .interrupt import RunInterrupted
from .locks import transcript_in_use
from .protocol import PlanError
from .space import backup_notes, backup_shortfall, disk_space, free_bytes, make_backups, no_room, space_first
from . import health, ops as operations, prescan, scan


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
    for key in ("backup", "backup_sha256", "archived_to", "error", "session_key", "removed_sessions", "age_s"):
        if merged.get(key) is None and old.get(key) is not None:
            merged[key] = old[key]
    return merged


def transcript_in_use_note(transcript_path, now_ms):
    """"in use: …" when a live process holds `<transcript>.lock`, else None."""
    busy, detail = transcript_in_use(transcript_path, now_ms)
    if not busy:
        return None
    return detail if detail and str(detail).startswith("in use") else "in use: %s" % (detail,)


class AgentWork(object):
    """One agent's work in a run: its records by path, per-agent errors and notes.

    What the operations (ops/) use to report: `add` a record, `per_file` / `batch` / `sweep` to
    run a step with its failures turned into file errors, `missing` for an operation this build
    lacks, `unless_in_use` to skip files a live process holds.
    """

    def __init__(self, ctx, af):
        self.ctx = ctx
        self.af = af
        self.records = {}
        self.errors = []
        self.notes = []
        self.rewrites = None    # a list while in-place rewrites are collected to run later (full disk)
        self.findings = []      # health findings of steps an operation could not do, with why

    def handled(self, info):
        return info.rel in self.records

    def pending(self, *kinds):
        return [f for f in self.af.files if f.kind in kinds and not self.handled(f)]

    def readable(self, *kinds):
        """The pending files of `kinds` that discovery could read (no problem noted for them)."""
        return [f for f in self.pending(*kinds) if f.rel not in self.af.problems]

    def add(self, rec):
        if not isinstance(rec, dict) or "path" not in rec:
            self.errors.append("an operation returned a malformed record: %r" % (rec,))
            return
        path = rec["path"]
        self.ctx.journal_done(rec)
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

    def missing(self, name):
        """Note that operation `name` ("module.function") is not part of this build."""
        message = "operation %s not available in this agent build" % name
        if message not in self.errors:
            self.errors.append(message)

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

    def rewrite(self, info, phase, label, call):
        """An in-place rewrite of one file: now, or collected for `run_rewrites` on a full disk."""
        if self.rewrites is not None:
            self.rewrites.append((info, phase, label, call))
            return
        set_phase(phase)
        self.per_file(info, label, call)

    def run_rewrites(self):
        """The collected rewrites, biggest file first; one that found no room is tried again once
        others have freed some (its backup was taken back, so a failed try costs no space)."""
        jobs, self.rewrites = sorted(self.rewrites or (), key=lambda job: -job[0].size), None
        for job in jobs:
            self.rewrite(*job)
        while True:
            waiting = [job for job in jobs if no_room(self.records.get(job[0].rel))]
            freed_before = free_bytes(self.ctx.state_dir)
            for info, phase, label, call in waiting:
                first = self.records.pop(info.rel)
                self.rewrite(info, phase, label, call)
                if no_room(self.records.get(info.rel)):
                    self.records[info.rel] = first
                else:
                    self.records[info.rel]["notes"].append("done on a second try, once other files had freed space")
            if not waiting or free_bytes(self.ctx.state_dir) == freed_before:
                break

    def batch(self, label, infos, call):
        """Run `call()` over several files; adds its records (or marks the files on a crash)."""
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

    def sweep(self, kinds, name, label, load, section):
        """Housekeeping: `load()` gives the function (ImportError when this build lacks `name`),
        called once on every pending, readable file of `kinds`."""
        infos = self.readable(*kinds)
        if not infos:
            return
        try:
            function = load()
        except ImportError:
            return self.missing(name)
        set_phase("delete")
        self.batch(label, infos, lambda: function(self.ctx, self.af.agent, infos, section))

    def unless_in_use(self, info, call, transcript_path=None):
        """`call()`, or a "skip" record when a live process holds the (transcript's) lock."""
        note = transcript_in_use_note(transcript_path or info.path, self.ctx.now_ms)
        if note is None:
            return call()
        rec = scan.untouched_record(self.af, info)
        rec["action"] = "skip"
        rec["actions"] = ["skip"]
        rec["notes"].append(note)
        return rec

    def lock_taken_over(self, store_rec):
        """The store pass takes over a stale `sessions.json.lock` (and removes it); say so for that file."""
        notes = [n for n in store_rec.get("notes") or () if "take over stale store lock" in n
                 or "took over stale store lock" in n]
        if not notes:
            return
        for info in self.pending("lock"):
            if os.path.basename(info.path) == "sessions.json.lock":
                rec = scan.untouched_record(self.af, info)
                rec.update(action="delete", actions=["delete"], after=stats(0, 0), notes=notes)
                self.add(rec)

    def _after_crash(self, info, message):
        rec = self.error_record(info, message)
        try:
            size = os.lstat(info.path).st_size
        except OSError:
            size = 0
        rec["after"] = stats(size, rec["before"]["records"] if size == info.size else 0)
        return rec


def work_on_agent(ctx, af):
    """Every planned operation on one discovered agent; returns its AgentWork (never raises).

    A crash outside any one file's step becomes this agent's error; files handled so far keep
    their records, and the rest get action-"none" records (no step was changing them).
    """
    work = AgentWork(ctx, af)
    if af.error:
        work.errors.append(af.error)
        return work
    ctx.progress(event="agent", agent=af.agent, phase="start", era=af.era)
    try:
        _run_operations(work)
    except RunInterrupted:
        # The file in hand is finished; the rest of this agent's files are reported untouched.
        work.notes.append("stopped early: %s" % work.ctx.stop.reason)
    except Exception as exc:
        work.errors.append("internal error in agent %s: %s: %s" % (af.agent, type(exc).__name__, exc))
    return _finish(work)


def _run_operations(work):
    af, ops = work.af, work.ctx.operations
    if af.era == "half-migrated":
        work.notes.append("half-migrated to SQLite: nothing changed; run `openclaw doctor --fix` first")
        return
    if af.era == "sqlite":
        operations.BY_SECTION["sqlite"].run(work, ops.get("sqlite"))
        return
    shortfall = backup_shortfall(work.ctx, af, ops)
    if shortfall:
        work.errors.append(shortfall)
        return
    work.notes.extend(backup_notes(work.ctx, af))
    if af.store_problem is not None and af.store_info is not None:
        work.add(work.error_record(af.store_info, "%s; nothing store-dependent was done for this agent"
                                   % af.store_problem[1]))
    tight = space_first(work.ctx, af, ops)
    if tight:
        # Deletions need no room and what they free, the rewrites use: rewrites wait until the end.
        work.notes.append("disk nearly full: deletions first, then the biggest files first; a rewrite that "
                          "finds no room is tried again after the others")
        work.rewrites = []
    for op in operations.PASSES:
        if op.SECTION in ops and op.SECTION != "sqlite":
            op.run(work, ops[op.SECTION])
    if tight:
        work.run_rewrites()


def _finish(work):
    """Add the action-none record of every file no operation touched."""
    for info in work.af.files:
        if not work.handled(info):
            rec = scan.untouched_record(work.af, info)
            if not work.ctx.dry_run and not os.path.lexists(info.path):
                rec["after"] = stats(0, 0)
                rec["notes"].append("gone by the end of the run (removed by another process)")
            work.add(rec)
    return work


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
    store_args = dict(use_gzip=plan["backup"]["gzip"], dry_run=ctx.dry_run,
                      refuse_links=(parent, run_dir) if in_state else (run_dir,))
    session = getattr(ctx, "session", None)     # the host's run lock and journal (hostrun.HostRun)
    host_store = session.backup_store(run_dir, **store_args) if session else BackupStore(run_dir, **store_args)
    ctx.backups = make_backups(plan, host_store)
    result["backup"]["dir"] = run_dir
    result["backup"]["to"] = plan["backup"].get("to") or "host"
    result["disk"] = {"before": disk_space(ctx.state_dir)}
    if plan["mode"] == "restore":
        _restore(ctx, plan, result)
    else:
        agents = discover(ctx.state_dir, plan["agents"])
        findings_before = health.check_all(agents, ctx.now_ms, scan.classify_key, ctx.health)
        not_done = []  # steps an agent's operation could not do, with why (the printed report lists them)
        ctx.prescans = prescan.start(agents, (ctx.operations or {}).get("transcripts"))
        try:
            for af in agents:
                work = work_on_agent(ctx, af)
                not_done.extend(work.findings)
                records = list(work.records.values())
                result["files"].extend(records)
                summary = scan.agent_summary(af, records)
                summary["errors"] = work.errors
                summary["notes"] = work.notes
                result["agents"].append(summary)
                if ctx.stop is not None and ctx.stop.reason is not None:
                    break   # no other agent is started; the caller reports the interruption
            else:
                result["health"].extend(_health_after(ctx, plan, findings_before))
                _expire_backups(ctx, plan, parent, result)
                _remove_partial_copies(ctx, parent, result)
        finally:
            if ctx.prescans is not None:
                ctx.prescans.close()
                result["prescan"] = ctx.prescans.summary()
                ctx.prescans = None
        result["health"].extend(not_done)
    if not ctx.dry_run:
        ctx.backups.tidy()   # a run whose changes all fell through leaves no empty backup folders
    result["backup"]["bytes"] = ctx.backups.stored_bytes
    result["disk"]["after"] = disk_space(ctx.state_dir)
    return result


def _health_after(ctx, plan, findings_before):
    """What is still wrong once the run is done: a report that lists a stale lock the run just
    removed would send the operator chasing ghosts. A dry run changed nothing, so its findings
    are the ones from before; so are they when the state cannot be read again."""
    if ctx.dry_run:
        return findings_before
    try:
        return health.check_all(discover(ctx.state_dir, plan["agents"]), ctx.now_ms, scan.classify_key,
                                ctx.health)
    except Exception:  # the files were handled; a failed re-check must not fail the run
        return findings_before


def _restore(ctx, plan, result):
    try:
        from .restore import run_restore
    except ImportError:
        result["backup"]["error"] = "operation restore.run_restore not available in this agent build"
        return
    ctx.progress(event="agent", agent=None, phase="restore")
    set_phase("restore")
    result["files"].extend(run_restore(ctx, plan["restore"]) or ())


def _expire_backups(ctx, plan, parent, result):
    b = plan["backup"]
    if b["keep_runs"] is None and b["max_age_s"] is None:
        return
    try:
        from .retention import expire_backups
    except ImportError:
        result["backup"]["error"] = "operation retention.expire_backups not available in this agent build"
        return
    try:
        ctx.progress(event="agent", agent=None, phase="backup-retention")
        out = expire_backups(parent, plan["run_id"], b["keep_runs"], b["max_age_s"], ctx.now_ms, ctx.dry_run) or {}
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
        from .retention import remove_partial_copies
        out = remove_partial_copies(parent, ctx.dry_run)
    except Exception as exc:  # leftovers cost space only: reported, the run still counts
        out = {"removed": [], "errors": ["partial backup cleanup failed: %s: %s" % (type(exc).__name__, exc)]}
    if out["removed"]:
        result["backup"]["partials_removed"] = out["removed"]
    if out["errors"]:
        errors = [result["backup"]["error"]] if result["backup"].get("error") else []
        result["backup"]["error"] = "; ".join(errors + out["errors"])
