"""Read-only discovery: the state dir, its agents, each agent's era and every file by kind.

Nothing here writes, and nothing follows a symlink: files are listed with os.scandir and
lstat; a symlink is reported (kind `other`, error "symlink, not followed") and never touched.
The store (`sessions.json`) is the only file parsed, once, to know which transcripts it
references; a store that does not parse makes `store_usable` false, and then no transcript is
called an orphan (with an unreadable store everything would look orphaned).
"""
import json
import os
import re
import stat
from json.decoder import WHITESPACE

from .context import AgentFiles, FileInfo
from .fsutil import describe_oserror, inside, is_safe_id, open_nofollow
from .storeread import drop_fields as _drop_fields, read_member, stream_store
from .terms import FLAT_LEGACY_AGENT

STORE_NAME = "sessions.json"
SQLITE_NAME = "openclaw-agent.sqlite"

_TOPIC_RE = re.compile(r"^(?P<sid>.+)-topic-(?P<topic>[0-9]+)\.jsonl$")
_CHECKPOINT_RE = re.compile(r"^(?P<sid>.+)\.checkpoint\.[^.]+\.jsonl$")
_TRAJECTORY_RE = re.compile(r"^(?P<sid>.+)\.trajectory(?:\.jsonl|-path\.json)$")
_TOPIC_SID_RE = re.compile(r"^(?P<sid>.+)-topic-(?P<topic>[0-9]+)$")
_ARCHIVE_RE = re.compile(r"\.(?:deleted|reset|bak)\.[^/]+$|\.corrupt-")


class StateDirError(Exception):
    """The state directory does not exist or cannot be read (exit 3)."""


def resolve_state_dir(value, environ=None):
    """The absolute state dir: the plan's value with ~ and $VARS expanded, or the default.

    null → $OPENCLAW_STATE_DIR, else $OPENCLAW_HOME, else ~/.openclaw (a profile X is
    `~/.openclaw-X`, given as the plan's state_dir). Raises StateDirError when it is missing or
    unreadable.
    """
    env = os.environ if environ is None else environ
    if not value:
        value = env.get("OPENCLAW_STATE_DIR") or env.get("OPENCLAW_HOME") or "~/.openclaw"
    path = os.path.abspath(os.path.expanduser(os.path.expandvars(value)))
    if not os.path.isdir(path):
        if os.path.lexists(path):
            raise StateDirError("state dir is not a directory: %s" % path)
        raise StateDirError("state dir does not exist: %s (set state_dir in the inventory, or "
                            "OPENCLAW_STATE_DIR on the host)" % path)
    try:
        os.listdir(path)
    except OSError as exc:
        raise StateDirError("state dir cannot be read: %s" % describe_oserror(exc, path))
    return path


def list_agents(state_dir, wanted=None):
    """Return [(agent_id, agent_dir, error)] for the plan's agents, or every dir under agents/.

    An agent dir that is a symlink resolving outside the state dir is refused (error set), as is
    an id that is not a safe name or a requested agent that does not exist.
    """
    agents_root = os.path.join(state_dir, "agents")
    if wanted is None:
        try:
            with os.scandir(agents_root) as it:
                names = sorted(e.name for e in it if e.is_dir(follow_symlinks=True) or e.is_symlink())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StateDirError("agents folder cannot be read: %s" % describe_oserror(exc, agents_root))
    else:
        names = []
        for name in wanted:
            if name not in names:
                names.append(name)
    out = []
    for name in names:
        path = os.path.join(agents_root, name)
        error = None
        if not is_safe_id(name):
            error = "not a safe agent id, refused: %r" % name
        elif not os.path.lexists(path):
            error = "agent not found: %s" % os.path.relpath(path, state_dir)
        elif not inside(state_dir, path):
            # A link at agents/<id> or at agents/ itself: nothing behind it is read or changed.
            error = "agent dir is a symlink out of the state dir, refused: %s -> %s" % (
                os.path.relpath(path, state_dir), os.path.realpath(path))
        elif not os.path.isdir(path):
            error = "agent path is not a directory: %s" % os.path.relpath(path, state_dir)
        out.append((name, path, error))
    return out


BULKY_FIELDS = ("skillsSnapshot", "systemPromptReport")


def load_store(path):
    """Parse a store file; return (store or None, problem or None) where problem = (check, detail)."""
    try:
        fd = open_nofollow(path)
        with os.fdopen(fd, "rb") as f:
            # A well-formed store is read in pieces (storeread): never twice its size in memory.
            store = stream_store(f, _store_decoder(_reject_constant).scan_once, BULKY_FIELDS)
            if store is not None:
                return store, _shape_problem(store)
            f.seek(0)
            raw = f.read()
    except OSError as exc:
        return None, ("store-unreadable", describe_oserror(exc, "reading the store"))
    if not raw.strip():
        return None, ("store-empty", "sessions.json is %d bytes of nothing: OpenClaw would load it as {} "
                      "and its next save would drop every session; restore it from a backup" % len(raw))
    try:
        text = raw.decode("utf-8")
        del raw
        # Discovery keeps every agent's store for the whole run (references, health, kinds); the
        # rebuildable bulky fields are ~90 % of a store and none of that reads them, so they are
        # let go as each entry is parsed. The store pass re-reads the file under its lock, so
        # nothing written back ever lacks them.
        store = loads_store_text(text, BULKY_FIELDS)
        del text
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            exc = "nested too deeply"
        return None, ("store-invalid", "sessions.json is not valid JSON (%s): OpenClaw would load it as {} "
                      "and its next save would drop every session; repair or restore it" % exc)
    if not isinstance(store, dict):
        return None, ("store-shape", "sessions.json holds a JSON %s, not an object of session key -> entry"
                      % json_type(store))
    return store, _shape_problem(store)


def _shape_problem(store):
    for key, entry in store.items():
        if not isinstance(entry, dict):
            return ("store-shape", "entry %r is a JSON %s, not an object" % (key, json_type(entry)))
    return None


def _reject_constant(name):
    raise ValueError("%s is not a JSON number" % name)


_STORE_DECODERS = {}


def loads_store_text(text, drop=(), keep_keys=False, reject_constant=_reject_constant):
    """json.loads(text) (no NaN/Infinity, finite floats) for a sessions.json, one entry at a time.

    Each top-level value is parsed on its own and the fields in `drop` are let go at once (popped,
    or set to None with keep_keys, so callers still see that the entry had them): a 50 MB store
    whose entries carry skillsSnapshot/systemPromptReport (~90 % of it, ~8 bytes of Python
    objects per byte of JSON) never has all of them in memory. Same result and the same errors
    as json.loads: anything this reader does not take (not an object at the top, bad JSON) is
    handed to json.loads, which returns it or raises its own precise error.
    """
    decoder = _store_decoder(reject_constant)
    try:
        return _stream_object(text, decoder.scan_once, drop, keep_keys)
    except (ValueError, StopIteration, IndexError):
        store = json.loads(text, parse_constant=reject_constant, parse_float=finite_float)
        if isinstance(store, dict):
            _drop_fields(store.values(), drop, keep_keys)
        return store


def _store_decoder(reject_constant):
    decoder = _STORE_DECODERS.get(reject_constant)
    if decoder is None:
        decoder = _STORE_DECODERS[reject_constant] = json.JSONDecoder(parse_constant=reject_constant,
                                                                      parse_float=finite_float)
    return decoder


_WS = WHITESPACE.match             # json's own idea of white space between tokens


def _stream_object(text, scan_once, drop, keep_keys):
    """The top-level JSON object of `text`, its values parsed one by one (see loads_store_text).
    Raises ValueError/StopIteration/IndexError on anything but a well-formed object."""
    i = _WS(text, 0).end()
    if text[i] != "{":
        raise ValueError("not an object")
    store = {}
    i = _WS(text, i + 1).end()
    if text[i] == "}":
        i += 1
    else:
        sep = ","
        while sep == ",":
            key, value, i, sep = read_member(text, i, scan_once)
            if drop:
                _drop_fields((value,), drop, keep_keys)
            store[key] = value            # a repeated key: last value, first place (as json.loads)
    if _WS(text, i).end() != len(text):
        raise ValueError("extra data")
    return store


def finite_float(text):
    """A JSON number as a float; one beyond a double's range (1e400) is refused: written back it
    would become Infinity, which no JSON parser reads."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("the number %s is out of range" % text[:40])
    return value


def json_type(value):
    """The JSON name of a parsed value's type (object, array, string, number, boolean, null)."""
    for types, name in ((dict, "object"), (list, "array"), (str, "string"), (bool, "boolean")):
        if isinstance(value, types):
            return name
    return "null" if value is None else "number"


def referenced_names(store):
    """(file names, session ids) the store refers to, for telling transcripts from orphans.

    Generous on purpose: a name counts as referenced when any entry's sessionId or sessionFile
    ends in it, even if that value is not safe to open, so nothing referenced is ever archived.
    """
    names, sids = set(), set()
    for entry in store.values():
        if not isinstance(entry, dict):
            continue
        sid = entry.get("sessionId")
        if isinstance(sid, str) and sid:
            names.add(os.path.basename(sid) + ".jsonl")
            sids.add(os.path.basename(sid))
        sfile = entry.get("sessionFile")
        if isinstance(sfile, str) and sfile:
            names.add(os.path.basename(sfile))
    return names, sids


def classify_session_file(name, refs):
    """(kind, session_id, topic) of a file directly in agents/<id>/sessions/.

    `refs` is referenced_names(store), or None when the store is missing or unusable (then no
    transcript is called an orphan).
    """
    if name.endswith(".lock"):
        return "lock", None, None
    if name.endswith(".tmp"):
        return "temp", None, None
    if _ARCHIVE_RE.search(name):
        return "archive", None, None
    if name == STORE_NAME:
        return "store", None, None
    m = _CHECKPOINT_RE.match(name) or _TRAJECTORY_RE.match(name)
    if m:
        # A topic session's side files carry `<sid>-topic-<n>`: group them under the session id.
        sid, topic = m.group("sid"), None
        t = _TOPIC_SID_RE.match(sid)
        if t:
            sid, topic = t.group("sid"), int(t.group("topic"))
        return ("checkpoint" if ".checkpoint." in name else "trajectory"), sid, topic
    if name.endswith(".session.json"):
        return "legacy", None, None
    m = _TOPIC_RE.match(name)
    if m:
        sid = m.group("sid")
        known = refs is None or name in refs[0] or sid in refs[1]
        return ("transcript" if known else "orphan"), sid, int(m.group("topic"))
    if name.endswith(".jsonl"):
        sid = name[:-len(".jsonl")]
        known = refs is None or name in refs[0]
        return ("transcript" if known else "orphan"), sid, None
    return "other", None, None


def _classify(agent_files, rel_in_agent, name, refs):
    parts = rel_in_agent.split(os.sep)
    if len(parts) == 2 and parts[0] == "sessions":
        return classify_session_file(name, refs)
    if len(parts) == 2 and parts[0] == "agent" and name.startswith(SQLITE_NAME):
        return "sqlite", None, None
    if len(parts) == 1 and name.endswith(".session.json"):
        return "legacy", None, None
    return "other", None, None


def _walk(agent_files, folder, refs):
    """Every entry under `folder`, depth first, never following a symlink."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        rel = os.path.relpath(folder, agent_files.state_dir)
        agent_files.problems[rel] = describe_oserror(exc, "listing " + rel)
        agent_files.files.append(FileInfo(agent_files.agent, folder, rel, "other", 0, 0))
        return
    for entry in entries:
        path = entry.path
        rel = os.path.relpath(path, agent_files.state_dir)
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # gone since it was listed: a live gateway's lock or temp file, nothing to do
        except OSError as exc:
            agent_files.problems[rel] = describe_oserror(exc, "stat " + rel)
            agent_files.files.append(FileInfo(agent_files.agent, path, rel, "other", 0, 0))
            continue
        if stat.S_ISLNK(st.st_mode):
            agent_files.problems[rel] = "symlink, not followed"
            agent_files.files.append(FileInfo(agent_files.agent, path, rel, "other", 0, st.st_mtime_ns))
            continue
        if stat.S_ISDIR(st.st_mode):
            if _named_like_a_file(agent_files, path, entry.name):
                agent_files.problems[rel] = "a directory where a session file is expected, left alone"
                agent_files.files.append(FileInfo(agent_files.agent, path, rel, "other", 0, st.st_mtime_ns))
            _walk(agent_files, path, refs)
            continue
        if not stat.S_ISREG(st.st_mode):
            # FIFOs, sockets, devices: never opened (a FIFO would block, /dev/zero never ends).
            agent_files.problems[rel] = "not a regular file (%s), never opened, left alone" % _special_kind(st)
            agent_files.files.append(FileInfo(agent_files.agent, path, rel, "other", 0, st.st_mtime_ns))
            continue
        kind, sid, topic = _classify(agent_files, os.path.relpath(path, agent_files.dir), entry.name, refs)
        agent_files.files.append(FileInfo(agent_files.agent, path, rel, kind, st.st_size, st.st_mtime_ns,
                                          session_id=sid, topic=topic))


def _named_like_a_file(agent_files, path, name):
    """A folder directly in sessions/ (or the agent dir) named like a store, transcript or lock."""
    parent = os.path.dirname(path)
    if parent not in (agent_files.sessions_dir, agent_files.dir):
        return False
    return name.endswith((".jsonl", ".json", ".lock", ".tmp"))


def _special_kind(st):
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(st.st_mode):
            return name
    return "a special file"


def discover_agent(state_dir, agent, agent_dir):
    """Discover one agent (read-only): its store, era and every file by kind."""
    af = AgentFiles(agent, agent_dir, state_dir)
    store_path = os.path.join(af.sessions_dir, STORE_NAME)
    refs = None
    try:
        # lstat of sessions/ first: a sessions folder that is a symlink is never looked through.
        st = os.lstat(store_path) if stat.S_ISDIR(os.lstat(af.sessions_dir).st_mode) else None
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        af.store, af.store_problem = load_store(store_path)
        if af.store_problem is None:
            af.store_usable = True
            refs = referenced_names(af.store)
    _walk(af, agent_dir, refs)
    for info in af.files:
        if info.kind == "store":
            af.store_info = info
    af.era = agent_era(af)
    return af


def agent_era(af):
    """json, sqlite, half-migrated (SQLite database beside un-imported legacy files) or empty."""
    has_sqlite = any(f.kind == "sqlite" and os.path.basename(f.path) == SQLITE_NAME for f in af.files)
    has_json = af.store_info is not None or any(
        f.kind in ("transcript", "orphan") for f in af.files)
    if has_sqlite and has_json:
        return "half-migrated"
    if has_sqlite:
        return "sqlite"
    if has_json:
        return "json"
    return "empty"


def discover(state_dir, wanted=None):
    """Discover the plan's agents; returns [AgentFiles] (refused agents carry `error`).

    With every agent wanted (None), or FLAT_LEGACY_AGENT named, the flat legacy `<state>/sessions/`
    folder's `*.session.json` files come last as that pseudo-agent (discover_flat_legacy).
    """
    out = []
    flat = wanted is None or FLAT_LEGACY_AGENT in wanted
    if wanted is not None:
        wanted = [a for a in wanted if a != FLAT_LEGACY_AGENT]
    for agent, path, error in list_agents(state_dir, wanted):
        if error is not None:
            af = AgentFiles(agent, path, state_dir)
            af.error = error
            out.append(af)
            continue
        try:
            out.append(discover_agent(state_dir, agent, path))
        except Exception as exc:  # one agent's surprise must not hide the others
            af = AgentFiles(agent, path, state_dir)
            af.error = "internal error discovering agent %s: %s: %s" % (agent, type(exc).__name__, exc)
            out.append(af)
    if flat:
        from .legacy_flat import discover_flat_legacy
        legacy = discover_flat_legacy(state_dir)
        if legacy is not None:
            out.append(legacy)
    return out
