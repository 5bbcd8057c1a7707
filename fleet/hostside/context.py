"""What every operation of the agent gets: the run's clock, dry-run flag, backups, progress.

Operations return file records built by `file_record`, so every record has the same shape
(see docs/agent-protocol.md, "Result").
"""
import json
import os
import sys


class RunContext(object):
    """The state of one agent run, shared by all operations.

    Attributes: state_dir (absolute), run_id, now_ms (the run's clock: every age decision uses
    it), dry_run, backups (fsutil.BackupStore), operations (the plan's operations dict).
    """

    stop = None        # interrupt.StopSignal of the run (None: nothing can ask it to stop)
    journal = None     # journal.Journal of a changing run (None: scans and dry runs keep none)
    session = None     # hostrun.HostRun holding the lock and journal (None: called without one)
    prescans = None    # prescan.Prescans: transcript first passes made ahead on other cores (or None)

    def __init__(self, state_dir, run_id, now_ms, dry_run, backups, operations, progress_stream=None):
        self.state_dir = state_dir
        self.run_id = run_id
        self.now_ms = int(now_ms)
        self.dry_run = bool(dry_run)
        self.backups = backups
        self.operations = operations or {}
        self.health = None  # the plan's health thresholds (protocol.validate_health), None: defaults
        self._progress = progress_stream if progress_stream is not None else sys.stderr

    def rel(self, abs_path):
        """Path relative to the state dir, as reported."""
        return os.path.relpath(abs_path, self.state_dir)

    def progress(self, **event):
        """One JSON line on stderr; never fails the run. A broken pipe means the controller is
        gone: the run then stops at the next safe point (when it watches for that)."""
        try:
            self._progress.write(json.dumps(event, sort_keys=True) + "\n")
            self._progress.flush()
        except (OSError, ValueError):
            if self.stop is not None:
                self.stop.output_broken()

    def journal_done(self, rec):
        """Journal a changed file's record after its atomic swap (changing runs only)."""
        if self.journal is not None and (rec.get("action") not in (None, "none") or rec.get("backup")):
            try:
                self.journal.done(rec)
            except OSError:
                pass    # its `backup` line is there: reading the journal judges the file on disk


def stats(bytes_, records, sha256=None):
    return {"bytes": int(bytes_), "records": int(records), "sha256": sha256}


def file_record(agent, path, kind, before, after=None, action="none", actions=None,
                backup=None, error=None, notes=None, archived_to=None, session_key=None):
    """One file's entry in the result. `after` defaults to `before` (nothing changed).

    `backup` is the dict returned by BackupStore.backup (or None).
    """
    if actions is None:
        actions = [] if action == "none" else [action]
    rec = {
        "agent": agent,
        "path": path,
        "kind": kind,
        "action": action,
        "actions": list(actions),
        "before": dict(before),
        "after": dict(after if after is not None else before),
        "backup": backup["path"] if backup else None,
        "backup_sha256": backup["sha256"] if backup else None,
        "archived_to": archived_to,
        "notes": list(notes or []),
        "error": error,
    }
    if session_key is not None:
        rec["session_key"] = session_key
    return rec


class FileInfo(object):
    """One file found under an agent's folder (discovery's output, every operation's input).

    kind: store, transcript, trajectory, checkpoint, sqlite, legacy, orphan, archive, temp,
    lock, other. session_id: the id the file name carries (None when it carries none).
    """

    __slots__ = ("agent", "path", "rel", "kind", "size", "mtime_ns", "session_id", "topic")

    def __init__(self, agent, path, rel, kind, size, mtime_ns, session_id=None, topic=None):
        self.agent = agent
        self.path = path
        self.rel = rel
        self.kind = kind
        self.size = size
        self.mtime_ns = mtime_ns
        self.session_id = session_id
        self.topic = topic

    def __repr__(self):
        return "FileInfo(%r, %r, %s)" % (self.agent, self.rel, self.kind)


class AgentFiles(object):
    """Everything discovery learnt about one agent.

    files: [FileInfo] (every regular file and symlink under the agent dir);
    problems: {rel: message} for files/dirs that could not be looked at (symlinks, permissions);
    store_info: the FileInfo of sessions.json or None; store: the parsed store or None;
    store_problem: (check, detail) when the store is empty, not JSON or of the wrong shape;
    store_usable: the store parsed into {key: entry-object} (store-dependent operations may run);
    era: json | sqlite | half-migrated | empty; error: a message when the agent itself is refused.
    """

    def __init__(self, agent, agent_dir, state_dir):
        self.agent = agent
        self.dir = agent_dir
        self.state_dir = state_dir
        self.sessions_dir = os.path.join(agent_dir, "sessions")
        self.files = []
        self.problems = {}
        self.store_info = None
        self.store = None
        self.store_problem = None
        self.store_usable = False
        self.era = "empty"
        self.error = None

    def by_kind(self, *kinds):
        return [f for f in self.files if f.kind in kinds]

    def __repr__(self):
        return "AgentFiles(%r, era=%s, %d files)" % (self.agent, self.era, len(self.files))
