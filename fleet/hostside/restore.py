"""Plan mode "restore": put a run's backups back, verified, without overwriting newer work.

`run_restore(ctx, restore_section)` takes the plan's `restore` object
    {"files": [{"path": rel, "backup": abs, "backup_sha256": sha, "expect_sha256": sha or null,
                "archived_to": rel or null, "agent": id?, "kind": kind?}], "force": bool}
and returns one file record per entry (action "restore", or "none" when the file already
holds the backup's bytes, or an error and no write).

For each file, in this order:
1. `path` must lie inside the state dir and `backup` inside the host's backup folders
   (`<state>/fleet-backups/`, or the parent of this run's own backup dir).
2. The backup is read whole and its sha256 checked against `backup_sha256` (a `.gz` backup is
   decompressed): a damaged backup is never restored.
3. The file as it is now is compared with `expect_sha256`, the sha256 it had right after the run
   (null when the run deleted or archived it, i.e. the path should not exist now). If it
   differs, the file changed since the run and is refused ("changed since the run; use
   --force") unless `force`. A transcript a live session holds (`<file>.lock`) is never
   replaced, not even with `force`.
4. What is overwritten is backed up first (verified, through ctx.backups, into this restore
   run's own backup folder), so a forced restore loses nothing either.
5. The backup is written to a temp file in the same folder (mode of the file it replaces, 0600
   when the file is gone), fsynced, checked again, renamed over the path, and the folder fsynced.
6. When the run archived the file (`archived_to`, OpenClaw's `<file>.deleted.<ts>` rename), the
   archive is removed only if its sha256 equals the backup's — it is then an exact duplicate of
   the restored file (and the backup remains). A different archive is left in place, with a note.

A store (`sessions.json`) is restored under OpenClaw's store lock (locks.StoreLock), like every
store write: a lock held by a live gateway refuses the file ("store locked by live pid N").
A dry run does steps 1–3 and reports what would happen; it writes nothing. Stdlib only.
"""
import gzip
import io
import json
import os
import stat
import zlib

from .context import file_record, stats
from .fsutil import (FileError, HashSink, abandon_backup, copy_stream, describe_oserror, fsync_dir, hash_file,
                     hash_stream, inside, makedirs_private, open_nofollow, sig, unlink_quiet)

CHANGED = "changed since the run; use --force to overwrite it (it is backed up first)"


class _BackupReader(object):
    """A backup's original bytes (gunzipped if `.gz`), opened without following a symlink;
    closing it closes the file underneath too."""

    def __init__(self, path):
        self._raw = os.fdopen(open_nofollow(path), "rb")
        self._f = gzip.GzipFile(fileobj=self._raw, mode="rb") if path.endswith(".gz") else self._raw

    def read(self, n):
        return self._f.read(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self._f.close()
        finally:
            self._raw.close()


def _open_backup(path):
    return _BackupReader(path)


def backup_digest(path):
    """(bytes, sha256, newlines) of a backup's original content (gunzipped if `.gz`)."""
    with _open_backup(path) as f:
        return hash_stream(f)


def _records(kind, newlines, size, read=None):
    """Records as the rest of the agent counts them: transcript lines after the header, store
    entries (`read()` gives the store's bytes); 0 for other kinds."""
    if kind == "transcript" and size:
        return max(0, newlines - 1)
    if kind == "store" and size and read is not None:
        try:
            doc = json.loads(read().decode("utf-8"))
        except (OSError, ValueError, EOFError, zlib.error):
            return 0
        return len(doc) if isinstance(doc, dict) else 0
    return 0


def _read_all(path, backup=False):
    def read():
        if backup:
            with _open_backup(path) as f:
                return copy_stream(f, io.BytesIO()).getvalue()
        with os.fdopen(open_nofollow(path), "rb") as f:
            return f.read()
    return read


def _backup_roots(ctx):
    roots = [os.path.join(ctx.state_dir, "fleet-backups")]
    own = getattr(ctx.backups, "root", None)
    if own and os.path.isabs(own):     # ("controller:RUN" when the backups go to the controller)
        roots.append(os.path.dirname(own.rstrip(os.sep)))
    return roots


def _current(path):
    """(lstat, bytes, sha256, newlines) of the file at `path`, or None when it does not exist."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise FileError("not a regular file (symlink or special), left alone")
    size, digest, newlines = hash_file(path)
    return st, size, digest, newlines


def _write_from_backup(backup_path, path, want_sha, mode):
    """Copy the backup's content to `path` atomically; raise FileError if it does not verify."""
    folder = os.path.dirname(path)
    tmp = os.path.join(folder, ".%s.fleet-restore-%d.tmp" % (os.path.basename(path), os.getpid()))
    try:
        out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        os.fchmod(out_fd, mode)
        with os.fdopen(out_fd, "wb") as out:
            with _open_backup(backup_path) as src:
                sink = copy_stream(src, HashSink(out))
            out.flush()
            os.fsync(out.fileno())
        if sink.sha256 != want_sha or hash_file(tmp)[1] != want_sha:
            raise FileError("restored copy does not match the backup's checksum; nothing restored")
        return tmp
    except OSError as exc:
        unlink_quiet(tmp)
        raise FileError(describe_oserror(exc, "writing the restored file"))
    except BaseException:
        unlink_quiet(tmp)
        raise


def _same_owner(path, st):
    """Give the restored file the owner of what it replaces (or of its folder), where we may."""
    try:
        os.chown(path, st.st_uid, st.st_gid)
    except OSError:
        pass


def restore_file(ctx, item, force):
    """Restore one entry of the plan; returns its file record (never raises FileError).

    A backup kept on the controller (`backup` = "controller:N", backup_to = "controller") is
    fetched first over the run's connection into a temp file next to the file (sha256-checked
    as it is written, like any backup), restored from there, and the temp file removed."""
    if str(item.get("backup") or "").startswith("controller:"):
        return _restore_from_controller(ctx, item, force)
    return _restore_file(ctx, item, force)


def _restore_from_controller(ctx, item, force):
    from .backupstream import Channel, ControllerBackups
    rel = item["path"]
    path = os.path.join(ctx.state_dir, rel)
    if os.path.isabs(rel) or ".." in rel.split("/") or not inside(ctx.state_dir, path):
        return _restore_file(ctx, item, force)           # refused there, with the usual message
    fetcher = ctx.backups if hasattr(ctx.backups, "fetch") else ControllerBackups(Channel.of_process(), None)
    folder = os.path.dirname(path)
    fetched = os.path.join(folder, ".%s.fleet-fetch-%d.tmp" % (os.path.basename(path), os.getpid()))
    try:
        if not os.path.isdir(folder):
            makedirs_private(folder)
        fd = os.open(fetched, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as out:
            fetcher.fetch(item["backup"].split(":", 1)[1], out)
            out.flush()
            os.fsync(out.fileno())
        return _restore_file(ctx, dict(item, backup=fetched), force, fetched=fetched)
    except (FileError, OSError, ValueError) as exc:
        message = describe_oserror(exc, "fetching the backup") if isinstance(exc, OSError) else str(exc)
        agent = item.get("agent") or ""
        return file_record(agent, rel, item.get("kind") or "other", stats(0, 0, None), action="restore",
                           actions=["restore"], error="%s; nothing restored" % message)
    finally:
        unlink_quiet(fetched)


def _restore_file(ctx, item, force, fetched=None):
    rel = item["path"]
    agent = item.get("agent") or (rel.split("/")[1] if rel.startswith("agents/") and rel.count("/") >= 2 else "")
    kind = item.get("kind") or "other"
    path = os.path.join(ctx.state_dir, rel)
    empty = stats(0, 0, None)

    def refuse(message, before=empty):
        return file_record(agent, rel, kind, before, action="restore", actions=["restore"], error=message)

    if os.path.isabs(rel) or ".." in rel.split("/") or not inside(ctx.state_dir, path):
        return refuse("path is outside the state dir; refused")
    backup_path = item["backup"]
    if _is_sqlite(rel, kind) and "#" not in rel and os.path.basename(rel) == "openclaw-agent.sqlite":
        # Through SQLite's backup API under the database's lock, never as a file copy (sqlite_restore.py).
        from .sqlite_restore import restore_database
        return restore_database(ctx, item, force, _backup_roots(ctx), CHANGED)
    if _is_sqlite(rel, kind):
        # Copying a file over a WAL database a gateway has open corrupts it; its -wal would be
        # replayed onto foreign pages. Only a person who has stopped the gateway may do this.
        return refuse("a SQLite database is not restored by fleet while OpenClaw may have it open: stop the "
                      "gateway, copy %s over %s and delete %s-wal and %s-shm" % (backup_path, rel, rel, rel))
    if backup_path != fetched and (not os.path.isabs(backup_path)
                                   or not any(inside(root, backup_path) for root in _backup_roots(ctx))):
        return refuse("backup %s is outside the backup folders; refused" % backup_path)
    try:
        now = _current(path)
    except (FileError, OSError) as exc:
        return refuse(str(exc) if isinstance(exc, FileError) else describe_oserror(exc, "reading " + rel))
    before = empty if now is None else stats(now[1], _records(kind, now[3], now[1], _read_all(path)), now[2])
    try:
        size, digest, newlines = backup_digest(backup_path)
    except FileNotFoundError:
        return refuse("backup no longer exists (old runs' backups expire per the playbook's backup "
                      "keep_runs / max_age); nothing restored", before)
    except (OSError, EOFError, zlib.error) as exc:
        return refuse("backup unreadable (%s); nothing restored" % (getattr(exc, "strerror", None) or exc), before)
    want = item.get("backup_sha256")
    if not want or digest != want:
        return refuse("backup is damaged: its sha256 is not the one recorded; nothing restored", before)
    after = stats(size, _records(kind, newlines, size, _read_all(backup_path, backup=True)), digest)
    archive, notes = _duplicate_archive(ctx, item.get("archived_to"), digest)
    if now is None and archive is not None:
        # The bytes are on disk already, under the archive name (counted as the agent's files).
        before = after
    if now is not None and now[2] == digest:
        notes.append("already as in the backup")
        if archive is not None and not ctx.dry_run:
            notes.extend(_drop_archive(archive, item["archived_to"]))
        return file_record(agent, rel, kind, before, after, action="none", notes=notes)
    current_sha = None if now is None else now[2]
    if current_sha != item.get("expect_sha256") and not force:
        return refuse(CHANGED if now is not None else "missing since the run; use --force to restore it", before)
    busy = _in_use(ctx, path)
    if busy:
        return refuse("%s; restore it when the session is idle" % busy, before)
    if ctx.dry_run:
        return file_record(agent, rel, kind, before, after, action="restore", actions=["restore"])

    saved = None
    placed = False
    try:
        if now is not None:
            saved = ctx.backups.backup(path, rel)
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):
            makedirs_private(folder)
        mode = stat.S_IMODE(now[0].st_mode) if now is not None else 0o600
        tmp = _write_from_backup(backup_path, path, digest, mode)
        _same_owner(tmp, now[0] if now is not None else os.stat(folder))
        try:
            if now is not None:
                st = os.lstat(path)
                if sig(st) != sig(now[0]):
                    raise FileError("%s changed while it was being restored; left as it was" % rel)
            elif os.path.lexists(path):
                raise FileError("%s appeared while it was being restored; left as it was" % rel)
            os.rename(tmp, path)
            tmp, placed = None, True
            fsync_dir(folder)
        finally:
            if tmp is not None:
                unlink_quiet(tmp)
    except (FileError, OSError) as exc:
        if not placed and saved is not None:
            # Not restored: the copy of what was there protects nothing and would only cost space.
            exc = abandon_backup(ctx.backups, saved, exc if isinstance(exc, FileError) else
                                 FileError(describe_oserror(exc, "restoring " + rel)))
            saved = None
        elif isinstance(exc, OSError):
            exc = FileError(describe_oserror(exc, "restoring " + rel))
        return file_record(agent, rel, kind, before, action="restore", actions=["restore"], backup=saved,
                           error=str(exc))
    if archive is not None:
        notes.extend(_drop_archive(archive, item["archived_to"]))
    return file_record(agent, rel, kind, before, after, action="restore", actions=["restore"], backup=saved,
                       notes=notes)


def _is_sqlite(rel, kind):
    base = os.path.basename(rel.split("#", 1)[0])
    return kind == "sqlite" or "#" in rel or base.endswith((".sqlite", ".sqlite-wal", ".sqlite-shm"))


def _duplicate_archive(ctx, archived_rel, digest):
    """(absolute path of the run's archive if it holds exactly the backup's bytes, else None; notes)."""
    if not archived_rel:
        return None, []
    archive = os.path.join(ctx.state_dir, archived_rel)
    if os.path.isabs(archived_rel) or not inside(ctx.state_dir, archive) or not os.path.lexists(archive):
        return None, []
    try:
        st = os.lstat(archive)
        if stat.S_ISREG(st.st_mode) and hash_file(archive)[1] == digest:
            return archive, []
    except OSError:
        pass
    return None, ["archive %s differs from the backup; left in place" % archived_rel]


def _drop_archive(archive, archived_rel):
    """Remove a duplicate archive after the restore; return notes."""
    try:
        os.unlink(archive)
        fsync_dir(os.path.dirname(archive))
    except OSError as exc:
        return ["archive %s left in place: %s" % (archived_rel, describe_oserror(exc, "removing it"))]
    return ["removed archive %s (same bytes as the restored file)" % archived_rel]


def _in_use(ctx, path):
    """Why a transcript may not be replaced now (a live process holds `<file>.lock`), or None.
    Even --force does not override this: the session is being written this very moment."""
    if not path.endswith(".jsonl"):
        return None
    from .locks import transcript_in_use

    busy, detail = transcript_in_use(path, ctx.now_ms)
    return detail if busy else None


def _is_store(ctx, item):
    path = os.path.join(ctx.state_dir, item["path"])
    return ((item.get("kind") == "store" or os.path.basename(item["path"]) == "sessions.json")
            and not os.path.isabs(item["path"]) and inside(ctx.state_dir, path))


def restore_store(ctx, item, force, lock_wait_s=None):
    """Restore a `sessions.json` under OpenClaw's store lock, as every store write must be: a
    gateway writing the store meanwhile would otherwise overwrite the restore, or be overwritten."""
    from .locks import LOCK_WAIT_S, StoreLock

    path = os.path.join(ctx.state_dir, item["path"])
    lock = StoreLock(path, ctx.now_ms, dry_run=ctx.dry_run,
                     wait_s=LOCK_WAIT_S if lock_wait_s is None else lock_wait_s)
    try:
        with lock:
            record = restore_file(ctx, item, force)
    except FileError as exc:
        return file_record(item.get("agent") or "", item["path"], "store", stats(0, 0, None), action="restore",
                           actions=["restore"], error=str(exc), notes=lock.notes)
    record["notes"].extend(lock.notes)
    return record


def run_restore(ctx, restore_section, lock_wait_s=None):
    """Restore every file of the plan's restore section; returns the list of file records."""
    force = bool(restore_section.get("force"))
    records = []
    for item in restore_section.get("files") or []:
        if getattr(ctx, "stop", None) is not None:
            ctx.stop.check()   # between files: a restore stops like a run when the controller goes
        ctx.progress(event="file", agent=item.get("agent") or "", path=item.get("path"), action="restore")
        if _is_store(ctx, item):
            record = restore_store(ctx, item, force, lock_wait_s)
        else:
            record = restore_file(ctx, item, force)
        records.append(record)
        if hasattr(ctx, "journal_done"):
            ctx.journal_done(record)
    return records
