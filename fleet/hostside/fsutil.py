"""Safe file primitives of the agent: hashing, counting, verified backups, atomic rewrites.

Every change the agent makes to a user's file goes through `safe_rewrite` (new content) or
`safe_rename` (archive). Both back the file up first (verified by sha256 against the bytes as
read), and `safe_rewrite` writes a temp file in the same folder, fsyncs it, renames it over the
original and fsyncs the folder, re-checking that nobody changed the original meanwhile.

Stdlib only, Python >= 3.8.
"""
import errno
import gzip
import hashlib
import os
import re
import stat
import time

from .replace import swap_in

CHUNK = 1 << 20
LATE_APPEND_GRACE_S = 0.1
FAULT_AT_ENV = "FLEET_AGENT_FAULT_AT"
FAULT_LOG_ENV = "FLEET_AGENT_FAULT_LOG"
FAULT_STOP_ENV = "FLEET_AGENT_FAULT_STOP"
SAFE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class _FaultPoints(object):
    """Test instrumentation: count the agent's write steps, optionally die at one of them.

    With $FLEET_AGENT_FAULT_LOG set, every write step appends "N PHASE STEP" to that file; with
    $FLEET_AGENT_FAULT_AT=N the agent SIGKILLs itself at step N; with $FLEET_AGENT_FAULT_STOP=N
    or =PHASE:STEP (e.g. "trim:temp-written") it stops itself (SIGSTOP) once, at step N or the
    first step of that name, so a test acts while it is frozen mid-write (a gateway writes, the
    connection drops) and then continues or kills it: an event, not a race against a clock.
    All unset (always, outside the reliability tests) costs one attribute check per step. The
    orchestrator names the phase; the steps of a backup report phase "backup" whatever operation
    took it (the step names it: "backup-written(trim)").
    """

    def __init__(self):
        self.at = int(os.environ.get(FAULT_AT_ENV) or 0)
        self.log = os.environ.get(FAULT_LOG_ENV) or None
        self.stop = os.environ.get(FAULT_STOP_ENV) or None
        self.count = 0
        self.phase = "run"

    def hit(self, step):
        if not self.at and not self.log and not self.stop:
            return
        self.count += 1
        phase = self.phase
        if step.startswith("backup-"):
            phase, step = "backup", "%s(%s)" % (step, self.phase)
        if self.log:
            with open(self.log, "a") as f:
                f.write("%d %s %s\n" % (self.count, phase, step))
        if self.stop is not None and self.stop in (str(self.count), "%s:%s" % (phase, step)):
            import signal
            self.stop = None
            os.kill(os.getpid(), signal.SIGSTOP)
        if self.count == self.at:
            import signal
            os.kill(os.getpid(), signal.SIGKILL)


FAULTS = _FaultPoints()


def set_phase(phase):
    """Name the operation now running (trim, prune, archive, rotate, delete, restore); test hooks only."""
    FAULTS.phase = phase


class FileError(Exception):
    """A problem with one file; the file is left untouched. The message is for a person."""


class BackupError(FileError):
    pass


class FileChanged(FileError):
    """The original changed while we worked on it (and cannot be carried over)."""


def is_safe_id(value):
    """True for OpenClaw's safe session-id names; anything else is never used as a path."""
    return isinstance(value, str) and bool(SAFE_ID_RE.match(value)) and ".." not in value


def inside(base, path):
    """True when `path`, with symlinks resolved, lies inside `base` (also resolved)."""
    base_r = os.path.realpath(base)
    path_r = os.path.realpath(path)
    return path_r == base_r or path_r.startswith(base_r.rstrip(os.sep) + os.sep)


def open_nofollow(path, flags=os.O_RDONLY):
    """Open without following a symlink in the last component; returns a raw fd.

    O_NONBLOCK: a FIFO swapped in for a file must not hang the agent in open() (no effect on
    regular files).
    """
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
                   | getattr(os, "O_NONBLOCK", 0))


def sig(st):
    """What identifies a file's content cheaply: inode, size, mtime."""
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class HashSink(object):
    """A write target that hashes and counts what passes through, and optionally writes it.

    `records` counts newline characters, which is the record count of a transcript (the
    header line is subtracted by the caller).
    """

    def __init__(self, fileobj=None, count_newlines=True):
        self.fileobj = fileobj
        self._h = hashlib.sha256()
        self.bytes = 0
        self.newlines = 0
        self._count = count_newlines     # False for backups: nobody asks, and it is a pass over every byte
        self._last = b"\n"

    def write(self, data):
        if not data:
            return 0
        self._h.update(data)
        self.bytes += len(data)
        if self._count:
            self.newlines += data.count(b"\n")
        self._last = data[-1:]
        if self.fileobj is not None:
            self.fileobj.write(data)
        return len(data)

    @property
    def sha256(self):
        return self._h.hexdigest()

    @property
    def lines(self):
        """Lines written; a final line without a newline counts too."""
        return self.newlines + (0 if self._last == b"\n" else 1)


def copy_stream(src, sink):
    """Copy what is left to read in `src` into `sink` (anything with write()) in big chunks."""
    while True:
        b = src.read(CHUNK)
        if not b:
            return sink
        sink.write(b)


def hash_stream(f):
    """Return (bytes, sha256, newlines) of what is left to read in binary file object `f`."""
    sink = copy_stream(f, HashSink())
    return sink.bytes, sink.sha256, sink.newlines


def hash_file(path):
    """Return (bytes, sha256, newlines) of a regular file, reading it once in big chunks."""
    with os.fdopen(open_nofollow(path), "rb") as f:
        return hash_stream(f)


def count_lines(path):
    """Count lines in big chunks without parsing (fast path of scan).

    A final line without a newline counts. A transcript's records are its lines minus the
    header: `max(0, count_lines(p) - 1)`.
    """
    n = 0
    last = b"\n"
    fd = open_nofollow(path)
    with os.fdopen(fd, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            n += b.count(b"\n")
            last = b[-1:]
    return n + (0 if last == b"\n" else 1)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_private(path):
    """Create `path` and its missing parents with mode 0700; returns the folders it created,
    outermost first (so a caller that gives up can remove exactly those again)."""
    if os.path.isdir(path):
        return []
    made = []
    parent = os.path.dirname(path.rstrip(os.sep))
    if parent and not os.path.isdir(parent):
        made = makedirs_private(parent)
    try:
        os.mkdir(path, 0o700)
        made.append(path)
    except FileExistsError:
        # Made meanwhile by another run, or a file or symlink in the way: never chmod through it.
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise OSError(errno.ENOTDIR, "not a folder", path)
    os.chmod(path, 0o700)
    return made


def describe_oserror(exc, what):
    """One line for a person: 'no space for backup', 'permission denied: …'."""
    if exc.errno == errno.ENOSPC:
        return "no space for %s (%s)" % (what, exc.filename or "disk full")
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded for %s" % what
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied for %s: %s" % (what, exc.filename or "")
    if exc.errno == errno.ELOOP:
        return "refusing to follow a symlink for %s: %s" % (what, exc.filename or "")
    if exc.errno == errno.EROFS:
        return "read-only file system for %s" % what
    return "%s failed: %s" % (what, exc.strerror or exc)


class BackupStore(object):
    """The run's backup directory on the host (0700 dirs, 0600 files).

    `backup(abs_path, rel_path)` copies the file, fsyncs it, re-reads the copy and checks its
    sha256 against the bytes read from the source. With `expect=(bytes, sha256)` (what the caller
    read and planned on, e.g. a transcript's scan) it copies exactly the first `bytes` bytes in the
    kernel (copy_file_range: no pass through Python, a shared extent on reflink file systems) and
    checks the copy against that sha256; if the file no longer starts with those bytes, it copies
    the file as it is now, as without `expect`. It returns a dict
    {"path", "sha256", "bytes", "stored_bytes"}; on any failure it removes the partial copy (and
    the folders it made for it) and raises BackupError, and the caller must not touch the original.

    `discard(backup)` takes back a backup whose change did not happen (fsutil.abandon_backup):
    the copy goes, and so do the folders this store made that are empty again, so a change that
    cannot complete costs no space. `tidy()` removes this store's empty folders at the end of a run.
    """

    def __init__(self, root, use_gzip=False, dry_run=False, refuse_links=()):
        self.root = root
        self.gzip = bool(use_gzip)
        self.dry_run = dry_run
        self.stored_bytes = 0
        # Folders that must not be symlinks: whoever can write the state dir could otherwise point
        # <state>/fleet-backups anywhere and have this run write copies there.
        self.refuse_links = tuple(refuse_links)
        self._made = []          # folders this store created, outermost first

    def target_for(self, rel_path):
        rel = rel_path.lstrip("/")
        return os.path.join(self.root, rel + (".gz" if self.gzip else ""))

    def backup(self, abs_path, rel_path, expect=None):
        target = self.target_for(rel_path)
        n = 2
        while not self.dry_run and os.path.lexists(target):
            # A file changed twice in one run keeps every version: x, x.2, x.3 ...
            target = self.target_for(rel_path + ".%d" % n)
            n += 1
        if self.dry_run:
            size, digest, _ = hash_file(abs_path)
            return {"path": None, "sha256": digest, "bytes": size, "stored_bytes": 0}
        for folder in self.refuse_links:
            if os.path.islink(folder):
                raise BackupError("the backup folder %s is a symlink; backups are never written through a "
                                  "link (remove it, or set backup.dir to a real folder)" % folder)
        # The pid in the name lets a later run tell a killed run's partial copy from a live one's.
        tmp = "%s.%d.part" % (target, os.getpid())
        try:
            self._made.extend(makedirs_private(os.path.dirname(target)))
            if expect is not None and not self.gzip and self._copy_expected(abs_path, tmp, expect):
                return self._install(tmp, target, expect[0], expect[1])
            src_fd = open_nofollow(abs_path)
            with os.fdopen(src_fd, "rb") as src:
                out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(out_fd, "wb") as raw:
                    out = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if self.gzip else raw
                    sink = copy_stream(src, HashSink(out, count_newlines=False))
                    if self.gzip:
                        out.close()
                    raw.flush()
                    FAULTS.hit("backup-written")
                    os.fsync(raw.fileno())
            FAULTS.hit("backup-synced")
            if self._digest_of_copy(tmp) != sink.sha256:
                raise BackupError("backup verification failed for %s: copy differs from source" % rel_path)
            return self._install(tmp, target, sink.bytes, sink.sha256)
        except BackupError:
            unlink_quiet(tmp)
            self.tidy()
            raise
        except OSError as exc:
            unlink_quiet(tmp)
            self.tidy()
            raise BackupError(describe_oserror(exc, "backup"))
        except BaseException:
            unlink_quiet(tmp)
            self.tidy()
            raise

    def _install(self, tmp, target, size, digest):
        """Rename a verified, fsynced copy to its name and fsync the folder; the backup's record.

        A failure after the rename (the folder's fsync) removes the copy again: a backup the
        caller never heard of would be space lost for nothing."""
        os.rename(tmp, target)
        try:
            FAULTS.hit("backup-renamed")
            fsync_dir(os.path.dirname(target))
            FAULTS.hit("backup-done")
            stored = os.stat(target).st_size
        except BaseException:
            unlink_quiet(target)
            raise
        self.stored_bytes += stored
        return {"path": target, "sha256": digest, "bytes": size, "stored_bytes": stored}

    def discard(self, backup):
        """Remove a backup this store made whose change did not happen; OSError if it cannot."""
        path = backup.get("path") if backup else None
        if not path:
            return
        os.unlink(path)
        self.stored_bytes = max(0, self.stored_bytes - int(backup.get("stored_bytes") or 0))
        fsync_dir(os.path.dirname(path))
        self.tidy()

    def tidy(self):
        """Remove the folders this store created that are empty (innermost first)."""
        for folder in reversed(self._made):
            try:
                os.rmdir(folder)
            except OSError:
                continue     # not empty (other backups), or gone: both fine
        self._made = [d for d in self._made if os.path.isdir(d)]

    def _copy_expected(self, abs_path, tmp, expect):
        """Copy the first expect[0] bytes to `tmp` (0600, fsynced); True when the copy's sha256 is
        expect[1]. False (and no `tmp`) when the file is shorter or differs: it changed since the
        caller read it. OSError (a full disk…) propagates."""
        size, digest = expect
        src_fd = open_nofollow(abs_path)
        try:
            if os.fstat(src_fd).st_size < size:
                return False
            out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                copied = kernel_copy(src_fd, out_fd, size)
                FAULTS.hit("backup-written")
                os.fsync(out_fd)
            finally:
                os.close(out_fd)
        finally:
            os.close(src_fd)
        FAULTS.hit("backup-synced")
        if copied == size and self._digest_of_copy(tmp) == digest:
            return True
        unlink_quiet(tmp)
        return False

    def _digest_of_copy(self, path):
        h = hashlib.sha256()
        opener = gzip.open if self.gzip else open
        with opener(path, "rb") as f:
            while True:
                b = f.read(CHUNK)
                if not b:
                    break
                h.update(b)
        return h.hexdigest()


_NO_KERNEL_COPY = (errno.ENOSYS, errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF)


def kernel_copy(src_fd, out_fd, size):
    """Copy bytes [0, size) of src_fd to out_fd at the same offsets; returns the bytes copied
    (fewer when the source is shorter). copy_file_range where the system has it (Linux >= 4.5;
    an in-kernel copy, or a reflink on btrfs/XFS), else pread/pwrite in CHUNK pieces."""
    fast = getattr(os, "copy_file_range", None)
    done = 0
    while done < size:
        if fast is not None:
            try:
                n = fast(src_fd, out_fd, min(size - done, 1 << 30), done, done)
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY:
                    raise
                fast = None
                continue
        else:
            data = os.pread(src_fd, min(CHUNK, size - done), done)
            n = 0
            while n < len(data):
                n += os.pwrite(out_fd, data[n:], done + n)
        if n <= 0:
            break
        done += n
    return done


def unlink_quiet(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def abandon_backup(backups, backup, exc):
    """The change `backup` was taken for did not happen (`exc` says why): remove that backup and
    return the FileError to raise, its message saying what became of the backup.

    The original is as it was, so the copy protects nothing and only costs space; on a full disk
    it is the space the next file needs. Exceptions that are not a FileError or OSError (a bug)
    are returned unchanged after the backup went.
    """
    note = None
    if backup and backup.get("path"):
        discard = getattr(backups, "discard", None)
        try:
            if discard is None:
                raise OSError(errno.ENOSYS, "this backup store cannot take a backup back")
            discard(backup)
            note = "nothing was changed, and the backup taken for this change was removed"
        except OSError as err:
            note = "nothing was changed; its backup %s could not be removed: %s" % (
                backup["path"], err.strerror or err)
    if isinstance(exc, FileError):
        return type(exc)("%s; %s" % (exc, note)) if note else exc
    if isinstance(exc, OSError):
        message = describe_oserror(exc, "rewriting")
        return FileError("%s; %s" % (message, note) if note else message)
    return exc


def regular_file_stat(path, rel_path):
    """lstat of `path`; FileError (the file left alone) when it is unreadable, a symlink or special."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise FileError(describe_oserror(exc, "reading " + rel_path))
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise FileError("not a regular file (symlink or special), left alone: %s" % rel_path)
    return st


def safe_rewrite(path, rel_path, produce, backups, dry_run, carry_appends=False):
    """Replace the file at `path` by what `produce(src, sink)` writes, without ever losing it.

    `produce(src, sink)` reads the source (a LimitedReader over exactly the bytes that were
    backed up: seekable, line-iterable) and writes the new content to `sink` (a HashSink). If the
    source ends without a newline (crash-truncated, or a writer mid-append), `produce` must
    write that fragment verbatim at the end, so appended bytes carried over complete it. Returns
    a dict {"before": {...}, "after": {...}, "backup": {...} or None, "notes": [...]}.

    Order: back up and verify; write a temp file in the same folder with the original's mode
    (and owner where we may); fsync; re-check the original; rename over (an atomic exchange where
    the system has one, so a version another process renamed in after the re-check is noticed
    and put back: FileChanged, see replace.py); fsync the folder.
    If the original grew meanwhile and `carry_appends` is true (append-only transcripts), the
    appended bytes are copied into the new file before the rename, and bytes appended to the
    old inode after the rename are appended to the new file; otherwise FileChanged is raised
    and the original stays as it was. In a dry run nothing is written: the sink only hashes.

    When the change cannot complete (any error before the new version is in place) the file is
    as it was, no temp file stays, and the backup taken for it is removed again
    (abandon_backup; the error says so).
    """
    st0 = regular_file_stat(path, rel_path)
    backup = backups.backup(path, rel_path)
    state = {"in_place": False}
    try:
        return _rewrite(path, rel_path, st0, backup, produce, dry_run, carry_appends, state)
    except BaseException as exc:
        if state["in_place"] or dry_run:
            raise
        raise abandon_backup(backups, backup, exc)


def _rewrite(path, rel_path, st0, backup, produce, dry_run, carry_appends, state):
    """safe_rewrite after the backup; sets state["in_place"] once the new version is at `path`."""
    notes = []
    before = {"bytes": backup["bytes"], "sha256": backup["sha256"]}

    folder = os.path.dirname(path)
    if dry_run:
        sink = HashSink()
        fd = open_nofollow(path)
        with os.fdopen(fd, "rb") as src:
            produce(LimitedReader(src, backup["bytes"]), sink)
        return {"before": before, "after": {"bytes": sink.bytes, "sha256": sink.sha256,
                                            "newlines": sink.newlines},
                "backup": None, "notes": notes}

    tmp = os.path.join(folder, ".%s.fleet-%d.tmp" % (os.path.basename(path), os.getpid()))
    try:
        src_fd = open_nofollow(path)
    except OSError as exc:
        raise FileError(describe_oserror(exc, "reading " + rel_path))
    src = os.fdopen(src_fd, "rb")
    try:
        if sig(os.fstat(src.fileno())) != sig(st0) and not carry_appends:
            raise FileChanged("%s changed while it was being backed up; left as it was" % rel_path)
        try:
            out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IMODE(st0.st_mode))
        except OSError as exc:
            raise FileError(describe_oserror(exc, "writing next to " + rel_path))
        try:
            with os.fdopen(out_fd, "wb") as out:
                sink = HashSink(out)
                produce(LimitedReader(src, backup["bytes"]), sink)
                size_done = backup["bytes"]
                st_now = os.fstat(src.fileno())
                if st_now.st_size != size_done or st_now.st_mtime_ns != st0.st_mtime_ns:
                    if not carry_appends or st_now.st_size < size_done:
                        raise FileChanged("%s changed while it was rewritten; left as it was" % rel_path)
                    size_done = _carry(src, sink, size_done)
                    if size_done > backup["bytes"]:  # (an append before the backup only moves mtime)
                        notes.append("carried %d bytes appended during the trim" % (size_done - backup["bytes"]))
                out.flush()
                FAULTS.hit("temp-written")
                os.fsync(out.fileno())
                FAULTS.hit("temp-synced")
            try:
                os.chown(tmp, st0.st_uid, st0.st_gid)
            except OSError:
                pass
            st_path = os.lstat(path)
            if st_path.st_ino != st0.st_ino:
                raise FileChanged("%s was replaced by another process meanwhile; left as it was" % rel_path)
            if st_path.st_size != size_done and not carry_appends:
                raise FileChanged("%s changed while it was rewritten; left as it was" % rel_path)
            grown, rounds = st_path.st_size, 0
            while carry_appends and grown > size_done and rounds < 20:
                with open(tmp, "ab") as out:
                    sink.fileobj = out
                    size_done = _carry(src, sink, size_done)
                    out.flush()
                    os.fsync(out.fileno())
                # Look again just before the rename: what a live writer appends to the old inode
                # while we fsync would otherwise be carried after lines it writes to the new one.
                grown, rounds = os.fstat(src.fileno()).st_size, rounds + 1
            FAULTS.hit("before-rename")
            outcome = swap_in(tmp, path, st0.st_ino)
            if outcome == "conflict":
                raise FileChanged("%s was replaced by another process at the last moment; left as it was"
                                  % rel_path)
            state["in_place"] = True
            if outcome == "swapped":
                FAULTS.hit("swapped")
                os.unlink(tmp)  # the old version (backed up), swapped out
            tmp = None
            FAULTS.hit("renamed")
            if carry_appends and os.fstat(src.fileno()).st_size > size_done:
                # At once, before the slow folder fsync: what the writer put in the old inode at
                # the last moment must land before the lines it now appends to the new file.
                late_from = size_done
                with open(path, "ab") as out:
                    sink.fileobj = out
                    size_done = _carry(src, sink, size_done)
                    out.flush()
                    os.fsync(out.fileno())
                notes.append("carried %d bytes appended during the rename" % (size_done - late_from))
            fsync_dir(folder)
            FAULTS.hit("dir-synced")
        except OSError as exc:
            raise FileError(describe_oserror(exc, "rewriting " + rel_path))
        finally:
            if tmp is not None:
                unlink_quiet(tmp)
        if carry_appends:
            # A writer holding the old inode open may still have appended after the rename.
            if size_done > backup["bytes"]:
                # A live writer was seen: give an append it opened before the rename time to land.
                time.sleep(LATE_APPEND_GRACE_S)
            late = os.fstat(src.fileno()).st_size
            if late > size_done:
                with open(path, "ab") as out:
                    sink.fileobj = out
                    _carry(src, sink, size_done)
                    out.flush()
                    os.fsync(out.fileno())
                notes.append("carried %d bytes appended during the rename" % (late - size_done))
    finally:
        src.close()
    return {"before": before, "after": {"bytes": sink.bytes, "sha256": sink.sha256,
                                        "newlines": sink.newlines},
            "backup": backup, "notes": notes}


class LimitedReader(object):
    """A read-only view of the first `limit` bytes of a binary file (seekable, line-iterable).

    `produce` functions get one of these, so that bytes a live writer appends while we work are
    never half-read: they are carried over verbatim afterwards.
    """

    def __init__(self, f, limit):
        self._f = f
        self.limit = limit
        self._f.seek(0)

    def tell(self):
        return self._f.tell()

    def seek(self, pos, whence=0):
        if whence == 2:
            pos = self.limit + pos
            whence = 0
        return self._f.seek(min(pos, self.limit), whence)

    def _allowed(self, n):
        """How many of `n` bytes (None or < 0: all) may be read before the limit."""
        left = max(0, self.limit - self._f.tell())
        return left if n is None or n < 0 or n > left else n

    def read(self, n=-1):
        n = self._allowed(n)
        return self._f.read(n) if n else b""

    def readline(self, n=-1):
        n = self._allowed(n)
        return self._f.readline(n) if n else b""

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line


def _carry(src, sink, offset):
    """Copy bytes from `offset` to the current end of `src` into `sink`; return the new offset."""
    src.seek(offset)
    while True:
        b = src.read(CHUNK)
        if not b:
            break
        sink.write(b)
        offset += len(b)
    return offset


def safe_rename(path, new_path, rel_path, backups, dry_run):
    """Archive by rename (OpenClaw's `<file>.deleted.<ts>`), backing up first.

    Refuses to overwrite an existing `new_path`. Returns the same shape as safe_rewrite.
    """
    st0 = regular_file_stat(path, rel_path)
    if os.path.lexists(new_path):
        raise FileError("archive name already taken, left alone: %s" % os.path.basename(new_path))
    backup = backups.backup(path, rel_path)
    result = {"before": {"bytes": backup["bytes"], "sha256": backup["sha256"]},
              "after": {"bytes": backup["bytes"], "sha256": backup["sha256"]},
              "backup": None if dry_run else backup, "notes": []}
    if dry_run:
        return result
    try:
        if sig(os.lstat(path)) != sig(st0):
            raise FileChanged("%s changed while it was being backed up; left as it was" % rel_path)
        FAULTS.hit("before-archive-rename")
        os.rename(path, new_path)
    except OSError as exc:
        raise abandon_backup(backups, backup, FileError(describe_oserror(exc, "archiving " + rel_path)))
    except BaseException as exc:
        raise abandon_backup(backups, backup, exc)
    try:
        FAULTS.hit("archive-renamed")
        fsync_dir(os.path.dirname(path))
    except OSError as exc:
        raise FileError(describe_oserror(exc, "archiving " + rel_path))
    return result


def archive_timestamp(now_ms):
    """OpenClaw's archive suffix time: ISO with ':' replaced by '-', e.g. 2026-07-01T12-34-56.789Z."""
    import time
    secs, ms = divmod(int(now_ms), 1000)
    return time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(secs)) + ".%03dZ" % ms
