"""The control host's end of backup_to = "controller" (docs/agent-protocol.md, "Backups to the
controller"; the agent's end is fleet/hostside/backupstream.py).

`BackupReceiver.feed(data)` takes the agent's stdout as it arrives, keeps the `fleet-backup: `
frames and returns every other byte (the result document) untouched. Each backup is written as
it comes, gzip bytes as sent, to `<folder>/<rel>.gz.part`, while a decompressor hashes the
original bytes; at `end` the sizes and sha256 must match the agent's, the copy is fsynced,
read back and hashed again, renamed to `<rel>.gz` (`.2.gz`, … for a second version in one run)
and only then does the agent hear `ok`. Nothing is held whole in memory. A backup that does
not verify, or a full disk here, is answered `bad` and leaves no file. `want` (restore) sends
a stored backup back, only from this host's own folders.

Where: `<fleet state dir>/backups/<host>/<run_id>/` (fleet.home.control_dir(): $FLEET_STATE_DIR,
else $XDG_STATE_HOME/fleet, else ~/.local/state/fleet), with the same retention as on a host:
`expire_runs` keeps the newest `keep_runs` run folders of a host and drops those older than
`max_age_s`, judged by the time in the run id.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zlib
from pathlib import Path
from typing import Callable, Optional

from fleet.home import control_dir
from fleet.hostside.retention import run_id_epoch_ms

PREFIX = b"fleet-backup: "
LINE_MAX = 64 * 1024
SEND_CHUNK = 64 * 1024
CHECK_CHUNK = 1 << 20
CONTROLLER = "controller:"


def backups_root() -> Path:
    return control_dir() / "backups"


def run_folder(host: str, run_id: str) -> Path:
    return backups_root() / host / run_id


def wants_receiver(plan: dict) -> bool:
    """True when a plan may stream backups to, or fetch them from, the controller (a scan never)."""
    if plan.get("mode") == "scan":
        return False
    if (plan.get("backup") or {}).get("to") in ("controller", "auto"):
        return True
    files = ((plan.get("restore") or {}).get("files")) or ()
    return any(str(f.get("backup") or "").startswith(CONTROLLER) for f in files)


def gunzip_digest(path: Path) -> tuple[int, str]:
    """(bytes, sha256) of a stored backup's original content, read in chunks."""
    unpack = zlib.decompressobj(31)
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while True:
            packed = f.read(CHECK_CHUNK)
            if not packed:
                break
            while packed:
                data = unpack.decompress(packed, CHECK_CHUNK)
                h.update(data)
                size += len(data)
                packed = unpack.unconsumed_tail
    tail = unpack.flush()
    h.update(tail)
    if not unpack.eof:
        raise ValueError("the gzip stream is cut short")
    return size + len(tail), h.hexdigest()


class _Incoming:
    """One backup being received."""

    def __init__(self, ident: int, target: Path):
        self.id = ident
        self.target = target
        self.part = target.with_name(target.name + ".part")
        self.file = None
        self.unpack = zlib.decompressobj(31)
        self.sha = hashlib.sha256()
        self.size = 0
        self.error: Optional[str] = None

    def open(self) -> None:
        self.target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        self.file = os.fdopen(fd, "wb")

    def write(self, packed: bytes) -> None:
        if self.error:
            return
        try:
            self.file.write(packed)
            while packed:
                data = self.unpack.decompress(packed, CHECK_CHUNK)
                self.sha.update(data)
                self.size += len(data)
                packed = self.unpack.unconsumed_tail
        except (OSError, zlib.error) as exc:
            self.error = f"cannot store it on the controller: {getattr(exc, 'strerror', None) or exc}"

    def drop(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
        try:
            os.unlink(self.part)
        except OSError:
            pass


class BackupReceiver:
    """Demultiplexes one host's stdout and keeps its backups under `folder` (see the module)."""

    def __init__(self, host: str, folder: Path, send: Optional[Callable[[bytes], None]] = None):
        self.host = host
        self.folder = Path(folder)
        self.send = send or (lambda data: None)
        self.stored: dict[int, tuple[Path, int]] = {}
        self.stored_bytes = 0
        self._buf = bytearray()
        self._line_start = True
        self._data_left = 0
        self._current: Optional[_Incoming] = None

    # --- the stream -------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Take a piece of the agent's stdout; return the bytes that are not frames."""
        self._buf += data
        passed = bytearray()
        while self._buf:
            if self._data_left:
                take = bytes(self._buf[:self._data_left])
                del self._buf[:len(take)]
                self._data_left -= len(take)
                if self._current is not None:
                    self._current.write(take)
                continue
            if self._line_start:
                head = bytes(self._buf[:len(PREFIX)])
                if PREFIX.startswith(head) and len(head) < len(PREFIX):
                    break                          # too short to tell yet
                if head == PREFIX:
                    end = self._buf.find(b"\n")
                    if end < 0:
                        if len(self._buf) > LINE_MAX:
                            raise ValueError("a backup frame line without an end")
                        break
                    line = bytes(self._buf[len(PREFIX):end]).decode("utf-8", "replace")
                    del self._buf[:end + 1]
                    self._frame(line)
                    continue
            end = self._buf.find(b"\n")
            if end < 0:
                passed += self._buf
                self._buf.clear()
                self._line_start = False
            else:
                passed += self._buf[:end + 1]
                del self._buf[:end + 1]
                self._line_start = True
        return bytes(passed)

    def flush(self) -> bytes:
        """The stream ended: what is left over (never part of a frame) goes back as output."""
        left = bytes(self._buf) if not self._data_left else b""
        self._buf.clear()
        return left

    def close(self) -> None:
        """The connection ended: a backup still arriving leaves nothing behind."""
        if self._current is not None:
            self._current.drop()
            self._current = None

    # --- frames -----------------------------------------------------------------------------

    def _frame(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word == "data":
            self._data_left = int(rest)
            return
        payload = json.loads(rest) if rest else {}
        if word == "begin":
            self._begin(int(payload["id"]), str(payload["rel"]))
        elif word == "end":
            self._end(int(payload["id"]), int(payload["bytes"]), str(payload["sha256"]))
        elif word == "abort":
            self.close()
        elif word == "drop":
            self._drop(int(payload["id"]))
        elif word == "want":
            self._serve(str(payload["ref"]))

    def _reply(self, text: str) -> None:
        self.send(text.encode("utf-8") + b"\n")

    def _begin(self, ident: int, rel: str) -> None:
        self.close()
        parts = rel.split("/")
        if rel.startswith("/") or ".." in parts or not rel or any(not p for p in parts):
            incoming = _Incoming(ident, self.folder / "refused")
            incoming.error = f"unsafe path {rel!r}"
            self._current = incoming
            return
        target = self.folder / (rel + ".gz")
        n = 2
        while target.exists() or any(p == target for p, _ in self.stored.values()):
            target = self.folder / f"{rel}.{n}.gz"
            n += 1
        incoming = _Incoming(ident, target)
        try:
            incoming.open()
        except OSError as exc:
            incoming.error = f"cannot store it on the controller: {exc.strerror or exc}"
        self._current = incoming

    def _end(self, ident: int, size: int, sha: str) -> None:
        incoming, self._current = self._current, None
        if incoming is None or incoming.id != ident:
            self._reply(f"bad {ident} no such backup in progress")
            return
        error = incoming.error
        if error is None:
            try:
                tail = incoming.unpack.flush()
                incoming.sha.update(tail)
                incoming.size += len(tail)
                if not incoming.unpack.eof:
                    error = "the gzip stream arrived cut short"
                elif (incoming.size, incoming.sha.hexdigest()) != (size, sha):
                    error = "it arrived damaged (sha256 or size differs from the host's)"
                else:
                    incoming.file.flush()
                    os.fsync(incoming.file.fileno())
                    incoming.file.close()
                    if gunzip_digest(incoming.part) != (size, sha):
                        error = "the stored copy does not read back the same (sha256)"
                    else:
                        os.rename(incoming.part, incoming.target)
                        _fsync_dir(incoming.target.parent)
            except (OSError, ValueError, zlib.error) as exc:
                error = f"cannot store it on the controller: {getattr(exc, 'strerror', None) or exc}"
        if error is not None:
            incoming.drop()
            self._reply(f"bad {ident} {error}")
            return
        stored = incoming.target.stat().st_size
        self.stored[ident] = (incoming.target, stored)
        self.stored_bytes += stored
        self._reply(f"ok {ident} {stored} {incoming.target}")

    def _drop(self, ident: int) -> None:
        entry = self.stored.pop(ident, None)
        if entry is None:
            self._reply(f"bad {ident} no such backup")
            return
        path, stored = entry
        try:
            path.unlink()
            self.stored_bytes -= stored
            _remove_empty_parents(path.parent, self.folder.parent)
        except OSError as exc:
            self._reply(f"bad {ident} {exc.strerror or exc}")
            return
        self._reply(f"ok {ident} 0 {path}")

    def _serve(self, ref: str) -> None:
        mine = (backups_root() / self.host).resolve()
        path = Path(ref)
        try:
            real = path.resolve()
            if not real.is_relative_to(mine) or not real.is_file():
                raise FileNotFoundError(ref)
            with open(real, "rb") as f:
                while True:
                    chunk = f.read(SEND_CHUNK)
                    if not chunk:
                        break
                    self.send(b"data %d\n" % len(chunk) + chunk)
        except FileNotFoundError:
            self._reply(f"error no backup {ref} for {self.host} on the controller (expired?)")
            return
        except OSError as exc:
            self._reply(f"error cannot read {ref}: {exc.strerror or exc}")
            return
        self._reply("end")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    while folder != stop and folder.is_relative_to(stop):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def expire_runs(host: str, current_run: str, keep_runs: Optional[int], max_age_s: Optional[int],
                now_ms: int) -> tuple[list[str], int]:
    """Drop this host's old run folders on the controller (the host's rules); (ids, bytes)."""
    base = backups_root() / host
    if not base.is_dir() or (keep_runs is None and max_age_s is None):
        return [], 0
    runs = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.is_symlink() and run_id_epoch_ms(p.name))
    expired = []
    older = [r for r in runs if r != current_run]
    if keep_runs is not None:
        expired += older[:max(0, len(older) - (int(keep_runs) - 1))]
    if max_age_s is not None:
        expired += [r for r in older if now_ms - run_id_epoch_ms(r) > int(max_age_s) * 1000 and r not in expired]
    freed = 0
    for run_id in sorted(set(expired)):
        folder = base / run_id
        freed += sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
        shutil.rmtree(folder, ignore_errors=True)
    return sorted(set(expired)), freed


def controller_backups(host: str, plan: dict) -> Optional[BackupReceiver]:
    """The receiver for one host's run of `plan`, or None when the plan keeps its backups on the host."""
    if not wants_receiver(plan):
        return None
    return BackupReceiver(host, run_folder(host, str(plan.get("run_id"))))


def after_controller_backups(host: str, plan: dict, result):
    """Apply the host's retention rules to its backups on the controller after a real run; the
    expired runs and bytes are added to the result."""
    b = plan.get("backup") or {}
    if plan.get("mode") != "run" or plan.get("dry_run"):
        return result
    try:
        expired, freed = expire_runs(host, str(plan.get("run_id")), b.get("keep_runs"), b.get("max_age_s"),
                                     int(plan.get("now_ms") or time.time() * 1000))
    except OSError:
        return result
    if not freed:
        return result
    from dataclasses import replace
    return replace(result, expired_backup_bytes=result.expired_backup_bytes + freed)
