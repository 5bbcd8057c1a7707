"""Put a new version of a file in place only if nobody replaced the file since we last looked.

A writer without a lock (OpenClaw 2026.5-2026.7 rewrites `sessions.json` by temp file + rename with
no lock file) can rename its version in between our last check and our rename; a plain rename
would then drop its version unseen. Linux's renameat2(RENAME_EXCHANGE) swaps two names in one
step, so what was at the path at that instant is in our hands afterwards: if it is the file we
read (same inode), it is the old version and is removed by the caller; if it is another
process's version, the names are swapped straight back and the caller reports the file as
changed. Where the kernel, file system or libc has no RENAME_EXCHANGE (or Python has no ctypes)
this falls back to a plain rename and that gap of microseconds stays open.

Stdlib only, Python >= 3.8.
"""
import errno
import os

RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_UNSUPPORTED = frozenset(getattr(errno, name) for name in ("ENOSYS", "EINVAL", "EOPNOTSUPP", "ENOTSUP")
                         if hasattr(errno, name))
_renameat2 = None


def _load():
    global _renameat2
    if _renameat2 is None:
        try:
            import ctypes
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = (fn, ctypes.get_errno)
        except (ImportError, OSError, AttributeError):
            _renameat2 = False
    return _renameat2


def exchange(a, b):
    """Swap the names `a` and `b` atomically; False where this system cannot (nothing changed)."""
    loaded = _load()
    if not loaded:
        return False
    fn, get_errno = loaded
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), b)


def swap_in(tmp, path, expect_ino):
    """Move `tmp` to `path` if `path` is still inode `expect_ino` at that instant.

    Returns "swapped" (done; the old file now sits at `tmp`, for the caller to remove),
    "renamed" (no exchange on this system: a plain rename, the old inode is gone) or "conflict"
    (`path` held another process's version: it is back at `path`, ours is at `tmp` or gone).
    Raises OSError when the first move fails (nothing changed).
    """
    if not exchange(tmp, path):
        os.rename(tmp, path)
        return "renamed"
    if os.lstat(tmp).st_ino == expect_ino:
        return "swapped"
    try:
        exchange(tmp, path) or os.rename(tmp, path)
    except OSError:
        os.rename(tmp, path)  # theirs over ours: our rewrite is lost, their version is not
    return "conflict"
