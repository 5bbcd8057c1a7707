"""Small helpers shared by the generator modules: clock formatting, ids, file writing."""
from __future__ import annotations

import os
import random
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
MB = 1_048_576
KB = 1024


def iso_ms(ms: int) -> str:
    """2026-11-14T08:00:00.123Z, as OpenClaw writes timestamps."""
    moment = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def archive_stamp(ms: int) -> str:
    """The `<ts>` of `<file>.deleted.<ts>`: ISO time with ':' replaced by '-'."""
    return iso_ms(ms).replace(":", "-")


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from `rng` (lower case: a safe session id)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def hex_id(rng: random.Random, taken: set, width: int = 8) -> str:
    """A fresh `width`-hex-digit id not in `taken` (and added to it)."""
    while True:
        value = f"{rng.getrandbits(width * 4):0{width}x}"
        if value not in taken:
            taken.add(value)
            return value


def write_file(path: Path, chunks: Iterable[bytes], mtime_ms: int | None = None, mode: int = 0o600) -> int:
    """Write `chunks` to `path` (created with `mode`), set its mtime; return the byte count."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    total = 0
    with open(fd, "wb", buffering=1 << 20) as f:
        for chunk in chunks:
            f.write(chunk)
            total += len(chunk)
    os.chmod(path, mode)
    if mtime_ms is not None:
        set_mtime(path, mtime_ms)
    return total


def set_mtime(path: Path, mtime_ms: int) -> None:
    os.utime(path, ns=(mtime_ms * 1_000_000, mtime_ms * 1_000_000))


def tree_bytes(root: Path) -> int:
    """Total size of the regular files under `root`."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total
