"""Restore of a SQLite-era agent database from a run's backup, through SQLite's backup API.

Copying a file over a WAL database that OpenClaw has open corrupts it (the `-wal` is replayed onto
foreign pages), so the bytes are never copied as a file: the backup is opened read-only and
`Connection.backup()` writes it into the live database in one step, under the live database's
write lock (SQLite's own locking: OpenClaw's writers wait on their busy timeout, its readers keep
reading their snapshot), with the WAL and `-shm` kept consistent by SQLite itself.

In order, each refusal naming its reason and writing nothing:
1. only the database itself (`…/openclaw-agent.sqlite`) is restored; its `#` session records and
   `-wal` / `-shm` come back with it;
2. the backup lies in the host's backup folders, its sha256 is the one recorded, and it passes
   `quick_check`;
3. the live database declares the same schema (`user_version`) as the backup: OpenClaw migrated it
   since, and an older schema put back under a newer OpenClaw would be read as corrupt;
4. the live database is as the run left it (its sha256 after the run), unless `force`;
5. a verified online backup of the live database is taken first (a forced restore loses nothing);
6. the write lock is taken with a busy timeout; a database that stays busy is refused ("busy").
After the copy the live database must pass `quick_check` and hold exactly the backup's session
keys (`session_nodes`); the record's notes say so.
"""
import os
import sqlite3

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover
    from urllib import quote

from .context import file_record, stats
from .fsutil import BackupError, hash_file, inside
from .sqlite_clean import nodes
from .sqlite_era import AGENT_DB, BUSY_TIMEOUT_S, connect, connect_path, quick_check
from .sqlite_run import backup_database

RESTORE_BUSY_MS = int(BUSY_TIMEOUT_S * 1000)


def is_agent_database(rel):
    return os.path.basename(rel) == AGENT_DB


def _user_version(path, immutable):
    conn = connect("file:%s?%s" % (quote(os.path.abspath(path)), "immutable=1" if immutable else "mode=ro"))
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0], quick_check(conn)
    finally:
        conn.close()


def restore_database(ctx, item, force, backup_roots, changed_message):
    """Restore one agent database entry of a restore plan; returns its file record."""
    rel = item["path"]
    agent = item.get("agent") or (rel.split("/")[1] if rel.count("/") >= 2 else "")
    path = os.path.join(ctx.state_dir, rel)
    backup_path = item["backup"]
    empty = stats(0, 0, None)

    def refuse(message, before=empty):
        return file_record(agent, rel, "sqlite", before, action="restore", actions=["restore"], error=message)

    if not os.path.isabs(backup_path) or not any(inside(root, backup_path) for root in backup_roots):
        return refuse("backup %s is outside the backup folders; refused" % backup_path)
    if not os.path.isfile(backup_path):
        return refuse("backup no longer exists (old runs' backups expire per the playbook's backup keep_runs / "
                      "max_age); nothing restored")
    size, digest, _ = hash_file(backup_path)
    if digest != item.get("backup_sha256"):
        return refuse("backup is damaged: its sha256 is not the one recorded; nothing restored")
    after = stats(size, 0, digest)
    try:
        want_schema, verdict = _user_version(backup_path, immutable=True)
    except sqlite3.Error as exc:
        return refuse("backup is not a readable SQLite database (%s); nothing restored" % exc)
    if verdict != "ok":
        return refuse("backup fails quick_check (%s); nothing restored" % verdict)
    if not os.path.isfile(path):
        return refuse("%s is gone: OpenClaw recreates it on start; a restore into a missing database is left "
                      "to a person (copy %s there with the gateway stopped)" % (rel, backup_path))
    now_size, now_digest, _ = hash_file(path)
    before = stats(now_size, 0, now_digest)
    try:
        have_schema, _verdict = _user_version(path, immutable=False)
    except sqlite3.Error as exc:
        return refuse("the live database cannot be read (%s); nothing restored" % exc, before)
    if have_schema != want_schema:
        return refuse("the live database declares schema %s, the backup %s: OpenClaw migrated it since the run, "
                      "and the older schema would not load; nothing restored" % (have_schema, want_schema), before)
    if now_digest == digest or _same_pages(path, backup_path):
        return file_record(agent, rel, "sqlite", before, after, action="none", notes=["already as in the backup"])
    if now_digest != item.get("expect_sha256") and not force:
        return refuse(changed_message, before)
    if ctx.dry_run:
        return file_record(agent, rel, "sqlite", before, after, action="restore", actions=["restore"],
                           notes=["would be written through SQLite's backup API under the database's write lock"])
    try:
        saved = backup_database(path, ctx.backups.target_for(rel))
        ctx.backups.stored_bytes += saved["stored_bytes"]
    except BackupError as exc:
        return refuse("the live database could not be backed up first (%s); nothing restored" % exc, before)
    try:
        _copy_in(backup_path, path)
    except sqlite3.OperationalError as exc:
        return file_record(agent, rel, "sqlite", before, action="restore", actions=["restore"], backup=saved,
                           error="the database stayed busy (%s); nothing restored" % exc)
    keys_backup, keys_now = set(nodes(backup_path)), set(nodes(path))
    conn = connect_path(path)
    try:
        verdict = quick_check(conn)
    finally:
        conn.close()
    notes = ["written through SQLite's backup API under the database's write lock",
             "quick_check after the restore: %s" % verdict,
             "session keys as in the backup: %s" % ("yes (%d)" % len(keys_now) if keys_now == keys_backup else "no")]
    error = None if verdict == "ok" and keys_now == keys_backup else \
        "the restored database does not check out (quick_check %s, keys match: %s); the database as it was is in %s" \
        % (verdict, keys_now == keys_backup, saved["path"])
    size_now, digest_now, _ = hash_file(path)
    return file_record(agent, rel, "sqlite", before, stats(size_now, 0, digest_now), action="restore",
                       actions=["restore"], backup=saved, notes=notes, error=error)


def _same_pages(a, b):
    """True when two database files hold the same pages past the 100-byte header (which the backup
    API rewrites: journal mode, change counter), i.e. the database already is the backup."""
    import hashlib
    digests = []
    for path in (a, b):
        if os.path.exists(path + "-wal") and os.path.getsize(path + "-wal") > 0:
            return False  # pages in a WAL are not in the file yet
        h = hashlib.sha256()
        with open(path, "rb") as f:
            head = f.read(100)
            if len(head) < 100:
                return False
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digests.append((os.path.getsize(path), h.hexdigest()))
    return digests[0] == digests[1]


def _copy_in(backup_path, path):
    """The backup's pages into the live database in one backup step, under its write lock."""
    src = connect("file:%s?immutable=1" % quote(os.path.abspath(backup_path)))
    dst = connect_path(path, "rw")
    try:
        dst.execute("PRAGMA busy_timeout = %d" % RESTORE_BUSY_MS)
        dst.execute("BEGIN IMMEDIATE")  # the write lock first: fail fast and clean when busy
        dst.execute("ROLLBACK")
        src.backup(dst, pages=-1)
        dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        dst.close()
        src.close()
