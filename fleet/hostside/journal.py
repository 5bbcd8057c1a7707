"""The run's journal on the host: the host, not the control host, records what happened to it.

A changing run (a real `run` or `restore`) keeps `<backup dir>/<run_id>/.fleet-journal.jsonl`,
one JSON object a line, each appended and fsynced before the run goes on:

- `{"e": "start", ...}`: run id, mode, origin (controller user@host, playbook), pid, times, state dir;
- `{"e": "backup", "path": rel, "backup": abs, "sha256", "bytes", "phase"}`: written after the
  verified backup is in place and before the file is touched: "this file is about to change,
  and this backup covers it";
- `{"e": "done", "record": {...}}`: the file's result record, after its atomic swap;
- `{"e": "end", "status": "complete" | "interrupted", "error"}`, with the whole result document
  written beside it as `.fleet-result.json` (temp file, fsync, rename).

`reconstruct(run_dir, state_dir)` turns a journal back into a result document, whatever the run's
fate. A file with a `backup` line and no `done` line is judged on disk: still holding the backed-up
bytes (or those bytes plus appended lines) means it was not changed; otherwise it was, and gets a
record whose `before` is the backup (its first one: the original bytes) and whose `after` is the file
as it is now, so `fleet restore` can put it back. `list_journals` does that for every run folder a
controller does not know yet. Reading never takes the run lock. Stdlib only.
"""
import json
import os
import stat

from .context import file_record, stats
from .fsutil import (BackupError, BackupStore, FAULTS, describe_oserror, fsync_dir, hash_file, is_safe_id,
                     open_nofollow)
from .protocol import iso_now
from .retention import run_dirs

JOURNAL_NAME = ".fleet-journal.jsonl"
RESULT_NAME = ".fleet-result.json"
PHASE_ACTIONS = {"trim": "trim", "prune": "prune", "archive": "archive", "rotate": "rotate",
                 "delete": "delete", "restore": "restore"}


class Journal(object):
    """Append-only, fsynced journal of one run in `run_dir` (created 0700 on first use)."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, JOURNAL_NAME)
        self.fd = None

    def _append(self, event):
        if self.fd is None:
            from .fsutil import makedirs_private

            makedirs_private(self.run_dir)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                              | getattr(os, "O_CLOEXEC", 0), 0o600)
        line = (json.dumps(event, sort_keys=True, default=str) + "\n").encode("utf-8", "surrogateescape")
        os.write(self.fd, line)
        os.fsync(self.fd)

    def start(self, plan, state_dir, origin):
        self._append({"e": "start", "run_id": plan["run_id"], "mode": plan["mode"], "origin": origin,
                      "pid": os.getpid(), "started_at": iso_now(), "now_ms": plan["now_ms"],
                      "state_dir": state_dir, "backup_dir": self.run_dir, "agents": plan.get("agents")})

    def backup(self, rel, saved, phase):
        self._append({"e": "backup", "path": rel, "backup": saved["path"], "sha256": saved["sha256"],
                      "bytes": saved["bytes"], "phase": phase, "at": iso_now()})

    def done(self, record):
        self._append({"e": "done", "record": record})

    def end(self, result, status, stop_requested_at=None):
        """Keep the result document beside the journal, then the closing line."""
        tmp = os.path.join(self.run_dir, ".%s.%d.tmp" % (RESULT_NAME, os.getpid()))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(result, default=str).encode("utf-8", "surrogateescape"))
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.run_dir, RESULT_NAME))
        fsync_dir(self.run_dir)
        self._append({"e": "end", "status": status, "error": result.get("error"), "finished_at": iso_now(),
                      "stop_requested_at": stop_requested_at})

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def discard(self):
        """Remove the journal (and the run's folder, when that leaves it empty): for a run that
        ended without changing anything there is nothing to undo, and a full disk gets back every
        byte the run took."""
        self.close()
        try:
            os.unlink(self.path)
        except OSError:
            return
        try:
            os.rmdir(self.run_dir)
        except OSError:
            pass    # backups of the run are still there: the folder stays


class JournaledBackupStore(BackupStore):
    """A BackupStore that checks for a stop before each file and journals each verified backup.

    Every change the agent makes starts with a backup of the file, so this is the one place to
    refuse starting another file once the controller has gone, and to note "about to change".
    """

    def __init__(self, root, journal, stop, **kwargs):
        BackupStore.__init__(self, root, **kwargs)
        self.journal = journal
        self.stop = stop

    def backup(self, abs_path, rel_path, expect=None):
        if self.stop is not None:
            self.stop.check()
        saved = BackupStore.backup(self, abs_path, rel_path, expect)
        if not self.dry_run and self.journal is not None:
            try:
                self.journal.backup(rel_path, saved, FAULTS.phase)
            except OSError as exc:
                # No journal line, no change: the file stays as it is (its backup stays too).
                raise BackupError(describe_oserror(exc, "the run's journal"))
            FAULTS.hit("journal-backup")
        return saved


# --- reading ------------------------------------------------------------------------------------

def read_events(path):
    """The journal's events in order; a torn last line (a kill mid-append) is ignored."""
    events = []
    try:
        with os.fdopen(open_nofollow(path), "rb") as f:
            data = f.read()
    except OSError:
        return events
    for line in data.split(b"\n"):
        try:
            ev = json.loads(line.decode("utf-8", "surrogateescape"))
        except ValueError:
            continue
        if isinstance(ev, dict):
            events.append(ev)
    return events


def guess_kind(rel):
    base = os.path.basename(rel)
    if base == "sessions.json":
        return "store"
    if ".deleted." in base or ".bak." in base:
        return "archive"
    if base.endswith(".lock"):
        return "lock"
    if base.endswith(".trajectory.jsonl") or ".trajectory" in base:
        return "trajectory"
    if base.endswith(".jsonl"):
        return "transcript"
    if base.endswith(".session.json"):
        return "legacy"
    return "other"


def _records(kind, path):
    try:
        from .archive import records_of

        return int(records_of(kind, path))
    except Exception:  # a count is a nicety; the bytes and sha256 are what a restore needs
        return 0


def _prefix_sha(path, size):
    import hashlib

    h = hashlib.sha256()
    left = size
    with os.fdopen(open_nofollow(path), "rb") as f:
        while left > 0:
            b = f.read(min(left, 1 << 20))
            if not b:
                break
            h.update(b)
            left -= len(b)
    return h.hexdigest() if left == 0 else None


def _judge(state_dir, first, phase, now_ms):
    """The record of a file the journal says was about to change, judged on disk; None if unchanged."""
    rel = first["path"]
    path = os.path.join(state_dir, rel)
    kind = guess_kind(rel)
    agent = rel.split("/")[1] if rel.startswith("agents/") and rel.count("/") >= 2 else ""
    backup = {"path": first["backup"], "sha256": first["sha256"]}
    before = stats(first["bytes"], _records(kind, first["backup"]) if not first["backup"].endswith(".gz") else 0,
                   first["sha256"])
    action = PHASE_ACTIONS.get(phase, "trim")
    note = "recovered from the host's journal: the run stopped before recording this file"
    try:
        st = os.lstat(path)
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        if st.st_size >= first["bytes"] and _prefix_sha(path, first["bytes"]) == first["sha256"]:
            return None      # untouched (a live writer may have appended since)
        size, digest, _ = hash_file(path)
        after = stats(size, _records(kind, path), digest)
        return file_record(agent, rel, kind, before, after, action=action, backup=backup, notes=[note])
    archived = _archive_of(state_dir, rel, first["sha256"], now_ms)
    if archived is not None:
        return file_record(agent, rel, kind, before, before, action="archive", backup=backup,
                           archived_to=archived, notes=[note])
    action = "delete" if action not in ("archive", "delete", "restore") else action
    return file_record(agent, rel, kind, before, stats(0, 0), action=action, backup=backup, notes=[note])


def _archive_of(state_dir, rel, sha256, now_ms):
    """OpenClaw's `<file>.deleted.<ts>` name the run gives an archived file, if it holds the bytes."""
    if not now_ms:
        return None
    from .fsutil import archive_timestamp

    candidate = rel + ".deleted." + archive_timestamp(now_ms)
    try:
        if hash_file(os.path.join(state_dir, candidate))[1] == sha256:
            return candidate
    except OSError:
        pass
    return None


def reconstruct(run_dir, state_dir=None, running=False):
    """The result document of the run journaled in `run_dir` (see the module docstring), or None
    when there is no journal. `journal.status`: complete, interrupted, killed or running."""
    events = read_events(os.path.join(run_dir, JOURNAL_NAME))
    start = next((e for e in events if e.get("e") == "start"), None)
    if start is None:
        return None
    state_dir = state_dir or start.get("state_dir")
    end = next((e for e in reversed(events) if e.get("e") == "end"), None)
    doc = None
    if end is not None:
        try:
            with os.fdopen(open_nofollow(os.path.join(run_dir, RESULT_NAME)), "rb") as f:
                doc = json.loads(f.read().decode("utf-8", "surrogateescape"))
        except (OSError, ValueError):
            doc = None
    if not isinstance(doc, dict):
        doc = _skeleton(start, run_dir)
    status = end.get("status") if end is not None else ("running" if running else "killed")
    records = {}
    for f in doc.get("files") or ():
        records[f.get("path")] = f
    done_paths = set()
    for e in events:
        if e.get("e") == "done" and isinstance(e.get("record"), dict):
            rec = e["record"]
            done_paths.add(rec.get("path"))
            records[rec.get("path")] = rec
    firsts = {}
    for e in events:
        if e.get("e") == "backup" and isinstance(e.get("path"), str):
            firsts.setdefault(e["path"], e)
    if not running:
        for rel, first in firsts.items():
            if rel in done_paths:
                continue
            try:
                rec = _judge(state_dir, first, first.get("phase"), start.get("now_ms"))
            except (OSError, ValueError):
                rec = None
            if rec is not None:
                records[rel] = rec
    doc["files"] = list(records.values())
    doc["journal"] = {"status": status, "origin": start.get("origin"), "events": len(events),
                      "pid": start.get("pid")}
    if status in ("killed", "interrupted"):
        doc["ok"] = False
        doc["interrupted"] = True
        if not doc.get("error"):
            doc["error"] = ("interrupted: the agent was killed (its journal ends without a closing line)"
                            if status == "killed" else "interrupted")
    return doc


def _skeleton(start, run_dir):
    from .terms import AGENT_VERSION, PROTOCOL_VERSION
    from .protocol import host_info

    return {"protocol": PROTOCOL_VERSION, "agent_version": AGENT_VERSION, "mode": start.get("mode"),
            "run_id": start.get("run_id"), "dry_run": False, "now_ms": start.get("now_ms"),
            "host": host_info(start.get("state_dir")), "started_at": start.get("started_at"),
            "finished_at": None, "elapsed_s": 0.0, "ok": False, "error": None, "agents": [], "files": [],
            "health": [], "backup": {"dir": run_dir, "bytes": 0, "expired_runs": [], "expired_bytes": 0}}


def list_journals(backups_parent, state_dir, known, current_run_id=None):
    """Reconstructed documents of the journaled runs under `backups_parent` that are not in
    `known` (run ids the controller already holds complete), oldest first. A run that is still
    going (its pid holds the host lock) is left out: it will report for itself."""
    from .runlock import current_holder

    holder = current_holder(state_dir) or {}
    out = []
    for name in run_dirs(backups_parent):
        if name in known or name == current_run_id or not is_safe_id(name):
            continue
        run_dir = os.path.join(backups_parent, name)
        if not os.path.lexists(os.path.join(run_dir, JOURNAL_NAME)):
            continue
        if holder.get("run_id") == name:
            continue
        doc = reconstruct(run_dir, state_dir)
        if doc is not None:
            out.append(doc)
    return out

