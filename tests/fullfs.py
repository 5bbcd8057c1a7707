"""Small real file systems for the full-disk tests: a tmpfs mounted by the test (we need root,
or CAP_SYS_ADMIN) and unmounted when it ends, also on failure; and a filler that leaves exactly
the free space a test asks for."""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

PAGE = 4096


def mount_refusal() -> str | None:
    """Why this process cannot mount a tmpfs, or None when it can."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (these tests run as uid %d)" % os.geteuid()
    return None


@contextlib.contextmanager
def tmpfs(where: Path, size: int):
    """A tmpfs of `size` bytes at `where` (created); skipped with the reason where mounting is not
    permitted (not root, or a container without CAP_SYS_ADMIN)."""
    reason = mount_refusal()
    if reason:
        pytest.skip(reason)
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0755" % size, "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here: %s" % done.stderr.strip())
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)
        if os.path.ismount(where):
            subprocess.run(["umount", "-l", str(where)], check=False)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def leave_free(mount: Path, want: int) -> Path:
    """Write a filler file so that exactly `want` bytes (rounded down to a page) stay free."""
    filler = mount / "filler.bin"
    extra = free_bytes(mount) - want
    assert extra >= 0, "the file system is already fuller than asked"
    with open(filler, "ab") as f:
        f.write(b"\0" * (extra // PAGE * PAGE))
    got = free_bytes(mount)
    assert want - PAGE < got <= want + PAGE, (want, got)
    return filler


def stray_files(root: Path) -> list[str]:
    """fleet's .part copies and temp files (`.<name>.fleet-….tmp`) anywhere under `root`."""
    return sorted(str(p) for p in root.rglob("*")
                  if p.name.endswith(".part") or (".fleet-" in p.name and p.name.endswith(".tmp")))


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0
