"""The Python interpreters this machine really has, for the host-side program's version checks.

The host-side program promises Python >= 3.8, and the bootstrap must turn anything older into a
clear per-host message. Both are checked on interpreters that are really here, never on one
developer's set: whatever is on PATH (python2*, python3.N, pypy*, jython) and, when present,
pyenv's builds (~/.pyenv/versions, or $PYENV_ROOT). `scripts/setup.sh test` installs Debian's
jython (a real Python 2.7 on the JVM), so a fresh Debian 12 machine has a too-old interpreter to
try; a machine with pyenv adds its 2.7/3.6/3.8... builds. Each interpreter is asked its own version.

FLEET_TEST_NO_PYENV=1 hides pyenv's builds: how a fresh machine looks, to check the suite there.
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

SUPPORTED = (3, 8)
_ON_PATH = re.compile(r"^(python[23](\.\d+)?|pypy3?(\.\d+)?|jython)$")
_ASK = "import sys; print('%d %d %d' % tuple(sys.version_info[:3])); print(sys.version.split()[0])"


@dataclass(frozen=True)
class Python:
    path: str                   # as found (what an inventory's `python =` would say)
    version: tuple              # (major, minor, micro), from the interpreter itself
    says: str                   # sys.version's first word, what the bootstrap reports

    def __str__(self) -> str:
        return "%s (%s)" % (self.path, self.says)


def _candidates() -> list:
    found = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not folder or "/.pyenv/" in folder + "/":     # pyenv's shims need a selected version
            continue
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        found += [os.path.join(folder, n) for n in names if _ON_PATH.match(n)]
    if os.environ.get("FLEET_TEST_NO_PYENV") != "1":
        root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
        for build in sorted(root.glob("*")) if root.is_dir() else ():
            m = re.match(r"^(\d)\.(\d+)\.\d+$", build.name)
            if m:
                found.append(str(build / "bin" / ("python%s.%s" % m.groups())))
    return found


@functools.lru_cache(maxsize=1)
def interpreters() -> tuple:
    """Every working interpreter here, one per real binary, sorted by version."""
    seen, out = set(), []
    for path in _candidates():
        real = os.path.realpath(path)
        if real in seen or not os.access(path, os.X_OK):
            continue
        seen.add(real)
        try:
            proc = subprocess.run([path, "-c", _ASK], capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = proc.stdout.split()
        if proc.returncode != 0 or len(lines) != 4:
            continue
        out.append(Python(path, tuple(int(x) for x in lines[:3]), lines[3]))
    return tuple(sorted(out, key=lambda p: (p.version, p.path)))


def too_old() -> list:
    """The interpreters here that the host-side program does not support (< 3.8)."""
    return [p for p in interpreters() if p.version[:2] < SUPPORTED]


def supported() -> list:
    """The interpreters here that must run the host-side program (>= 3.8)."""
    return [p for p in interpreters() if p.version[:2] >= SUPPORTED]


MISSING_OLD = ("no Python older than 3.8 on this machine to try the bootstrap's refusal on: "
               "run scripts/setup.sh test (it installs Debian's jython, a Python 2.7)")
