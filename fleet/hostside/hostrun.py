"""What one agent process holds around a plan: the stop signal, the host lock, the journal.

`HostRun(ctx, plan, watch_fd)`:
- always gives the run a `StopSignal` (interrupt.py); with `watch_fd` (fleet's bootstrap passes
  the channel's stdin, 0) end-of-file there, SIGHUP, SIGTERM, SIGINT or a broken progress pipe
  ask the run to stop at the next safe point;
- for a changing plan (a real `run` or `restore`) `open()` takes the host's run lock (runlock.py)
  before anything is written, or raises HostBusy; `backup_store(run_dir, ...)` starts the run's
  journal (journal.py) in its backup folder and returns the BackupStore that journals every
  backup and refuses to start a file once a stop was asked; `finish(result)` keeps the result
  document in the journal; `close()` releases the lock;
- `list_journals(result)` answers the plan's `journals` request (any mode, read-only, never
  waits for the lock): the reconstructed documents of the runs the controller does not hold.
Scans and dry runs take no lock and keep no journal. Stdlib only.
"""
import os
import threading
import time

from .fsutil import BackupStore
from .interrupt import RunInterrupted, StopSignal  # noqa: F401 - RunInterrupted is main.py's to catch
from .journal import Journal, JournaledBackupStore, list_journals
from .protocol import host_info, iso_now
from .runlock import HostBusy, HostLock  # noqa: F401 - HostBusy is main.py's to catch


class HostRun(object):
    def __init__(self, ctx, plan, watch_fd=None):
        self.ctx = ctx
        self.plan = plan
        self.stop = StopSignal()
        ctx.stop = self.stop
        ctx.session = self
        if watch_fd is not None:
            self.stop.watch_fd(watch_fd)
            if threading.current_thread() is threading.main_thread():
                self.stop.install_signals()
        self.changing = plan["mode"] in ("run", "restore") and not plan["dry_run"]
        self.lock = HostLock(ctx.state_dir) if self.changing else None
        self.journal = None

    def origin(self):
        """"user@host" of the controller that sent the plan (else of this agent)."""
        o = self.plan.get("origin") or {}
        if o.get("user") and o.get("host"):
            return "%s@%s" % (o["user"], o["host"])
        info = host_info(self.ctx.state_dir)
        return "%s@%s" % (info["user"], info["hostname"])

    def open(self):
        """Take the host lock for a changing plan; HostBusy (nothing written) if another run has it."""
        if self.lock is not None:
            self.lock.acquire({"run_id": self.plan["run_id"], "origin": self.origin(), "pid": os.getpid(),
                               "started_at": iso_now(), "mode": self.plan["mode"],
                               "playbook": (self.plan.get("origin") or {}).get("playbook")})

    def backup_store(self, run_dir, **kwargs):
        """The run's BackupStore: journaled (and its journal started) for a changing plan."""
        if not self.changing:
            return BackupStore(run_dir, **kwargs)
        if (self.plan.get("backup") or {}).get("to") == "controller":
            # Every backup (and so the record of every change) goes to the controller as it is
            # taken; a journal here would only take space on a disk that is being emptied.
            return JournaledBackupStore(run_dir, None, self.stop, **kwargs)
        origin = dict(self.plan.get("origin") or {})
        origin["controller"] = self.origin()
        journal = Journal(run_dir)
        # Where backups may not be written (a backup folder that is a symlink or a file), the
        # journal is not either: the store refuses every backup there, so nothing changes.
        if not any(os.path.islink(folder) for folder in kwargs.get("refuse_links") or ()):
            try:
                journal.start(self.plan, self.ctx.state_dir, origin)
                self.journal = self.ctx.journal = journal
            except OSError:
                journal.close()
        return JournaledBackupStore(run_dir, self.journal, self.stop, **kwargs)

    def list_journals(self, result):
        request = self.plan.get("journals")
        if request is None:
            return
        try:
            from .runops import backup_root

            parent = backup_root(self.ctx.state_dir, self.plan)[0]
            result["journals"] = list_journals(parent, self.ctx.state_dir, set(request["known"]),
                                               current_run_id=self.plan["run_id"])
        except Exception as exc:  # a journal that cannot be read must not fail this run
            result["journals"] = []
            result["journals_error"] = "%s: %s" % (type(exc).__name__, exc)

    def finish(self, result):
        """Keep `result` in the journal (when there is one); returns it. A run that ended on its
        own without changing any file keeps no journal: there is nothing to undo or to recover."""
        if self.journal is not None and not result.get("interrupted") and result.get("error") is None \
                and not any(f.get("backup") for f in result.get("files") or ()):
            self.journal.discard()
            self.journal = None
        if self.journal is not None:
            if self.stop.requested_at is not None:
                result["stopped_after_s"] = round(time.monotonic() - self.stop.requested_at, 3)
            try:
                wall = self.stop.requested_wall
                self.journal.end(result, "interrupted" if result.get("interrupted") else "complete",
                                 iso_now(wall) if wall is not None else None)
            except OSError as exc:
                result["journal_error"] = "could not close the run's journal: %s" % (exc.strerror or exc)
        return result

    def close(self):
        if self.journal is not None:
            self.journal.close()
        if self.lock is not None:
            self.lock.release()
