"""Which OpenClaw agent-database schemas fleet knows, and which OpenClaw may touch which database.

An agent database declares its schema in `PRAGMA user_version`. Measured from OpenClaw's published
packages (`OPENCLAW_AGENT_SCHEMA_VERSION` in each release's dist, and genuine databases written by
2026.8.2 and 2026.9.6):

    user_version 19: 2026.8.1, 2026.8.2, 2026.9.1 - 2026.9.4
    user_version 21: 2026.9.5
    user_version 23: 2026.9.6

Columns are never assumed: a scan reads `PRAGMA table_info` and asks only for the columns the
table has (2026.8.x's `transcript_events` has no `event_zstd` / `event_utf8_bytes`). A database
declaring any other user_version is scanned for file sizes only, reported as one warning naming
the version, and never changed.

OpenClaw's own CLI is run on a database only when its release declares the same schema: a newer
OpenClaw would migrate an older database on open (a change nobody asked for, that the user's
gateway could not read back), an older one would refuse or misread a newer one.
"""
import os
import re
import shutil
import subprocess

KNOWN_SCHEMAS = {19: ("2026.8.1", "2026.8.2", "2026.9.1", "2026.9.2", "2026.9.3", "2026.9.4"),
                 21: ("2026.9.5",),
                 23: ("2026.9.6",)}
SCHEMA_OF_RELEASE = dict((v, schema) for schema, versions in KNOWN_SCHEMAS.items() for v in versions)
SESSION_TABLES = ("session_nodes", "session_windows", "transcript_events")
_VERSION_RE = re.compile(r"OpenClaw\s+(\d{4}\.\d+\.\d+(?:-[0-9A-Za-z.]+)?)")


def releases(schema):
    """'2026.8.1 - 2026.9.4' style text for a known schema."""
    versions = KNOWN_SCHEMAS.get(schema) or ()
    if not versions:
        return "no release fleet knows"
    return versions[0] if len(versions) == 1 else "%s - %s" % (versions[0], versions[-1])


def known_list():
    return ", ".join("%d (%s)" % (s, releases(s)) for s in sorted(KNOWN_SCHEMAS))


def unknown_schema_message(user_version):
    """The one warning for a schema fleet has never seen."""
    return ("openclaw-agent.sqlite declares schema user_version %s, which fleet has not seen (known: %s); "
            "scanned for file sizes only, nothing in it is changed" % (user_version, known_list()))


def columns(conn, table):
    """The table's column names (empty when it does not exist)."""
    return [r[1] for r in conn.execute("PRAGMA table_info(%s)" % table)]


def table_columns(conn, tables):
    return dict((t, set(columns(conn, t))) for t in tables)


def _expr_stored(cols):
    """SQL for a transcript row's stored bytes, from the columns this schema has."""
    parts = []
    if "event_json" in cols:
        parts.append("COALESCE(LENGTH(CAST(event_json AS BLOB)), 0)")
    if "event_zstd" in cols:
        parts.append("COALESCE(LENGTH(event_zstd), 0)")
    return " + ".join(parts) or "0"


def _expr_text(cols):
    """SQL for a transcript row's text bytes (event_utf8_bytes for a compressed row)."""
    plain = "COALESCE(LENGTH(CAST(event_json AS BLOB)), 0)" if "event_json" in cols else "0"
    if "event_zstd" in cols and "event_utf8_bytes" in cols:
        return "CASE WHEN event_zstd IS NOT NULL THEN COALESCE(event_utf8_bytes, 0) ELSE %s END" % plain
    return plain


def transcript_query(cols):
    """Per-session transcript totals: (sid, events, records after the header, stored, text, min, max)."""
    when = ("MIN(created_at), MAX(created_at)" if "created_at" in cols else "NULL, NULL")
    return ("SELECT session_id, COUNT(*), SUM(seq > 0), SUM(%s), SUM(%s), %s FROM transcript_events "
            "GROUP BY session_id" % (_expr_stored(cols), _expr_text(cols), when))


def trajectory_query(cols):
    """Per-session trajectory totals: (sid, events, stored bytes, runs, min, max)."""
    stored = "SUM(LENGTH(CAST(event_json AS BLOB)))" if "event_json" in cols else "0"
    runs = "COUNT(DISTINCT run_id)" if "run_id" in cols else "0"
    when = "MIN(created_at), MAX(created_at)" if "created_at" in cols else "NULL, NULL"
    return ("SELECT session_id, COUNT(*), %s, %s, %s FROM trajectory_runtime_events GROUP BY session_id"
            % (stored, runs, when))


# --- Finding OpenClaw on the host -------------------------------------------------------------

def openclaw_version(cmd, env, timeout_s=60):
    """The release `cmd --version` prints ('2026.9.6'), or raises OSError with the reason."""
    try:
        proc = subprocess.run(list(cmd) + ["--version"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise OSError("`%s --version` did not answer within %d s" % (" ".join(cmd), timeout_s))
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    match = _VERSION_RE.search(text)
    if proc.returncode != 0 or not match:
        raise OSError("`%s --version` exited %d without naming an OpenClaw release: %s"
                      % (" ".join(cmd), proc.returncode, text.strip()[-200:]))
    return match.group(1)


def _process_openclaw(uid, state_dir):
    """[node, script] or [binary] of a running OpenClaw process of this user serving `state_dir`.

    Only processes of the same user whose state directory (OPENCLAW_STATE_DIR, else
    ~/.openclaw) is this one are looked at, and only paths that exist are returned. The gateway
    renames itself (`process.title = "openclaw-gateway"`), which overwrites its argv; the shell
    that started it usually left the program's path in `_` of its environment.
    """
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    want = os.path.realpath(state_dir)
    for pid in sorted(pids, key=int):
        base = os.path.join("/proc", pid)
        try:
            if os.stat(base).st_uid != uid:
                continue
            with open(os.path.join(base, "cmdline"), "rb") as f:
                argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
            with open(os.path.join(base, "environ"), "rb") as f:
                environ = dict(item.decode("utf-8", "replace").split("=", 1)
                               for item in f.read().split(b"\0") if b"=" in item)
        except OSError:
            continue
        if not argv or "openclaw" not in " ".join(argv[:2]).lower():
            continue
        served = environ.get("OPENCLAW_STATE_DIR") or os.path.join(environ.get("HOME", "/"), ".openclaw")
        if os.path.realpath(served) != want:
            continue
        found = _script_in(argv) or _script_in([environ.get("_", "")])
        if found is None:
            continue
        if found.endswith(".mjs"):
            try:
                exe = os.readlink(os.path.join(base, "exe"))
            except OSError:
                continue
            if os.path.basename(exe).startswith("node") and os.access(exe, os.X_OK):
                return [exe, found]
            continue
        return [found]
    return None


def _script_in(argv):
    for arg in argv:
        if arg and os.path.isabs(arg) and os.path.basename(arg) in ("openclaw", "openclaw.mjs") \
                and os.path.isfile(arg):
            return arg
    return None


def find_openclaw(configured, state_dir):
    """(command list, where it was found) or (None, why not): the plan's `openclaw_cmd` first,
    then `openclaw` on PATH, then the program of a running OpenClaw process serving `state_dir`."""
    if configured:
        return list(configured), "openclaw_cmd of the inventory"
    path = shutil.which("openclaw")
    if path:
        return [path], "PATH (%s)" % path
    cmd = _process_openclaw(os.getuid(), state_dir)
    if cmd:
        return cmd, "the running OpenClaw process (%s)" % " ".join(cmd)
    return None, ("no OpenClaw found: no openclaw_cmd in the inventory, no `openclaw` on PATH, and no "
                  "running OpenClaw process of this user for this state directory shows where its program is")


def usable_openclaw(cmd, env, user_version):
    """None when OpenClaw `cmd` may run on a database of `user_version`, else the reason it may not."""
    try:
        version = openclaw_version(cmd, env)
    except OSError as exc:
        return str(exc)
    schema = SCHEMA_OF_RELEASE.get(version)
    if schema is None:
        return ("OpenClaw %s is a release fleet has not proved (known: %s); its cleanup is not run"
                % (version, known_list()))
    if schema != user_version:
        return ("OpenClaw %s writes schema %d but the database declares %s: running it would migrate "
                "or misread the database; nothing is run" % (version, schema, user_version))
    return None
