"""Archiving and expiry in a sessions folder: OpenClaw's `<file>.deleted.<ts>` and its clean-ups.

- `archive_session_files`: the transcripts (topic ones too), trajectories and checkpoints of
  the entries a prune removed are renamed to `<file>.deleted.<ts>` (OpenClaw's own naming and
  `<ts>` format), after a verified backup.
- `archive_orphans`: transcripts no entry references, once older than a threshold, likewise.
- `expire_archives`: `*.deleted.<ts>`, `*.reset.<ts>`, `*.bak.<ts>` (and `sessions.json.bak.<ms>`,
  `*.corrupt-<ts>-…`) older than the retention are deleted after a verified backup.
- `cleanup_temp`: OpenClaw's `sessions.json.<pid>.<uuid>.tmp` and fleet's `.fleet-<pid>.tmp`
  leftovers; `remove_stale_locks`: lock files whose owner is gone.

Every function returns one record per file it acted on or judged (archive_session_files:
per file of a removed session, except files a kept entry still uses); the orchestrator emits
its own "none" record for files that got none here. Nothing outside the agent's
`sessions/` folder is ever touched, no symlink is followed, a session id that is not a safe
name is never made into a path, and a transcript a live process has locked is skipped
(action "skip"). All ages are measured against the run's clock `ctx.now_ms`, so a dry run and
a real run with the same clock decide the same; in a dry run nothing is renamed or deleted.
"""
import os
import re

from .context import file_record, stats
from .fsutil import (CHUNK, FAULTS, FileChanged, FileError, HashSink, abandon_backup, archive_timestamp,
                     count_lines,
                     describe_oserror, fsync_dir, hash_file, inside, is_safe_id, open_nofollow,
                     safe_rename, sig)
from .discover import classify_session_file
from .locks import iso_to_ms, lock_state, pid_status, transcript_in_use

ARCHIVABLE_KINDS = ("transcript", "trajectory", "checkpoint", "orphan")
_ARCHIVE_TS_RE = re.compile(r"\.(?:deleted|reset|bak)\.(?P<ts>\d{4}-\d\d-\d\dT[0-9:-]+(?:\.\d+)?Z?|\d{10,16})$")
_CORRUPT_TS_RE = re.compile(r"\.corrupt-(?P<ts>\d{4}-\d\d-\d\dT[0-9:.-]+Z)-[0-9a-f]{8}\.jsonl$")
_OPENCLAW_TMP_RE = re.compile(r"^sessions\.json\.\d+\.[0-9A-Za-z-]+\.tmp$")
_FLEET_TMP_RE = re.compile(r"\.fleet-(?P<pid>\d+)\.tmp$")


def sessions_dir_of(ctx, agent):
    return os.path.join(ctx.state_dir, "agents", agent, "sessions")


def records_of(kind, path):
    """Records of a file, by the scan's rules: transcript/orphan/checkpoint = lines minus the
    header; trajectory (.jsonl) = lines; an archive of a transcript = lines minus the header;
    everything else 0."""
    name = os.path.basename(path)
    if kind in ("transcript", "orphan", "checkpoint"):
        return max(0, count_lines(path) - 1)
    if kind == "trajectory":
        return count_lines(path) if name.endswith(".jsonl") else 0
    if kind == "archive" and ".jsonl" in name and ".trajectory" not in name:
        return max(0, count_lines(path) - 1)
    return 0


def _size_stats(path, kind):
    try:
        return stats(os.lstat(path).st_size, records_of(kind, path))
    except (OSError, FileError):
        return stats(0, 0)


def _plain(agent, info, notes=None, error=None, action="none", session_key=None):
    return file_record(agent, info.rel, info.kind, _size_stats(info.path, info.kind), action=action,
                       notes=notes, error=error, session_key=session_key)


def _guard(ctx, agent, info):
    """None when `info` may be changed, else a one-line reason it may not."""
    if not inside(sessions_dir_of(ctx, agent), info.path):
        return "outside the agent's sessions folder, left alone"
    if os.path.islink(info.path):
        return "symlink, not followed"
    return None


def archive_file(ctx, agent, info, notes=None, session_key=None):
    """Rename one file to `<file>.deleted.<ts>` after a verified backup; return its record."""
    notes = list(notes or [])
    why = _guard(ctx, agent, info)
    if why:
        return _plain(agent, info, notes=notes + [why], session_key=session_key)
    new_path = info.path + ".deleted." + archive_timestamp(ctx.now_ms)
    try:
        n = records_of(info.kind, info.path)
        res = safe_rename(info.path, new_path, info.rel, ctx.backups, ctx.dry_run)
    except FileError as exc:
        return _plain(agent, info, notes=notes, error=str(exc), session_key=session_key)
    except OSError as exc:
        return _plain(agent, info, notes=notes, error=describe_oserror(exc, "archiving " + info.rel),
                      session_key=session_key)
    before = stats(res["before"]["bytes"], n, res["before"]["sha256"])
    return file_record(agent, info.rel, info.kind, before, before, action="archive",
                       backup=res["backup"], archived_to=ctx.rel(new_path),
                       notes=notes + res["notes"], session_key=session_key)


def _in_use(ctx, agent, info):
    """(True, detail) when the file's own lock or its session's transcript lock is live."""
    candidates = [info.path]
    if info.session_id and is_safe_id(info.session_id):
        candidates.append(os.path.join(sessions_dir_of(ctx, agent), info.session_id + ".jsonl"))
    for path in candidates:
        busy, detail = transcript_in_use(path, ctx.now_ms)
        if busy:
            return True, detail
    return False, None


def _archive_or_skip(ctx, agent, info, notes=None, session_key=None):
    busy, detail = _in_use(ctx, agent, info)
    if busy:
        return _plain(agent, info, notes=list(notes or []) + [detail], action="skip", session_key=session_key)
    return archive_file(ctx, agent, info, notes=notes, session_key=session_key)


def archive_session_files(ctx, agent, files_by_session_id, removed_entries):
    """Archive the files of the entries prune_store removed. Returns [records].

    `files_by_session_id`: session id -> [FileInfo] (discovery's transcripts, topic
    transcripts, trajectories, trajectory pointers, checkpoints). A removed entry's
    `sessionFile` inside the sessions folder is archived too when discovery did not list it; one
    pointing elsewhere is never touched (a note says so). Files still used by a kept entry (two
    keys sharing a session) stay and get no record here, so the orchestrator's later passes
    (trims) still handle them. kind is kept (transcript/trajectory/checkpoint), action
    "archive", archived_to the new relative path; "skip" for a file a live process has locked.
    """
    sessions_dir = sessions_dir_of(ctx, agent)
    kept_ids = getattr(removed_entries, "kept_session_ids", set())
    kept_files = getattr(removed_entries, "kept_files", set())
    records = []
    seen = set()
    for key, entry in removed_entries.items():
        sid = entry.get("sessionId") if isinstance(entry, dict) else None
        if not is_safe_id(sid):
            continue  # load_store refuses such stores; never make a path of it
        notes = []
        infos = list(files_by_session_id.get(sid, []))
        extra, note = _session_file_info(ctx, agent, sessions_dir, entry, infos, kept_ids, kept_files)
        if note:
            notes.append(note)
        if extra is not None:
            infos.append(extra)
        session_records = []
        for info in infos:
            real = os.path.realpath(info.path)
            if real in seen:
                continue
            seen.add(real)
            if info.kind not in ARCHIVABLE_KINDS:
                continue
            if sid in kept_ids or os.path.basename(info.path) in kept_files:
                continue  # a kept entry still uses it: no record, so later passes (trims) still see it
            session_records.append(_archive_or_skip(ctx, agent, info, session_key=key))
        if notes:
            if session_records:
                session_records[0]["notes"] = notes + session_records[0]["notes"]
            else:
                ghost = os.path.join(sessions_dir, sid + ".jsonl")
                # A file at that name belongs to a kept entry: a 0-byte record for it would
                # become its `before` and hide its bytes from the totals.
                if not os.path.lexists(ghost):
                    session_records.append(file_record(agent, ctx.rel(ghost), "transcript", stats(0, 0),
                                                       notes=notes, session_key=key))
        records.extend(session_records)
    return records


def _session_file_info(ctx, agent, sessions_dir, entry, infos, kept_ids=(), kept_files=()):
    """(FileInfo or None, note or None) for an entry's `sessionFile` that discovery did not list."""
    from .context import FileInfo
    value = entry.get("sessionFile")
    if value is None:
        return None, None
    if not isinstance(value, str) or not value or "\x00" in value:
        return None, "sessionFile is not a usable path, ignored"
    path = value if os.path.isabs(value) else os.path.join(sessions_dir, value)
    if not inside(sessions_dir, path) or os.path.dirname(os.path.realpath(path)) != os.path.realpath(sessions_dir):
        return None, "sessionFile points outside the sessions folder, left alone: %s" % value
    # Never on an entry's say-so: the store itself, a lock, or a transcript a kept entry still uses.
    kind, name_sid, _topic = classify_session_file(os.path.basename(path), None)
    if kind != "transcript":
        return None, "sessionFile names a %s file, not a transcript; left alone: %s" % (kind, value)
    if os.path.basename(path) in kept_files or name_sid in kept_ids:
        return None, "sessionFile names a transcript a kept entry still uses; left alone: %s" % value
    real = os.path.realpath(path)
    if any(os.path.realpath(i.path) == real for i in infos):
        return None, None
    try:
        st = os.lstat(path)
    except OSError:
        return None, None
    if not os.path.isfile(path) or os.path.islink(path):
        return None, "sessionFile is not a regular file, left alone: %s" % value
    return FileInfo(agent, path, ctx.rel(path), "transcript", st.st_size, st.st_mtime_ns,
                    session_id=entry.get("sessionId")), None


def archive_orphans(ctx, agent, orphan_infos, policy):
    """Archive orphans (kind "orphan") untouched for over `archive_after_s`. Returns [records].

    Files of one session id (an orphan with its trajectory, if the orchestrator passes it in
    the list) are decided together by the newest mtime among them, so a session still being
    written keeps all its files. Younger ones, or a null threshold: action none.
    """
    limit = (policy or {}).get("archive_after_s")
    groups = {}
    for info in orphan_infos:
        groups.setdefault(info.session_id or info.path, []).append(info)
    records = []
    for _sid, infos in groups.items():
        newest_ms = max(i.mtime_ns for i in infos) // 1000000
        age_ms = ctx.now_ms - newest_ms
        old = limit is not None and age_ms > float(limit) * 1000.0
        for info in infos:
            if info.kind not in ARCHIVABLE_KINDS:
                records.append(_plain(agent, info))
            elif not old:
                records.append(_plain(agent, info, notes=None if limit is None else [
                    "orphan, last written %.1f h ago (archived after %.1f h)" % (
                        age_ms / 3600000.0, float(limit) / 3600.0)]))
            else:
                records.append(_archive_or_skip(ctx, agent, info,
                                                notes=["orphan: no store entry references it"]))
    return records


def archive_time_ms(info):
    """When an archive was made: its name's `<ts>` (ISO, or epoch ms), else its mtime."""
    name = os.path.basename(info.path)
    m = _ARCHIVE_TS_RE.search(name) or _CORRUPT_TS_RE.search(name)
    if m:
        ts = m.group("ts")
        if ts.isdigit() and 10 <= len(ts) <= 16:
            return int(ts)
        ms = iso_to_ms(ts)
        if ms is not None:
            return ms
    return info.mtime_ns // 1000000


def expire_archives(ctx, agent, archive_infos, policy):
    """Delete archives older than `delete_after_s` after a verified backup. Returns [records]."""
    limit = (policy or {}).get("delete_after_s")
    records = []
    for info in archive_infos:
        age_ms = ctx.now_ms - archive_time_ms(info)
        if limit is None or age_ms <= float(limit) * 1000.0:
            records.append(_plain(agent, info))
            continue
        records.append(delete_file(ctx, agent, info.path, info.rel, info.kind, notes=[
            "archive %.1f days old (kept %.1f days)" % (age_ms / 86400000.0, float(limit) / 86400.0)]))
    return records


def delete_file(ctx, agent, path, rel, kind, notes=None, expect=None):
    """Back up (verified), re-check, then unlink one file in the agent's sessions folder.

    `expect` = (st_ino, st_mtime_ns) the caller judged; a file that changed since is left.
    Returns the record: action "delete", after 0 bytes / 0 records. In a dry run only hashes.
    """
    notes = list(notes or [])
    try:
        n = records_of(kind, path)
        st0 = os.lstat(path)
    except (OSError, FileError) as exc:
        msg = describe_oserror(exc, "reading " + rel) if isinstance(exc, OSError) else str(exc)
        return file_record(agent, rel, kind, stats(0, 0), notes=notes, error=msg)
    before = stats(st0.st_size, n)
    if not inside(sessions_dir_of(ctx, agent), path) or not os.path.isfile(path) or os.path.islink(path):
        return file_record(agent, rel, kind, before, notes=notes,
                           error="not a regular file inside the sessions folder, left alone")
    if expect is not None and (st0.st_ino, st0.st_mtime_ns) != tuple(expect):
        return file_record(agent, rel, kind, before, notes=notes + ["changed since it was judged; left"])
    try:
        backup = ctx.backups.backup(path, rel)
        before = stats(backup["bytes"], n, backup["sha256"])
        if not ctx.dry_run:
            try:
                if sig(os.lstat(path)) != sig(st0):
                    raise FileChanged("%s changed while it was being backed up; left as it was" % rel)
                FAULTS.hit("before-unlink")
                os.unlink(path)
            except OSError as exc:
                raise abandon_backup(ctx.backups, backup, FileError(describe_oserror(exc, "deleting " + rel)))
            except BaseException as exc:
                raise abandon_backup(ctx.backups, backup, exc)
            FAULTS.hit("unlinked")
            fsync_dir(os.path.dirname(path))
    except FileError as exc:
        return file_record(agent, rel, kind, before, notes=notes, error=str(exc))
    except OSError as exc:
        return file_record(agent, rel, kind, before, notes=notes, error=describe_oserror(exc, "deleting " + rel))
    return file_record(agent, rel, kind, before, stats(0, 0), action="delete",
                       backup=None if ctx.dry_run else backup, notes=notes)


def cleanup_temp(ctx, agent, temp_infos, policy):
    """Delete temp leftovers older than `remove_after_s` (backed up first). Returns [records].

    Only names fleet knows: OpenClaw's `sessions.json.<pid>.<uuid>.tmp` (it reaps them itself
    after 5 min) and fleet's `.<name>.fleet-<pid>.tmp`. Any other `.tmp` is left, with a note.
    A fleet temp whose pid is dead is removed whatever its age: the run that wrote it was killed
    before its rename, so the original it was to replace is still in place.
    """
    limit = (policy or {}).get("remove_after_s")
    records = []
    for info in temp_infos:
        name = os.path.basename(info.path)
        m = _FLEET_TMP_RE.search(name)
        known = bool(_OPENCLAW_TMP_RE.match(name) or m)
        age_ms = ctx.now_ms - info.mtime_ns // 1000000
        if not known:
            records.append(_plain(agent, info, notes=["not a temp file fleet knows; left alone"]))
        elif m and int(m.group("pid")) == os.getpid():
            records.append(_plain(agent, info, notes=["this run's own temp file"]))
        elif m and not pid_status(int(m.group("pid")))[0]:
            records.append(delete_file(ctx, agent, info.path, info.rel, info.kind, notes=[
                "leftover of an interrupted fleet run (pid %s is gone)" % m.group("pid")]))
        elif limit is None or age_ms <= float(limit) * 1000.0:
            records.append(_plain(agent, info))
        else:
            records.append(delete_file(ctx, agent, info.path, info.rel, info.kind, notes=[
                "leftover temp file, %.0f min old" % (age_ms / 60000.0)]))
    return records


def remove_stale_locks(ctx, agent, lock_infos, policy):
    """Remove lock files whose owner is gone, when `remove_stale` is true. Returns [records].

    A lock is removed only when it is stale (see locks.lock_state) and no live process holds
    it: a dead or recycled pid, or no readable pid and old. A store lock held too long by a live
    pid is stale by OpenClaw's rule but is left to its owner. Otherwise action none, with a note
    such as "stale lock (dead pid N)".
    """
    remove = bool((policy or {}).get("remove_stale"))
    records = []
    for info in lock_infos:
        state = lock_state(info.path, ctx.now_ms)
        if not state["exists"]:
            continue
        note = ("stale lock (%s)" % state["reason"]) if state["stale"] else ("lock held: %s" % state["reason"])
        owner_gone = state["stale"] and state["alive"] is not True
        if remove and owner_gone:
            records.append(delete_file(ctx, agent, info.path, info.rel, info.kind, notes=[note],
                                       expect=(state["ino"], state["mtime_ns"])))
            continue
        if state["stale"] and not owner_gone:
            note += "; a live process holds it, left"
        elif state["stale"]:
            note += "; left (locks.remove_stale is off)"
        records.append(_plain(agent, info, notes=[note]))
    return records


def copy_verified(ctx, agent, path, rel, target, note=None):
    """Write a copy of `path` at `target` (same folder): temp name, 0600, fsync, re-read and
    compare sha256, source unchanged meanwhile, then rename into place. Returns the record of
    the new file (kind "archive", action "rotate", before 0 bytes). A dry run only hashes."""
    target_rel = ctx.rel(target)
    empty = stats(0, 0)
    if os.path.lexists(target):
        return file_record(agent, target_rel, "archive", empty,
                           error="name already taken, left alone: %s" % os.path.basename(target))
    tmp = os.path.join(os.path.dirname(target), ".%s.fleet-%d.tmp" % (os.path.basename(target), os.getpid()))
    made_tmp = False
    try:
        st0 = os.lstat(path)
        with os.fdopen(open_nofollow(path), "rb") as src:
            out = None
            if not ctx.dry_run:
                out = os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
                made_tmp = True
            try:
                sink = HashSink(out)
                for block in iter(lambda: src.read(CHUNK), b""):
                    sink.write(block)
                if out is not None:
                    out.flush()
                    FAULTS.hit("copy-written")
                    os.fsync(out.fileno())
            finally:
                if out is not None:
                    out.close()
        if not ctx.dry_run:
            if sig(os.lstat(path)) != sig(st0):
                raise FileChanged("%s changed while it was copied; no copy made" % rel)
            if hash_file(tmp)[1] != sink.sha256:
                raise FileError("the copy of %s differs from the source; no copy made" % rel)
            if os.path.lexists(target):
                raise FileError("name already taken, left alone: %s" % os.path.basename(target))
            FAULTS.hit("before-copy-rename")
            os.rename(tmp, target)
            made_tmp = False
            FAULTS.hit("copy-renamed")
            fsync_dir(os.path.dirname(target))
    except FileError as exc:
        return file_record(agent, target_rel, "archive", empty, error=str(exc))
    except OSError as exc:
        return file_record(agent, target_rel, "archive", empty, error=describe_oserror(exc, "copying " + rel))
    finally:
        if made_tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return file_record(agent, target_rel, "archive", empty, stats(sink.bytes, 0, sink.sha256),
                       action="rotate", notes=[note] if note else None)
