"""Backup retention on the host: old runs' backup folders expire so backups never become the bloat.

`expire_backups(backups_parent, current_run_id, keep_runs, max_age_s, now_ms, dry_run)` looks at
the folders directly under `backups_parent` (normally `<state>/fleet-backups/`) whose names are
fleet run ids (`20261121T101500Z-3fa2c1`: time first, so name order is time order) and deletes
whole run folders that are

- beyond the `keep_runs` newest (the current run counts as one of them), or
- older than `max_age_s` before `now_ms` (the time is read from the run id, not from mtimes,
  which copies and restores change).

The current run's folder is never deleted. Anything that is not a real folder named like a run
id (files, symlinks, other folders) is left alone, and nothing inside is followed through a
symlink: sizes are summed with lstat and deletion uses `shutil.rmtree`, which on Linux works on
file descriptors and never follows symlinks. `None` for keep_runs / max_age_s means no limit of
that kind. A dry run deletes nothing and reports the same.

Returns {"expired_runs": [ids, oldest first], "expired_bytes": N, "errors": [lines]}.

`remove_partial_copies` deletes what a killed run left among the backups: `<backup>.<pid>.part`
copies whose pid is gone (a `.part` without a pid, from older agents, once over an hour old).
They never hold the only copy of anything: a backup is renamed from `.part` before the original
is touched.
Stdlib only, Python >= 3.8.
"""
import calendar
import os
import re
import shutil
import stat
import time

from .locks import pid_status

RUN_DIR_RE = re.compile(r"^(\d{8}T\d{6})\d{0,6}Z(?:[-.][A-Za-z0-9]+)*$")
PART_RE = re.compile(r"\.(?:(?P<pid>\d+)\.)?part$")
OLD_PART_S = 3600


def run_id_epoch_ms(run_id):
    """Epoch milliseconds of a run id's timestamp, or None when it is not a run id."""
    m = RUN_DIR_RE.match(run_id)
    if not m:
        return None
    try:
        return calendar.timegm(time.strptime(m.group(1), "%Y%m%dT%H%M%S")) * 1000
    except ValueError:
        return None


def tree_bytes(path):
    """Bytes of the regular files under `path`, without following symlinks."""
    total = 0
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def run_dirs(backups_parent):
    """Names of the real (non-symlink) folders under `backups_parent` named like run ids, sorted."""
    try:
        entries = list(os.scandir(backups_parent))
    except FileNotFoundError:
        return []
    names = [e.name for e in entries
             if e.is_dir(follow_symlinks=False) and run_id_epoch_ms(e.name) is not None]
    return sorted(names)


def select_expired(names, current_run_id, keep_runs, max_age_s, now_ms):
    """Which of the run ids `names` expire (pure). The current run never does."""
    newest_first = sorted(names, reverse=True)
    keep = set()
    if keep_runs is not None:
        # The current run is always kept and counts as one of the kept runs.
        budget = max(1, int(keep_runs))
        if current_run_id in newest_first:
            keep.add(current_run_id)
            budget -= 1
        for name in newest_first:
            if name == current_run_id:
                continue
            if budget <= 0:
                break
            keep.add(name)
            budget -= 1
    expired = []
    for name in names:
        if name == current_run_id:
            continue
        too_many = keep_runs is not None and name not in keep
        too_old = max_age_s is not None and now_ms - run_id_epoch_ms(name) > int(max_age_s) * 1000
        if too_many or too_old:
            expired.append(name)
    return sorted(expired)


def expire_backups(backups_parent, current_run_id, keep_runs, max_age_s, now_ms, dry_run):
    """Delete expired run backup folders under `backups_parent`; see the module docstring."""
    result = {"expired_runs": [], "expired_bytes": 0, "errors": []}
    if keep_runs is None and max_age_s is None:
        return result
    for name in select_expired(run_dirs(backups_parent), current_run_id, keep_runs, max_age_s, now_ms):
        path = os.path.join(backups_parent, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        size = tree_bytes(path)
        if not dry_run:
            try:
                shutil.rmtree(path)
            except OSError as exc:
                # Partly deleted: count what is gone, report the rest.
                left = tree_bytes(path) if os.path.isdir(path) else 0
                result["expired_bytes"] += size - left
                result["errors"].append("could not delete old backups %s: %s" % (name, exc.strerror or exc))
                continue
        result["expired_runs"].append(name)
        result["expired_bytes"] += size
    return result


def remove_partial_copies(backups_parent, dry_run):
    """Delete partial backup copies left by killed runs under the run folders; returns
    {"removed": [paths relative to backups_parent], "errors": [lines]} (a dry run removes none)."""
    out = {"removed": [], "errors": []}
    for name in run_dirs(backups_parent):
        for root, dirs, files in os.walk(os.path.join(backups_parent, name), followlinks=False):
            for file_name in files:
                m = PART_RE.search(file_name)
                path = os.path.join(root, file_name)
                if not m or not _abandoned(path, m.group("pid")):
                    continue
                if not dry_run:
                    try:
                        os.unlink(path)
                    except OSError as exc:
                        out["errors"].append("could not remove partial backup %s: %s" % (
                            os.path.relpath(path, backups_parent), exc.strerror or exc))
                        continue
                out["removed"].append(os.path.relpath(path, backups_parent))
    out["removed"].sort()
    return out


def _abandoned(path, pid):
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    if pid is not None:
        return int(pid) != os.getpid() and not pid_status(int(pid))[0]
    return time.time() - st.st_mtime > OLD_PART_S
