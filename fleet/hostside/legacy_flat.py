"""The flat legacy folder `<state>/sessions/` of older OpenClaw (Clawdbot): its `*.session.json`
files, discovered read-only as one pseudo-agent, FLAT_LEGACY_AGENT — a name no agent id can take
(ids are safe names, fsutil.is_safe_id). Nothing else in that folder is listed or touched.
"""
import os
import stat

from .context import AgentFiles, FileInfo
from .fsutil import describe_oserror
from .terms import FLAT_LEGACY_AGENT

LEGACY_SUFFIX = ".session.json"


def discover_flat_legacy(state_dir):
    """The `*.session.json` files of the flat legacy `<state>/sessions/` folder, as a pseudo-agent
    named FLAT_LEGACY_AGENT (era "legacy"), or None when there are none. Only those files are
    listed, never followed through a symlink; anything else in that folder is not fleet's."""
    folder = os.path.join(state_dir, "sessions")
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return None
        with os.scandir(folder) as it:
            entries = sorted((e for e in it if e.name.endswith(LEGACY_SUFFIX)), key=lambda e: e.name)
    except OSError:
        return None
    af = AgentFiles(FLAT_LEGACY_AGENT, state_dir, state_dir)
    af.sessions_dir = folder
    for entry in entries:
        rel = os.path.relpath(entry.path, state_dir)
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            af.problems[rel] = describe_oserror(exc, "stat " + rel)
            af.files.append(FileInfo(af.agent, entry.path, rel, "other", 0, 0))
            continue
        if not stat.S_ISREG(st.st_mode):
            af.problems[rel] = "symlink, not followed" if stat.S_ISLNK(st.st_mode) else "not a regular file, left alone"
            af.files.append(FileInfo(af.agent, entry.path, rel, "other", 0, st.st_mtime_ns))
            continue
        af.files.append(FileInfo(af.agent, entry.path, rel, "legacy", st.st_size, st.st_mtime_ns))
    if not af.files:
        return None
    af.era = "legacy"
    return af
