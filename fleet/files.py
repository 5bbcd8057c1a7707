"""Files fleet writes on the control host (inventories, retry lists): whole or not at all.

`write_atomic(path, text)` writes a temp file in the same folder, fsyncs it, and renames it over
`path`, so a reader never sees half of it and a failure leaves no temp file behind.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Optional


def write_atomic(path: Path, text: str, mode: Optional[int] = None,
                 before_replace: Optional[Callable[[], None]] = None) -> Path:
    """Write `text` to `path` through a temp file + fsync + rename; return the path.

    `mode` is set on the temp file (else mkstemp's 0600 stays); `before_replace` runs just before
    the rename and may raise to keep the old file (e.g. it changed meanwhile).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
