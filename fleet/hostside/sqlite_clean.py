"""A SQLite-era agent's cleanup: OpenClaw's own `sessions cleanup`, rehearsed on a copy first.

The playbook's store pass (disposable kinds idle longer than the playbook's age) is done by
OpenClaw itself: `openclaw sessions cleanup --store <db> --enforce --json` with
`session.maintenance.pruneAfter` set to the playbook's age, through a private copy of the user's
`openclaw.json` named by `OPENCLAW_CONFIG_PATH` (the user's own file is never written).

Every change is rehearsed first on a verified copy of the database made with SQLite's online
backup API (`rehearse`): OpenClaw's cleanup, the trajectory cap and the space reclaim run on the
copy, and fleet compares the copy's `session_nodes` with the original. The real run goes ahead
only when every key OpenClaw removed is one the playbook prunes (its kind is disposable and it
was idle longer than that kind's age) and no key was archived; otherwise nothing is changed and
the report names the keys. Before the real cleanup OpenClaw's own `--dry-run` on the live store
must plan to delete no unreferenced file (fleet has no backup of those). A dry run reports the
rehearsal's numbers, so it equals the real run's (same steps, same data).

Space comes back with OpenClaw's own method: the agent database is `auto_vacuum = INCREMENTAL`
and OpenClaw frees pages with `PRAGMA incremental_vacuum(N)` in short `BEGIN IMMEDIATE`
transactions; fleet does the same in batches (a live gateway waits at most one batch, well under
its 5 s busy timeout), after checking the file system has room for the pages the WAL will hold,
then `wal_checkpoint(TRUNCATE)`. A database that stays busy is skipped with that reason.
"""
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile

from .fsutil import FileError
from .sqlite_era import BUSY_TIMEOUT_S, _size, connect_path
from .store import classify_key
from .terms import OPT_IN_KINDS, PROTECTED_KINDS

RECLAIM_BATCH_PAGES = 512
NO_AGE_S = 100 * 365 * 86400   # pruneAfter when only maintenance's max_entries is asked: no age applies
RECLAIM_BUSY_MS = 1000
RECLAIM_ATTEMPTS = 3


def openclaw_env(state_dir, config_path=None):
    env = dict(os.environ, OPENCLAW_STATE_DIR=state_dir, NO_COLOR="1", FORCE_COLOR="0")
    if config_path:
        env["OPENCLAW_CONFIG_PATH"] = config_path
    return env


def run_openclaw(cmd, env, args, timeout_s):
    """OpenClaw's JSON answer to `args`; raises FileError with its message when it fails."""
    proc = subprocess.run(list(cmd) + list(args), env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout_s)
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise FileError("openclaw %s exited %d: %s" % (" ".join(args), proc.returncode,
                                                       (proc.stderr.decode("utf-8", "replace") or out)[-400:].strip()))
    start = out.find("{")
    try:
        return json.loads(out[start:]) if start >= 0 else {}
    except ValueError:
        return {"output": out[-400:]}


def prune_config(state_dir, prune_after_s, work_dir, max_entries=None):
    """(path of a private openclaw.json with pruneAfter = the playbook's age, None) or (None, why not).

    `prune_after_s` None: no age (pruneAfter 100 years); `max_entries` sets maxEntries.

    The copy lives in fleet's private work folder; the user's file is only read.
    """
    src = os.environ.get("OPENCLAW_CONFIG_PATH") or os.path.join(state_dir, "openclaw.json")
    try:
        with open(src) as f:
            text = f.read()
    except (IOError, OSError):
        text = "{}"
    try:
        doc = json.loads(text)
    except ValueError:
        return None, ("%s is not plain JSON (JSON5?); fleet cannot hand OpenClaw the playbook's age, so "
                      "OpenClaw's own cleanup was not run" % src)
    if not isinstance(doc, dict) or "$include" in text:
        return None, ("%s uses $include or is not an object; fleet cannot hand OpenClaw the playbook's age "
                      "without moving it" % src)
    session = doc.setdefault("session", {})
    if not isinstance(session, dict):
        return None, "%s: `session` is not an object" % src
    maintenance = session.setdefault("maintenance", {})
    if not isinstance(maintenance, dict):
        return None, "%s: `session.maintenance` is not an object" % src
    maintenance["pruneAfter"] = "%ds" % int(prune_after_s if prune_after_s is not None else NO_AGE_S)
    if max_entries is not None:
        maintenance["maxEntries"] = int(max_entries)
    maintenance["mode"] = "enforce"
    path = os.path.join(work_dir, "openclaw.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    return path, None


def nodes(path):
    """{session_key: (updated_at, archived_at)} of a database (read-only)."""
    conn = connect_path(path)
    try:
        cols = {r[1] for r in conn.execute("PRAGMA table_info(session_nodes)")}
        archived = "archived_at" if "archived_at" in cols else "NULL"
        return dict((k, (u, a)) for k, u, a in conn.execute(
            "SELECT session_key, updated_at, %s FROM session_nodes" % archived))
    finally:
        conn.close()


def judge_prune(before, after, prune, now_ms, caps=None):
    """(removed keys, reason or None): OpenClaw's removals are the playbook's, or the reason not.

    `prune` is store.prune ({kind: age in s}): a removed key of such a kind idle that long is the
    playbook's. `caps` is store's {"stale_after_s", "max_entries"} (maintenance): then OpenClaw's
    own session.maintenance semantics apply, as in the JSON era: an entry of a kind fleet does not
    protect may go, removed or archived by OpenClaw, when idle longer than stale_after, or as one of
    the oldest over max_entries (at most as many as the store had over the cap). Anything else
    OpenClaw removes or archives (a protected kind, a young entry) voids the whole cleanup."""
    caps = caps or {}
    stale, cap = caps.get("stale_after_s"), caps.get("max_entries")
    protected = set(PROTECTED_KINDS) | (set(OPT_IN_KINDS) - set(prune))
    removed = sorted(set(before) - set(after))
    archived = sorted(k for k in after if after[k][1] is not None and before.get(k, (None, None))[1] is None)
    if archived and stale is None and cap is None:
        return removed, ("OpenClaw's cleanup would archive %d session(s) the playbook keeps: %s"
                         % (len(archived), ", ".join(archived[:5])))
    over_cap = max(0, sum(1 for k in before if before[k][1] is None) - cap) if cap else 0
    wrong, capped, archived_set = [], 0, set(archived)
    for key in removed + archived:
        kind = classify_key(key)
        updated = before[key][0]
        idle_s = None if updated is None else (now_ms - int(updated)) / 1000.0
        age = prune.get(kind)
        if key not in archived_set and age is not None and idle_s is not None and idle_s >= age:
            continue
        if kind not in protected:
            if stale is not None and idle_s is not None and idle_s >= stale:
                continue
            if capped < over_cap:
                capped += 1
                continue
        wrong.append("%s (%s)" % (key, kind))
    if wrong:
        return removed, ("OpenClaw's cleanup would remove or archive %d session(s) the playbook keeps: %s"
                         % (len(wrong), ", ".join(wrong[:5])))
    return removed, None


def free_bytes(folder):
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def reclaim(path):
    """Give free pages back to the file system (see module doc); returns (notes, done).

    `done` is False when nothing could be reclaimed (not INCREMENTAL, no room, always busy)."""
    conn = connect_path(path, "rw")
    notes = []
    try:
        conn.execute("PRAGMA busy_timeout = %d" % RECLAIM_BUSY_MS)
        mode = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        if free == 0:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return ["no free pages to give back; WAL checkpointed"], True
        if mode != 2:
            return ["space not reclaimed: the database is not auto_vacuum=INCREMENTAL (mode %d); a VACUUM "
                    "needs the gateway stopped" % mode], False
        need = free * page * 2 + _size(path + "-wal")
        room = free_bytes(os.path.dirname(os.path.abspath(path)))
        if room < need:
            return ["space not reclaimed: %d bytes free on the file system, the WAL may need %d"
                    % (room, need)], False
        moved, busy = 0, 0
        while free > 0:
            try:
                # One script: sqlite3_exec steps the pragma to the end (execute() would step it once,
                # and one step frees one page).
                conn.executescript("BEGIN IMMEDIATE; PRAGMA incremental_vacuum(%d); COMMIT;" % RECLAIM_BATCH_PAGES)
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                busy += 1
                if busy >= RECLAIM_ATTEMPTS:
                    return ["space reclaim skipped: the database stayed busy (%s) %d times; %d pages were "
                            "freed before" % (exc, busy, moved)], moved > 0
                continue
            left = conn.execute("PRAGMA freelist_count").fetchone()[0]
            moved += free - left
            free = left
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        conn.execute("PRAGMA busy_timeout = %d" % int(BUSY_TIMEOUT_S * 1000))
        blocked, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        notes.append("incremental_vacuum freed %d pages of %d bytes; WAL checkpoint (TRUNCATE): %s"
                     % (moved, page, "busy (a reader holds it), the WAL shrinks at OpenClaw's next checkpoint"
                        if blocked else "done"))
        return notes, True
    finally:
        conn.close()


def make_work_dir(near):
    """A private (0700) scratch folder beside fleet's backups, for the rehearsal copy."""
    parent = os.path.dirname(os.path.abspath(near))
    try:
        os.makedirs(parent, 0o700)
    except OSError:
        pass
    return tempfile.mkdtemp(prefix=".fleet-sqlite-rehearsal-", dir=parent if os.path.isdir(parent) else None)


def remove_work_dir(path):
    shutil.rmtree(path, ignore_errors=True)
