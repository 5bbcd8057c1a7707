"""Backups to the controller: streamed over the run's own connection (docs/agent-protocol.md,
"Backups to the controller").

`ControllerBackups` has BackupStore's interface (backup / discard / tidy / stored_bytes), but the
copy goes to the control host: gzip-compressed chunks framed on stdout, and the controller's
answer read from stdin. `backup()` returns only once the controller has stored the copy, read
it back and found the sha256 the agent computed while reading the file, so the original is
never touched before its backup is safe on the other side. Nothing is held whole in memory:
the file is read, hashed and compressed CHUNK by CHUNK.

Frames (agent → controller, on stdout; every line starts with `fleet-backup: `):
    begin {"id": N, "rel": "agents/…"}         a backup of that file starts
    data LEN\\n<LEN bytes>                      the next piece of the gzip stream
    end {"id": N, "bytes": B, "sha256": H}     the source's size and sha256; answer awaited
    abort {"id": N}                            forget backup N (no answer)
    drop {"id": N}                             remove stored backup N (its change did not happen)
    want {"ref": PATH}                         (restore) send me the backup the run recorded as
                                               "controller:PATH"
Answers (controller → agent, on stdin, one line each):
    ok N STORED_BYTES PATH | bad N REASON      to end and drop
    data LEN\\n<LEN bytes> … end | error REASON  to want (the backup's gzip bytes)

`ControllerBackups.fetch(ref, out)` (restore) writes that backup's original bytes to `out`.
Stdlib only, Python >= 3.8.
"""
import hashlib
import json
import os
import sys
import zlib

from .fsutil import CHUNK, FAULTS, BackupError, describe_oserror, open_nofollow

PREFIX = b"fleet-backup: "
PIECE = 256 * 1024       # source bytes per data frame (compressed, usually much less)
ANSWER_MAX = 64 * 1024


class Channel(object):
    """The frames' two ends: binary stdout (shared with the result, which comes last) and stdin."""

    def __init__(self, out=None, inp=None):
        self.out = out
        self.inp = inp

    @classmethod
    def of_process(cls):
        """stdout's and stdin's byte streams; under fleet's bootstrap, sys.__stdin__ is the
        connection's stdin (the plan came from there and was replaced by a copy in memory)."""
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        out = getattr(sys.__stdout__, "buffer", None)
        inp = getattr(sys.__stdin__, "buffer", None)
        return cls(out, inp)

    def send(self, word, payload=None, data=None):
        line = PREFIX + word.encode("ascii")
        if payload is not None:
            line += b" " + json.dumps(payload, sort_keys=True).encode("utf-8")
        if data is not None:
            line += b" %d" % len(data)
        self.out.write(line + b"\n")
        if data is not None:
            self.out.write(data)
        self.out.flush()

    def answer(self):
        """One answer line from the controller (without its newline); BackupError when none."""
        if self.inp is None:
            raise BackupError("no controller to send backups to (stdin is closed)")
        line = self.inp.readline(ANSWER_MAX)
        if not line.endswith(b"\n"):
            raise BackupError("the controller stopped answering (connection closed?); nothing was changed")
        return line[:-1].decode("utf-8", "replace")

    def read_exact(self, n):
        parts = []
        while n > 0:
            part = self.inp.read(n)
            if not part:
                raise BackupError("the controller's stream ended early")
            parts.append(part)
            n -= len(part)
        return b"".join(parts)


class ControllerBackups(object):
    """The run's backups, kept on the control host (BackupStore's interface; see the module)."""

    gzip = True        # the need is not known in advance on this side (space.backup_shortfall)
    where = "controller"

    def __init__(self, channel, run_dir_label, dry_run=False):
        self.channel = channel
        self.root = run_dir_label
        self.dry_run = dry_run
        self.stored_bytes = 0
        self._next = 1

    def backup(self, abs_path, rel_path, expect=None):
        if self.dry_run:
            from .fsutil import hash_file
            size, digest, _ = hash_file(abs_path)
            return {"path": None, "sha256": digest, "bytes": size, "stored_bytes": 0}
        if expect is not None:
            done = self._send(abs_path, rel_path, expect[0], expect[1])
            if done is not None:
                return done
        return self._send(abs_path, rel_path, None, None)

    def _send(self, abs_path, rel_path, limit, want_sha):
        """Stream the file (its first `limit` bytes when given) and wait for the verdict; None
        when the file no longer starts with the `want_sha` bytes (nothing kept on the other side)."""
        n = self._next
        self._next += 1
        try:
            src = os.fdopen(open_nofollow(abs_path), "rb")
        except OSError as exc:
            raise BackupError(describe_oserror(exc, "backup"))
        digest = hashlib.sha256()
        size = 0
        ch = self.channel
        try:
            with src:
                if limit is not None and os.fstat(src.fileno()).st_size < limit:
                    return None
                ch.send("begin", {"id": n, "rel": rel_path})
                packer = zlib.compressobj(6, zlib.DEFLATED, 31)     # 31: a gzip stream
                while limit is None or size < limit:
                    want = PIECE if limit is None else min(PIECE, limit - size)
                    piece = src.read(want)
                    if not piece:
                        break
                    digest.update(piece)
                    size += len(piece)
                    packed = packer.compress(piece)
                    if packed:
                        ch.send("data", data=packed)
                ch.send("data", data=packer.flush())
        except OSError as exc:
            self._abort(n)
            raise BackupError(describe_oserror(exc, "backup"))
        sha = digest.hexdigest()
        if limit is not None and (size != limit or sha != want_sha):
            self._abort(n)
            return None
        FAULTS.hit("backup-written")
        ch.send("end", {"id": n, "bytes": size, "sha256": sha})
        word, rest = self._verdict(n)
        if word != "ok":
            raise BackupError("the controller refused the backup of %s: %s; nothing was changed" % (rel_path, rest))
        stored, path = rest.split(" ", 1)
        FAULTS.hit("backup-done")
        self.stored_bytes += int(stored)
        return {"path": "controller:" + path, "sha256": sha, "bytes": size, "stored_bytes": int(stored),
                "id": n}

    def _abort(self, n):
        try:
            self.channel.send("abort", {"id": n})
        except (OSError, ValueError):
            pass

    def _verdict(self, n):
        line = self.channel.answer()
        parts = line.split(" ", 2)
        if len(parts) < 2 or parts[1] != str(n) or parts[0] not in ("ok", "bad"):
            raise BackupError("the controller answered %r to backup %d; nothing was changed" % (line[:200], n))
        return parts[0], parts[2] if len(parts) > 2 else ""

    def discard(self, backup):
        """Have the controller remove a backup whose change did not happen; OSError if it cannot."""
        if not backup or backup.get("id") is None:
            return
        try:
            self.channel.send("drop", {"id": backup["id"]})
            word, rest = self._verdict(backup["id"])
        except BackupError as exc:
            raise OSError(0, str(exc))
        if word != "ok":
            raise OSError(0, "the controller could not remove it: %s" % rest)
        self.stored_bytes = max(0, self.stored_bytes - int(backup.get("stored_bytes") or 0))

    def tidy(self):
        """Nothing on this host to tidy (the controller keeps its own folders)."""

    def fetch(self, ref, out):
        """Write the original bytes of the backup recorded as "controller:`ref`" to `out`
        (anything with write()); returns out.

        The gzip stream arrives in frames and is unpacked as it comes. BackupError when the
        controller has no such backup or the stream is damaged."""
        ch = self.channel
        ch.send("want", {"ref": ref})
        unpack = zlib.decompressobj(31)
        while True:
            line = ch.answer()
            if line.startswith("data "):
                packed = ch.read_exact(int(line[5:]))
                try:
                    while packed:
                        # Bounded output per call: a highly compressible backup must not balloon.
                        out.write(unpack.decompress(packed, CHUNK))
                        packed = unpack.unconsumed_tail
                except zlib.error as exc:
                    raise BackupError("the backup from the controller is damaged: %s" % exc)
            elif line == "end":
                try:
                    out.write(unpack.flush(CHUNK))
                except zlib.error as exc:
                    raise BackupError("the backup from the controller is damaged: %s" % exc)
                if not unpack.eof:
                    raise BackupError("the backup from the controller ended early")
                return out
            elif line.startswith("error "):
                raise BackupError("the controller cannot send the backup: %s" % line[6:])
            else:
                raise BackupError("unexpected answer from the controller: %r" % line[:200])
