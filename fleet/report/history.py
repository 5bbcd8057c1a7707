"""Run history on the control host: an embedded SQLite database of every scan, run and restore.

Where: `$FLEET_STATE_DIR/history.sqlite`, else `$XDG_STATE_HOME/fleet/history.sqlite`, else
`~/.local/state/fleet/history.sqlite`. The folder is 0700 and the database 0600: it holds paths
and checksums of people's session files.

Contract:
- `record_run(result, meta=None)` stores one RunResult in ONE transaction (`BEGIN IMMEDIATE` …
  `COMMIT`): a crash leaves either the whole run or nothing, and two fleet processes recording at
  once both succeed (WAL mode plus a busy timeout: the second waits for the first).
- `load_run(run_id)` gives back the exact RunResult that was recorded (the full `--json`
  document is stored, zlib-compressed), `None` meaning the latest; a unique prefix of an id is accepted. An
  unknown id raises `UnknownRunError` naming recent ids.
- `list_runs(limit)` lists runs newest first; `agent_size_series(host, agent)` gives each agent's
  total size over time, for trends.
- One history per fleet: each run is recorded under its fleet, the absolute path of the inventory
  it came from (`fleet_key`; the run document's "inventory"). Readers take `fleet=` (a key, or
  ALL_FLEETS); without it they use the scope set by `scoped(key)`, which the CLI sets from `-i`
  for `history` and `report`. So the demo fleet, a test inventory and a real fleet whose hosts
  share names never mix. An explicit run id is found in any fleet (ids are unique). Runs recorded
  without a fleet (before fleets existed: schema < 4) belong to none and show in every fleet, so
  an upgrade hides no history.

The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[i]` takes a database from version
i to i+1, so a database written by any earlier fleet is upgraded in place on open.
"""
from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
import sys
import time
import zlib
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator

from fleet.home import control_dir
from fleet.errors import FleetError, UnknownRunError
from fleet.report.results import RunResult

DB_NAME = "history.sqlite"
BUSY_TIMEOUT_MS = 30_000
RUN_KINDS = ("scan", "run", "restore", "skipped")
ALL_FLEETS = "*all*"
_SCOPE: ContextVar[str] = ContextVar("fleet_history_scope", default=ALL_FLEETS)


class HistoryError(FleetError):
    """The history database cannot be opened, read or written (exit 1)."""


def db_path() -> Path:
    return control_dir() / DB_NAME


def fleet_key(inventory: Path | str) -> str:
    """The fleet a run belongs to: its inventory file's absolute path (symlinks resolved)."""
    return str(Path(os.path.expanduser(str(inventory))).resolve())


@contextmanager
def scoped(fleet: str) -> Iterator[None]:
    """Within the block, readers default to `fleet` (a fleet_key, or ALL_FLEETS)."""
    token = _SCOPE.set(fleet)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def _fleet(fleet: str | None) -> str | None:
    """The fleet to filter on (None: all) for a reader's `fleet` argument."""
    fleet = _SCOPE.get() if fleet is None else fleet
    return None if fleet == ALL_FLEETS else fleet


# --- schema -------------------------------------------------------------------------------

def _to_v1(db: sqlite3.Connection) -> None:
    """The first schema: runs with their document, hosts, files."""
    db.execute("""CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, playbook TEXT, dry_run INTEGER NOT NULL,
        started_at TEXT, finished_at TEXT, ok INTEGER NOT NULL, totals TEXT NOT NULL,
        document TEXT NOT NULL)""")
    db.execute("""CREATE TABLE hosts (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, host TEXT NOT NULL,
        ok INTEGER NOT NULL, error TEXT, elapsed_s REAL, before_bytes INTEGER, after_bytes INTEGER,
        PRIMARY KEY (run_id, host))""")
    db.execute("""CREATE TABLE files (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, host TEXT NOT NULL,
        agent TEXT, path TEXT NOT NULL, kind TEXT, action TEXT,
        before_bytes INTEGER, before_records INTEGER, before_sha256 TEXT,
        after_bytes INTEGER, after_records INTEGER, after_sha256 TEXT,
        backup TEXT, backup_sha256 TEXT, error TEXT)""")
    db.execute("CREATE INDEX files_run_host ON files (run_id, host)")


def _to_v2(db: sqlite3.Connection) -> None:
    """Who ran it and how; archive locations; per-agent sizes for trends (backfilled)."""
    db.execute("ALTER TABLE runs ADD COLUMN controller TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN argv TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN recorded_at TEXT")
    db.execute("ALTER TABLE hosts ADD COLUMN backup_bytes INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE hosts ADD COLUMN expired_backup_bytes INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE files ADD COLUMN archived_to TEXT")
    db.execute("""CREATE TABLE agent_sizes (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, host TEXT NOT NULL,
        agent TEXT NOT NULL, kind TEXT NOT NULL, dry_run INTEGER NOT NULL,
        started_ms INTEGER, finished_ms INTEGER, files INTEGER NOT NULL,
        before_bytes INTEGER NOT NULL, after_bytes INTEGER NOT NULL,
        PRIMARY KEY (run_id, host, agent))""")
    db.execute("CREATE INDEX agent_sizes_host_agent ON agent_sizes (host, agent, started_ms)")
    for run_id, document in db.execute("SELECT run_id, document FROM runs").fetchall():
        _insert_agent_sizes(db, RunResult.from_json(decode_document(document)))


def _to_v3(db: sqlite3.Connection) -> None:
    """A restore names the run it undid (shown by `fleet history`); backfilled from documents."""
    db.execute("ALTER TABLE runs ADD COLUMN restored_run TEXT")
    for run_id, document in db.execute("SELECT run_id, document FROM runs WHERE kind = 'restore'").fetchall():
        db.execute("UPDATE runs SET restored_run = ? WHERE run_id = ?",
                   (decode_document(document).get("restored_run"), run_id))


def _to_v4(db: sqlite3.Connection) -> None:
    """One history per fleet: the inventory a run came from (NULL for runs recorded before)."""
    db.execute("ALTER TABLE runs ADD COLUMN fleet TEXT")
    db.execute("CREATE INDEX runs_fleet ON runs (fleet, started_at)")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_to_v1, _to_v2, _to_v3, _to_v4]
SCHEMA_VERSION = len(MIGRATIONS)


def _prepare_file(path: Path) -> None:
    """Create the folder 0700 and the database file 0600 before SQLite opens it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def connect(path: Path | None = None) -> sqlite3.Connection:
    """Open (creating and migrating as needed) the history database.

    The connection is in autocommit mode; writers use `_transaction()` for BEGIN IMMEDIATE.
    """
    path = path or db_path()
    _prepare_file(path)
    db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _set_wal(db)
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA synchronous = FULL")
    _migrate(db)
    return db


@contextmanager
def opened() -> Iterator[sqlite3.Connection]:
    """The history database, closed afterwards; SQLite and file-system errors become HistoryError
    (naming the database), an unknown run id stays UnknownRunError."""
    path = db_path()
    db = None
    try:
        db = connect(path)
        yield db
    except (sqlite3.Error, OSError) as exc:
        raise HistoryError(f"run history {path}: {exc}") from exc
    finally:
        if db is not None:
            db.close()


def _set_wal(db: sqlite3.Connection) -> None:
    # Switching to WAL needs a moment without other writers; the busy handler does not always
    # cover it, so retry briefly (a second process opening at the same instant).
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _migrate(db: sqlite3.Connection) -> None:
    if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    with _transaction(db):
        # Re-read inside the write lock: another process may have migrated meanwhile.
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for migration in MIGRATIONS[version:]:
            migration(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class _transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")


# --- writing ------------------------------------------------------------------------------

def encode_document(document: dict) -> bytes:
    """The run's JSON document as stored: zlib-compressed UTF-8 JSON (a BLOB).

    Session paths and checksums compress well, and a fleet's daily scans add up.
    """
    text = json.dumps(document, ensure_ascii=False)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        # A host's file name that is not UTF-8 arrives with lone surrogates; escaped, the run is
        # still recorded (and restorable) instead of lost from the history.
        data = json.dumps(document, ensure_ascii=True).encode("ascii")
    return zlib.compress(data, 6)


def decode_document(value: bytes | str) -> dict:
    """Read a stored document: a BLOB from encode_document, or plain JSON text (schema v1)."""
    if isinstance(value, bytes):
        value = zlib.decompress(value).decode("utf-8")
    return json.loads(value)


def parse_iso(value: str | None) -> datetime | None:
    """An ISO-8601 time ('Z' accepted; UTC when it names no zone), or None if unreadable."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def iso_to_ms(value: str | None) -> int | None:
    """Milliseconds since the epoch of an ISO-8601 time ('Z' accepted); None if unreadable."""
    dt = parse_iso(value)
    return None if dt is None else int(dt.timestamp() * 1000)


def _controller() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _insert_agent_sizes(db: sqlite3.Connection, result: RunResult) -> None:
    started_ms, finished_ms = iso_to_ms(result.started_at), iso_to_ms(result.finished_at)
    for host in result.hosts:
        if not host.ok:
            continue
        per_agent: dict[str, list[int]] = {}
        for f in host.files:
            sizes = per_agent.setdefault(f.agent, [0, 0, 0])
            sizes[0] += 1
            sizes[1] += f.before.bytes
            sizes[2] += f.after.bytes
        for agent, (files, before, after) in per_agent.items():
            db.execute("INSERT OR REPLACE INTO agent_sizes VALUES (?,?,?,?,?,?,?,?,?,?)",
                       (result.run_id, host.host, agent, result.kind, int(result.dry_run),
                        started_ms, finished_ms, files, before, after))


def _db_text(value: str | None) -> str | None:
    """A host's file name that is not UTF-8 arrives with lone surrogates, which SQLite text cannot
    hold: such characters are stored as \\udcXX (the document keeps the exact name)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


def record_run(result: RunResult, meta: dict | None = None) -> str:
    """Store `result` in the history in one transaction; returns its run id.

    `meta` may carry "argv" (list of str, default sys.argv), "controller" ("user@host",
    default this machine) and "fleet" (default: the fleet_key of the document's "inventory").
    Recording a run id again replaces the earlier record.
    """
    meta = meta or {}
    document = result.to_json()
    argv = meta.get("argv", sys.argv)
    fleet = meta.get("fleet") or (fleet_key(document["inventory"]) if document.get("inventory") else None)
    with opened() as db:
        with _transaction(db):
            db.execute("DELETE FROM runs WHERE run_id = ?", (result.run_id,))
            db.execute(
                "INSERT INTO runs (run_id, kind, playbook, dry_run, started_at, finished_at, ok, totals,"
                " document, controller, argv, recorded_at, restored_run, fleet) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (result.run_id, result.kind, result.playbook, int(result.dry_run), result.started_at,
                 result.finished_at, int(result.ok), json.dumps(document["totals"]), encode_document(document),
                 meta.get("controller") or _controller(), json.dumps(list(argv)),
                 datetime.now(timezone.utc).isoformat(timespec="seconds"), result.extra.get("restored_run"), fleet))
            for h in result.hosts:
                db.execute("INSERT INTO hosts (run_id, host, ok, error, elapsed_s, before_bytes, after_bytes,"
                           " backup_bytes, expired_backup_bytes) VALUES (?,?,?,?,?,?,?,?,?)",
                           (result.run_id, h.host, int(h.ok), _db_text(h.error), h.elapsed_s, h.before_bytes,
                            h.after_bytes, h.backup_bytes, h.expired_backup_bytes))
                db.executemany(
                    "INSERT INTO files (run_id, host, agent, path, kind, action, before_bytes, before_records,"
                    " before_sha256, after_bytes, after_records, after_sha256, backup, backup_sha256, error,"
                    " archived_to) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(result.run_id, h.host, f.agent, _db_text(f.path), f.kind, f.action, f.before.bytes,
                      f.before.records, f.before.sha256, f.after.bytes, f.after.records, f.after.sha256,
                      _db_text(f.backup), f.backup_sha256, _db_text(f.error), _db_text(f.archived_to))
                     for f in h.files])
            _insert_agent_sizes(db, result)
    return result.run_id


# --- reading ------------------------------------------------------------------------------

def _where_fleet(fleet: str | None) -> tuple[str, tuple]:
    return ("", ()) if fleet is None else (" WHERE (fleet = ? OR fleet IS NULL)", (fleet,))


def _recent_ids(db: sqlite3.Connection, n: int = 5, fleet: str | None = None) -> list[str]:
    # started_at has one-second resolution and run ids end in random hex: runs of the same
    # second are ordered by when they were recorded (rowid), so "latest" is the last recorded.
    where, args = _where_fleet(fleet)
    return [r[0] for r in db.execute(f"SELECT run_id FROM runs{where} ORDER BY started_at DESC, rowid DESC LIMIT ?",
                                     (*args, n))]


def fleets(db: sqlite3.Connection) -> list[tuple[str | None, int]]:
    """(fleet, number of runs) of every fleet in the history, most runs first."""
    return [(r[0], r[1]) for r in db.execute("SELECT fleet, COUNT(*) FROM runs GROUP BY fleet ORDER BY 2 DESC")]


def empty_fleet_message(db: sqlite3.Connection, fleet: str) -> str:
    """Why a fleet's history is empty, naming the fleets that have runs and how to see them."""
    others = [(f, n) for f, n in fleets(db) if f != fleet]
    text = f"no runs recorded for the fleet of {fleet} yet; `fleet scan` or `fleet run` records one"
    if others:
        named = ", ".join(f"{f or '(runs from before fleets were recorded)'} ({n})" for f, n in others[:5])
        text += f". Other fleets in the history: {named}; choose one with -i FILE, or --all-fleets"
    return text


def resolve_run_id(db: sqlite3.Connection, run_id: str | None, fleet: str | None = None) -> str:
    """The full id for `run_id` (exact, or a unique prefix; None = latest of `fleet`) or UnknownRunError.

    An explicit id or prefix is looked up in every fleet: run ids are unique."""
    scope = _fleet(fleet)
    if run_id is None and scope is not None:
        latest = _recent_ids(db, 1, scope)
        if not latest:
            raise UnknownRunError(empty_fleet_message(db, scope))
        return latest[0]
    recent = _recent_ids(db)
    if not recent:
        raise UnknownRunError(f"no runs recorded yet in {db_path()}; `fleet scan` or `fleet run` records one")
    if run_id is None:
        return recent[0]
    if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
        return run_id
    escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    matches = [r[0] for r in db.execute("SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' "
                                        "ORDER BY run_id DESC LIMIT 6", (escaped + "%",))]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UnknownRunError(f"run id {run_id!r} is ambiguous: it starts {', '.join(matches)}; give more of it")
    raise UnknownRunError(f"unknown run id {run_id!r}; recent runs: {', '.join(recent)} (see `fleet history`)")


def load_run(run_id: str | None = None, fleet: str | None = None) -> RunResult:
    """The recorded RunResult of `run_id` (None = the latest of `fleet`). Raises UnknownRunError."""
    with opened() as db:
        full = resolve_run_id(db, run_id, fleet)
        row = db.execute("SELECT document FROM runs WHERE run_id = ?", (full,)).fetchone()
    return RunResult.from_json(decode_document(row["document"]))


def list_runs(limit: int = 50, fleet: str | None = None) -> list[dict]:
    """Recorded runs of `fleet` (default: the scope), newest first: id, kind, playbook, times,
    controller, ok, totals and fleet."""
    where, args = _where_fleet(_fleet(fleet))
    with opened() as db:
        rows = db.execute("SELECT run_id, kind, playbook, dry_run, started_at, finished_at, ok, totals,"
                          f" controller, argv, restored_run, fleet FROM runs{where}"
                          " ORDER BY started_at DESC, rowid DESC LIMIT ?", (*args, int(limit))).fetchall()
    runs = []
    for r in rows:
        runs.append({"run_id": r["run_id"], "kind": r["kind"], "playbook": r["playbook"],
                     "dry_run": bool(r["dry_run"]), "started_at": r["started_at"],
                     "finished_at": r["finished_at"], "ok": bool(r["ok"]), "controller": r["controller"],
                     "argv": json.loads(r["argv"]) if r["argv"] else None, "totals": json.loads(r["totals"]),
                     "restored_run": r["restored_run"], "fleet": r["fleet"]})
    return runs


@dataclass(frozen=True)
class SizePoint:
    """An agent's total size on a host at one moment."""

    at_ms: int
    bytes: int
    run_id: str
    kind: str


def empty_history_message(fleet: str | None = None) -> str:
    """What `fleet history` says when the scope has no runs."""
    scope = _fleet(fleet)
    with opened() as db:
        if scope is None:
            return "no runs recorded yet; `fleet scan` or `fleet run` records one"
        return empty_fleet_message(db, scope)


def agent_size_series(host: str | None = None, agent: str | None = None,
                      fleet: str | None = None) -> dict[tuple[str, str], list[SizePoint]]:
    """Each (host, agent)'s size over time, oldest first, from scans, runs and restores.

    A scan gives one point; a real run gives its size before (at its start) and after (at its
    end); a dry run only its size before, since it changed nothing. Only runs of `fleet`
    (default: the scope) count: a demo host named like a real one is another machine.
    """
    scope = _fleet(fleet)
    with opened() as db:
        sql = ("SELECT run_id, host, agent, kind, dry_run, started_ms, finished_ms, before_bytes, after_bytes"
               " FROM agent_sizes WHERE kind != 'skipped'")
        args: list = []
        if scope is not None:
            sql += " AND run_id IN (SELECT run_id FROM runs WHERE fleet = ? OR fleet IS NULL)"
            args.append(scope)
        if host:
            sql += " AND host = ?"
            args.append(host)
        if agent:
            sql += " AND agent = ?"
            args.append(agent)
        rows = db.execute(sql, args).fetchall()
    series: dict[tuple[str, str], list[SizePoint]] = {}
    for r in rows:
        points = series.setdefault((r["host"], r["agent"]), [])
        start = r["started_ms"] if r["started_ms"] is not None else r["finished_ms"]
        if start is None:
            continue
        points.append(SizePoint(start, r["before_bytes"], r["run_id"], r["kind"]))
        changed = r["kind"] in ("run", "restore") and not r["dry_run"] and r["after_bytes"] != r["before_bytes"]
        if changed:
            end = r["finished_ms"] if r["finished_ms"] is not None else start
            points.append(SizePoint(max(end, start), r["after_bytes"], r["run_id"], r["kind"]))
    for points in series.values():
        points.sort(key=lambda p: (p.at_ms, p.run_id))
    return {k: v for k, v in sorted(series.items()) if v}

