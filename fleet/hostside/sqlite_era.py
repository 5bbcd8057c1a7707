"""OpenClaw's SQLite era (2026.8+): `agents/<id>/agent/openclaw-agent.sqlite`, read-only scan,
online backups, and changes only through OpenClaw's own `openclaw sessions cleanup`.

Reading never writes the user's data:
- with both `-wal` and `-shm` present (OpenClaw running, or left by it) the database is opened
  `file:…?mode=ro`: SQLite reads the WAL through the existing `-shm` (readers only take read
  marks in that shared-memory file; nothing is written to the database or the WAL);
- with neither present (cleanly closed: every page is in the main file) it is opened
  `immutable=1`, so SQLite creates no `-wal`/`-shm` beside it;
- with only one of them, `mode=ro` could create the missing `-shm`, so it is opened `immutable=1`
  too and the scan says the WAL's pages were not read.
Every connection also sets `PRAGMA query_only`.

What a scan reports per database: pages (`page_size`, `page_count`, `freelist_count`), the WAL's
bytes, bytes per table from `dbstat` when this SQLite has it, `PRAGMA quick_check`, and per session
(`session_windows` row) its transcript events (`transcript_events`: stored bytes of `event_json` /
`event_zstd`, and the text size — `event_json`'s bytes, or `event_utf8_bytes` for zstd rows, which
Python cannot decompress before 3.14), its trajectory events and runs (`trajectory_runtime_events`),
and the oldest/newest event. Session rows appear in the result like JSON-era files: path
`agents/<id>/agent/openclaw-agent.sqlite#transcript/<sessionId>` (kind `transcript`) and
`…#trajectory/<sessionId>` (kind `trajectory`), with the database's own record holding the rest of
its bytes (indexes, schema, free pages), so the bytes still add up to the file's size.

Changes (plan section `operations.sqlite`) live in sqlite_run.py: a verified online backup, then
OpenClaw's own `sessions cleanup`, a WAL checkpoint, and VACUUM only with the gateway stopped.
"""
import os
import sqlite3

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover
    from urllib import quote

from .context import file_record, stats
from .sqlite_schema import KNOWN_SCHEMAS, SESSION_TABLES, columns, trajectory_query, transcript_query, \
    unknown_schema_message

AGENT_DB = "openclaw-agent.sqlite"
BUSY_TIMEOUT_S = 5.0


def open_readonly(path):
    """(connection, how): a connection that cannot write and creates no file (see module doc)."""
    wal, shm = os.path.exists(path + "-wal"), os.path.exists(path + "-shm")
    if wal and shm:
        how, query = "read-only", "mode=ro"
    elif not wal and not shm:
        how, query = "immutable (no WAL)", "immutable=1"
    else:
        how, query = "immutable (WAL without -shm: the WAL's pages were not read)", "immutable=1"
    conn = connect("file:%s?%s" % (quote(os.path.abspath(path)), query))
    conn.execute("PRAGMA query_only = 1")
    return conn, how


def _octet_length(value):
    if value is None:
        return None
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, bytes):
        return len(value)
    return len(str(value).encode("utf-8"))


def connect(uri):
    """A connection; OpenClaw's CHECK constraints call octet_length(), which SQLite has only
    since 3.43: older SQLites (Debian 12 has 3.40) get the same function from Python, so
    `quick_check`, which evaluates CHECK constraints, can judge the database."""
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    if sqlite3.sqlite_version_info < (3, 43, 0):
        conn.create_function("octet_length", 1, _octet_length, deterministic=True)
    return conn


def connect_path(path, mode="ro"):
    """connect() to the database file at `path`, read-only ("ro") or read-write ("rw"); never creates it."""
    return connect("file:%s?mode=%s" % (quote(os.path.abspath(path)), mode))


def _tables(conn):
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _table_bytes(conn):
    """{table or index: bytes} from dbstat, or None when this SQLite lacks it."""
    try:
        rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.Error:
        return None
    return {name: int(size or 0) for name, size in rows}


def quick_check(conn):
    """'ok', or SQLite's first complaints joined."""
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.Error as exc:
        return "quick_check failed: %s" % exc
    return "ok" if rows == ["ok"] else "; ".join(str(r) for r in rows)


def _sessions(conn, tables):
    """{session_id: {...}} from session_windows, transcript_events and trajectory_runtime_events."""
    out = {}

    def session(sid):
        return out.setdefault(sid, {"session_id": sid, "session_key": None, "transcript_events": 0,
                                    "transcript_records": 0, "transcript_bytes": 0, "transcript_text_bytes": 0,
                                    "trajectory_events": 0, "trajectory_bytes": 0, "trajectory_runs": 0,
                                    "oldest_ms": None, "newest_ms": None})

    def span(s, lo, hi):
        if lo is not None:
            s["oldest_ms"] = lo if s["oldest_ms"] is None else min(s["oldest_ms"], lo)
        if hi is not None:
            s["newest_ms"] = hi if s["newest_ms"] is None else max(s["newest_ms"], hi)

    if "session_windows" in tables:
        for sid, key in conn.execute("SELECT session_id, session_key FROM session_windows"):
            session(sid)["session_key"] = key
    if "transcript_events" in tables:
        for sid, n, after_header, stored, text, lo, hi in conn.execute(
                transcript_query(set(columns(conn, "transcript_events")))):
            s = session(sid)
            s.update(transcript_events=n, transcript_records=int(after_header or 0),
                     transcript_bytes=int(stored or 0), transcript_text_bytes=int(text or 0))
            span(s, lo, hi)
    if "trajectory_runtime_events" in tables:
        for sid, n, stored, runs, lo, hi in conn.execute(
                trajectory_query(set(columns(conn, "trajectory_runtime_events")))):
            s = session(sid)
            s.update(trajectory_events=n, trajectory_bytes=int(stored or 0), trajectory_runs=runs)
            span(s, lo, hi)
    return out


def _entries(conn, tables):
    """{session_key: {"updatedAt": ms, "sessionId": id}} from session_nodes (the store's entries)."""
    if "session_nodes" not in tables:
        return {}
    return {key: {"updatedAt": updated, "sessionId": sid} for key, sid, updated in conn.execute(
        "SELECT session_key, current_session_id, updated_at FROM session_nodes")}


def _entries_with_fields(conn):
    """How many session_nodes entries carry the bulky skillsSnapshot / systemPromptReport fields."""
    return conn.execute("SELECT COUNT(*) FROM session_nodes WHERE instr(entry_json, '\"skillsSnapshot\"') > 0 "
                        "OR instr(entry_json, '\"systemPromptReport\"') > 0").fetchone()[0]


def inspect(path):
    """Everything a scan reports about one agent database (read-only; raises sqlite3.Error)."""
    conn, how = open_readonly(path)
    try:
        tables = _tables(conn)
        user_version = conn.execute("PRAGMA user_version").fetchone()[0]
        # A schema fleet has never seen is read for its pages only: no query assumes its tables.
        known = user_version in KNOWN_SCHEMAS and set(SESSION_TABLES) <= tables
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        page_count = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        info = {
            "opened": how, "page_size": page_size, "page_count": page_count, "free_pages": free,
            "free_bytes": free * page_size, "user_version": user_version,
            "wal_bytes": _size(path + "-wal"), "tables": _table_bytes(conn) if known else None,
            "quick_check": quick_check(conn) if known else "not run (unknown schema)",
            "sessions": _sessions(conn, tables) if known else {},
            "entries": _entries(conn, tables) if known else {},
            "entries_with_fields": _entries_with_fields(conn) if known else 0,
            "schema_known": known,
        }
    finally:
        conn.close()
    return info


def _size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _mb(n):
    from .health import human_bytes
    return human_bytes(n)


def database_notes(info):
    notes = ["opened %s; SQLite user_version %s" % (info["opened"], info["user_version"]),
             "%d pages of %d bytes, %d free (%s); WAL %s" % (
                 info["page_count"], info["page_size"], info["free_pages"], _mb(info["free_bytes"]),
                 _mb(info["wal_bytes"])),
             "quick_check: %s" % info["quick_check"]]
    if info["tables"]:
        top = sorted(info["tables"].items(), key=lambda kv: -kv[1])[:4]
        notes.append("largest tables (dbstat): " + ", ".join("%s %s" % (n, _mb(b)) for n, b in top))
    return notes


def session_records(af, info, db_rel, db_size):
    """(db record, per-session records) in the JSON era's shape; bytes add up to the file size."""
    recs, session_bytes = [], 0
    for sid in sorted(info["sessions"]):
        s = info["sessions"][sid]
        key = s["session_key"]
        for kind, n, nbytes, extra in (
                ("transcript", s["transcript_records"], s["transcript_bytes"],
                 "%d events, %s of text" % (s["transcript_events"], _mb(s["transcript_text_bytes"]))),
                ("trajectory", s["trajectory_events"], s["trajectory_bytes"], "%d runs" % s["trajectory_runs"])):
            if not n and not nbytes:
                continue
            session_bytes += nbytes
            recs.append(file_record(af.agent, "%s#%s/%s" % (db_rel, kind, sid), kind, stats(nbytes, n),
                                    notes=["stored in %s: %s" % (AGENT_DB, extra)], session_key=key))
    db = file_record(af.agent, db_rel, "sqlite", stats(max(0, db_size - session_bytes), 0),
                     notes=database_notes(info) + ["the sessions' rows are listed as their own records"])
    return db, recs


def agent_databases(af):
    """The agent's openclaw-agent.sqlite FileInfo (or None)."""
    for f in af.files:
        if f.kind == "sqlite" and os.path.basename(f.path) == AGENT_DB:
            return f
    return None


def scan_agent(af, base_records):
    """Replace the database's plain record by the SQLite-aware ones; also sets af.sqlite_entries.

    `base_records` are the agent's action-none records; returns the new list. A database that
    cannot be read keeps its plain record, with the error.
    """
    db_info = agent_databases(af)
    if db_info is None:
        return base_records
    try:
        info = inspect(db_info.path)
    except sqlite3.Error as exc:
        for rec in base_records:
            if rec["path"] == db_info.rel and rec["error"] is None:
                rec["error"] = "SQLite database not readable: %s" % exc
        af.sqlite_info = {"error": str(exc)}
        return base_records
    af.sqlite_info = info
    af.sqlite_entries = info["entries"]
    db, recs = session_records(af, info, db_info.rel, db_info.size)
    out = []
    for rec in base_records:
        if rec["path"] == db_info.rel:
            out.append(db)
            out.extend(recs)
        else:
            out.append(rec)
    return out


def health(af):
    """Findings about the agent database: quick_check (critical), free pages, unreadable."""
    info = getattr(af, "sqlite_info", None)
    db_info = agent_databases(af)
    if not info or db_info is None:
        return []
    rel = db_info.rel
    if "error" in info:
        return [_finding(af.agent, "critical", "sqlite-unreadable", "cannot read %s: %s" % (AGENT_DB, info["error"]), rel)]
    out = []
    if info["schema_known"] and info["quick_check"] != "ok":
        out.append(_finding(af.agent, "critical", "sqlite-quick-check",
                            "PRAGMA quick_check: %s; stop the gateway and restore the database from a backup"
                            % info["quick_check"], rel))
    total = info["page_count"] * info["page_size"]
    if total and info["free_bytes"] > max(total // 4, 1 << 20):
        out.append(_finding(af.agent, "info", "sqlite-free-pages",
                            "%s of %s is free pages; a VACUUM with the gateway stopped gives it back"
                            % (_mb(info["free_bytes"]), _mb(total)), rel))
    leftovers = [f for f in af.files if f.kind == "sqlite" and ".memory-reindex-" in os.path.basename(f.path)]
    if leftovers:
        # Seen on genuine 2026.9.6 data: every `openclaw agent --local` run left one (~370 KB with its WAL).
        out.append(_finding(af.agent, "info", "sqlite-reindex-leftovers",
                            "%d memory-reindex database files (%s) beside %s; OpenClaw's scratch copies, "
                            "left alone by fleet" % (len(leftovers), _mb(sum(f.size for f in leftovers)), AGENT_DB),
                            os.path.dirname(rel)))
    if not info["schema_known"]:
        out.append(_finding(af.agent, "warning", "sqlite-schema", unknown_schema_message(info["user_version"]), rel))
    return out


def _finding(agent, severity, check, detail, path):
    return {"agent": agent, "severity": severity, "check": check, "detail": detail, "path": path}
