"""Transcript trim: keep the header and a turn-aligned tail of the active path, slim the rest.

`trim_transcript(ctx, agent, info, tier, policy)` returns one file record (see
context.file_record). The rules it keeps (docs/agent-protocol.md, "Transcript trim"):

- the header line stays first, byte for byte; a file whose first line is not a
  `{"type":"session"}` line is refused (FileError, untouched);
- the active path is the chain from the last complete line back via `parentId`; at most the
  last `keep_records` lines of it are kept, and the cut moves forward to the first user
  message (so fewer may remain); it moves further forward while a kept toolResult would lose
  its assistant toolCall;
- every other line is dropped: abandoned branches before the cut and lines of other branches
  after it, so the kept lines are exactly a tail of the active path, without a gap;
- the first kept line's `parentId` becomes null (only that line is re-serialized); other kept
  lines are copied byte for byte unless slimmed; a kept `compaction` whose `firstKeptEntryId`
  names a dropped line is pointed at the first kept line, so OpenClaw's loader still puts the
  summary and every kept message into the context;
- a file with no more than `keep_records` records is not trimmed (it satisfies the tier), and
  neither is a file with no user turn among the last `keep_records` records of its active path
  (trimming would empty the session; a note says so) — both may still be slimmed;
- a crash-truncated last line (no newline, not JSON) is kept verbatim at the end and noted; a
  line that is not JSON anywhere else is a FileError (the file is left untouched);
- lines ending in CRLF keep their ending.

Memory: the first pass keeps about 25 bytes per line in flat arrays (offset, id and parentId as
64-bit keys, a kind byte — ids that are not 8 hex digits also cost a dict entry); lines are
read one at a time. Parents are resolved only along the kept tail. The second pass seeks to the
kept lines and copies them in 1 MB chunks; only re-serialized lines are held whole.
"""
import hashlib
import json
import re
from array import array

from .context import file_record, stats
from .fsutil import CHUNK, FileError, count_lines, describe_oserror, open_nofollow, safe_rewrite
from .bigline import BIG_LINE, has_big, skim_line
from .slim import Limits, check_level, slim_line, would_slim

OTHER, USER, ASSISTANT, TOOL_RESULT, COMPACTION, BLANK = range(6)
MAY_SLIM = 0x80                  # a line of a kind the slim level looks at (decided later, if kept)
KIND_MASK = 0x7F
_ROLE_KINDS = {"user": USER, "assistant": ASSISTANT, "toolResult": TOOL_RESULT}


NO_KEY = (1 << 64) - 1          # parentId null / absent, or a line without an id
_FIRST_OTHER_KEY = 1 << 63       # ids that are not 8 lowercase hex digits get keys from here
_HEX8 = re.compile(r"[0-9a-f]{8}\Z").match
_ID_BYTES = 8
_SEARCH_CHUNK = 1 << 16


class TranscriptScan(object):
    """What the first pass learnt, per line (line 0 = header), in flat arrays.

    offsets has one more entry than there are lines: offsets[i + 1] is where line i ends.
    ids / parent_ids are 64-bit keys of each line's `id` and `parentId` (8-hex ids are their
    own value; other ids are numbered in `other_ids`); kinds holds the line kind and the
    MAY_SLIM flag. About 25 bytes per line. fragment is (offset, length) of an unparseable
    unterminated last line, else None; it is not among the lines.
    """

    __slots__ = ("size", "sha256", "offsets", "ids", "parent_ids", "kinds", "other_ids", "fragment",
                 "unterminated")

    def __init__(self):
        self.size = 0
        self.sha256 = None
        self.offsets = array("q", [0])
        self.ids = array("Q")
        self.parent_ids = array("Q")
        self.kinds = bytearray()
        self.other_ids = {}
        self.fragment = None
        self.unterminated = False

    @property
    def lines(self):
        return len(self.kinds)

    @property
    def records(self):
        return max(0, self.lines - 1) + (1 if self.fragment else 0)

    def key(self, value):
        """The 64-bit key of an id value (NO_KEY for null)."""
        if value is None:
            return NO_KEY
        if type(value) is str and len(value) == 8 and _HEX8(value):
            return int(value, 16)
        try:
            key = self.other_ids.get(value)
        except TypeError:
            return NO_KEY
        if key is None:
            key = self.other_ids[value] = _FIRST_OTHER_KEY + len(self.other_ids)
        return key

    def leaf(self):
        """The last line that is a record (not blank), or 0 when there is none."""
        for i in range(self.lines - 1, 0, -1):
            if self.kinds[i] & KIND_MASK != BLANK:
                return i
        return 0

    def parent(self, i):
        """Index of line i's parent: the last earlier line whose id is its parentId, else -1.

        Almost always the line just before; otherwise (a branch point) the ids are searched
        backwards in chunks at C speed.
        """
        want = self.parent_ids[i]
        if want == NO_KEY or i <= 1:
            return -1
        if self.ids[i - 1] == want:
            return i - 1
        needle = array("Q", [want]).tobytes()
        hi = i - 1
        while hi > 1:
            lo = max(1, hi - _SEARCH_CHUNK)
            chunk = self.ids[lo:hi].tobytes()
            at = chunk.rfind(needle)
            while at >= 0 and at % _ID_BYTES:
                at = chunk.rfind(needle, 0, at + _ID_BYTES - 1)
            if at >= 0:
                return lo + at // _ID_BYTES
            hi = lo
        return -1


def line_kind(obj):
    kind = obj.get("type")
    if kind == "message":
        message = obj.get("message")
        role = message.get("role") if isinstance(message, dict) else None
        return _ROLE_KINDS.get(role, OTHER) if isinstance(role, str) else OTHER
    if kind == "compaction":
        return COMPACTION
    return OTHER


def _may_slim(kind, level, raw):
    """Cheap pre-check before running the slim level on a parsed line."""
    if kind == TOOL_RESULT:
        return True
    if kind == ASSISTANT and level == "aggressive":
        return True
    return kind in (USER, ASSISTANT, TOOL_RESULT) and b'"image"' in raw


def scan_transcript(f, level=None, limits=None):
    """First pass over a binary file object: validate, hash, and index every line.

    Raises FileError for a bad header or a line that is not a JSON object (other than an
    unterminated last one). When `level` is given, lines of a kind the slim level looks at are
    flagged MAY_SLIM; whether the level would really change one is asked only of kept lines
    (plan_trim), so the lines a trim drops are parsed once, here, and never slimmed in vain.
    """
    scan = TranscriptScan()
    digest = hashlib.sha256()
    pos = 0
    lineno = 0
    key = scan.key
    # Bound once: this loop runs for every line of files of millions of lines.
    update, scan_once = digest.update, _scan_once
    add_offset, add_id, add_parent, add_kind = (scan.offsets.append, scan.ids.append,
                                                scan.parent_ids.append, scan.kinds.append)
    ended = True
    while True:
        raw = f.readline(BIG_LINE)
        if not raw:
            break
        if len(raw) == BIG_LINE and not raw.endswith(b"\n"):
            # Too long to read whole: its shape is parsed as it streams past (bigline).
            lineno += 1
            obj, length, ended = skim_line(f, raw, update)
            del raw
            kind, line_id, parent_id = _skimmed_kind(scan, obj, lineno, ended, level)
            if kind is None:
                scan.fragment = (pos, length)
                pos += length
                continue
            pos += length
            add_offset(pos)
            add_id(line_id)
            add_parent(parent_id)
            add_kind(kind)
            continue
        ended = raw.endswith(b"\n")
        update(raw)
        lineno += 1
        # parse_line's first try, inline: one JSON object and the line's end.
        try:
            text = raw.decode("utf-8")
            obj, end = scan_once(text, 0)
            if end != len(text) and text[end:].strip():
                obj = None
        except (ValueError, StopIteration, RecursionError):
            obj = None
        if type(obj) is not dict:
            obj = parse_line(raw)          # its second opinion (json.loads), for the rare rest
            if obj is None and raw.strip():
                if not raw.endswith(b"\n") and lineno > 1:
                    scan.fragment = (pos, len(raw))
                    pos += len(raw)
                    continue
                if lineno == 1:
                    raise FileError("line 1 is not a transcript header (not valid JSON); left untouched")
                raise FileError("line %d is not valid JSON; left untouched" % lineno)
        if lineno == 1:
            if obj is None or obj.get("type") != "session":
                raise FileError("line 1 is not a transcript header ({\"type\":\"session\"}); left untouched")
            kind, line_id, parent_id = OTHER, NO_KEY, NO_KEY
        elif obj is None:
            kind, line_id, parent_id = BLANK, NO_KEY, NO_KEY
        else:
            kind = line_kind(obj)
            line_id = key(obj.get("id"))
            parent_id = key(obj.get("parentId"))
            if level is not None and _may_slim(kind, level, raw):
                kind |= MAY_SLIM
        pos += len(raw)
        add_offset(pos)
        add_id(line_id)
        add_parent(parent_id)
        add_kind(kind)
    # Only the last line can lack its newline (iteration splits after each one).
    scan.unterminated = bool(scan.lines) and not ended and scan.fragment is None
    if scan.lines == 0:
        raise FileError("empty file, not a transcript; left untouched")
    scan.size = pos
    scan.sha256 = digest.hexdigest()
    return scan


_scan_once = json.JSONDecoder().scan_once


def _skimmed_kind(scan, obj, lineno, ended, level):
    """(kind, id key, parentId key) of a line too long to read whole (obj: its skimmed value), or
    (None, None, None) for a crash-truncated last line; FileError as for any bad line. A skimmed
    message of a kind a slim level looks at is flagged MAY_SLIM (its big strings are unread)."""
    if type(obj) is not dict:
        if not ended and lineno > 1:
            return None, None, None
        if lineno == 1:
            raise FileError("line 1 is not a transcript header (not valid JSON); left untouched")
        raise FileError("line %d is not valid JSON; left untouched" % lineno)
    if lineno == 1:
        if obj.get("type") != "session":
            raise FileError("line 1 is not a transcript header ({\"type\":\"session\"}); left untouched")
        return OTHER, NO_KEY, NO_KEY
    kind = line_kind(obj)
    if level is not None and kind in (USER, ASSISTANT, TOOL_RESULT):
        kind |= MAY_SLIM
    return kind, scan.key(obj.get("id")), scan.key(obj.get("parentId"))


def fetch_line(f, scan, i):
    """Line i parsed (skimmed when it is too long to read whole: see bigline), or None."""
    start, end = scan.offsets[i], scan.offsets[i + 1]
    if end - start <= BIG_LINE:
        return parse_line(read_line(f, scan, i))
    f.seek(start)
    obj = skim_line(f, f.read(min(CHUNK, end - start)))[0]
    return obj if isinstance(obj, dict) else None


def parse_line(raw):
    """The line as a dict, or None when it is blank, not JSON or not an object.

    The C scanner is called directly (json.loads adds encoding detection and a regex per
    call, which dominates on files of many short lines); anything it does not accept gets a
    second opinion from json.loads.
    """
    try:
        text = raw.decode("utf-8")
        obj, end = _scan_once(text, 0)
        if end != len(text) and text[end:].strip():
            raise ValueError("extra data")
    except (ValueError, StopIteration, RecursionError):
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            return None
    return obj if isinstance(obj, dict) else None


def read_line(f, scan, i):
    f.seek(scan.offsets[i])
    return f.read(scan.offsets[i + 1] - scan.offsets[i])


class TrimPlan(object):
    """Which lines to keep (in file order) and which of them to re-serialize, and why."""

    def __init__(self):
        self.kept = []
        self.trimmed = False
        self.null_parent = None
        self.compaction_fix = {}
        self.slim = set()
        self.notes = []

    @property
    def changes(self):
        return bool(self.trimmed or self.slim)

    @property
    def actions(self):
        return (["trim"] if self.trimmed else []) + (["slim"] if self.slim else [])


def plan_trim(scan, keep_records, untouched_turns, fetch, level=None, limits=None):
    """Decide what to keep and what to slim; `fetch(i)` returns line i parsed.

    fetch is called only for the last records of the active path and for kept MAY_SLIM lines
    before the untouched turns (whether `level` would change them).

    Pure apart from `fetch`; see the module docstring for the rules.
    """
    plan = TrimPlan()
    keep_records = max(0, int(keep_records))
    everything = list(range(1, scan.lines))
    kept = None
    if scan.records > keep_records:
        kept, why = _turn_aligned_tail(scan, keep_records, fetch, plan)
        if kept is None:
            plan.notes.append("not trimmed: %s" % why)
    if kept is None:
        plan.kept = everything
    else:
        plan.kept = kept
        plan.trimmed = True
        after_cut = sum(1 for i in range(kept[0], scan.lines) if scan.kinds[i] & KIND_MASK != BLANK)
        plan.notes.append("kept %d of %d records (the tail of the active path from a user turn)"
                          % (len(kept), scan.records))
        if after_cut > len(kept):
            plan.notes.append("dropped %d lines of other branches after the cut" % (after_cut - len(kept)))
    _plan_slim(scan, plan, untouched_turns, fetch, level, limits)
    if scan.fragment:
        plan.notes.append("last line is truncated (crash or a write in progress): kept verbatim at the end")
    elif scan.unterminated:
        plan.notes.append("last line has no newline (a write in progress?): kept as it was")
    return plan


def _turn_aligned_tail(scan, keep_records, fetch, plan):
    """The kept line indexes, or (None, reason) when no valid cut exists."""
    tail = []
    i = scan.leaf()
    while i > 0 and len(tail) < keep_records:
        tail.append(i)
        i = scan.parent(i)
    tail.reverse()
    users = [p for p, line in enumerate(tail) if scan.kinds[line] & KIND_MASK == USER]
    if not users:
        return None, "no user turn among the last %d records of the active path" % keep_records
    start = users[0]
    facts = [_line_facts(fetch(line)) for line in tail[start:]]
    while True:
        calls = set()
        orphan = None
        for p in range(start, len(tail)):
            call_ids, result_id = facts[p - users[0]][:2]
            if result_id is not None and result_id not in calls:
                orphan = p
                break
            calls.update(call_ids)
        if orphan is None:
            break
        later = [u for u in users if u > orphan]
        if not later:
            return None, ("no user turn after the last toolResult whose toolCall precedes the "
                          "last %d records" % keep_records)
        start = later[0]
    kept = tail[start:]
    kept_facts = facts[start - users[0]:]
    if kept_facts[0][3] is not None:
        plan.null_parent = kept[0]
    kept_ids = set(f[2] for f in kept_facts if f[2] is not None)
    first_id = kept_facts[0][2]
    for line, fact in zip(kept, kept_facts):
        target = fact[4]
        if target is not None and target not in kept_ids and first_id is not None:
            plan.compaction_fix[line] = first_id
            plan.notes.append("compaction %s: firstKeptEntryId pointed before the cut; now the "
                              "first kept line" % fact[2])
    return kept, None


def _line_facts(obj):
    """(toolCall ids, toolResult's toolCallId, id, parentId, compaction's firstKeptEntryId)."""
    obj = obj or {}
    call_ids = ()
    result_id = None
    message = obj.get("message") if obj.get("type") == "message" else None
    if isinstance(message, dict):
        role = message.get("role")
        if role == "assistant" and isinstance(message.get("content"), list):
            call_ids = tuple(_id_or_none(b.get("id")) for b in message["content"]
                             if isinstance(b, dict) and b.get("type") == "toolCall")
        elif role == "toolResult" and isinstance(message.get("toolCallId"), str):
            result_id = message["toolCallId"]
    first_kept = obj.get("firstKeptEntryId") if obj.get("type") == "compaction" else None
    return call_ids, result_id, _id_or_none(obj.get("id")), _id_or_none(obj.get("parentId")), _id_or_none(first_kept)


def _id_or_none(value):
    """An id usable as a set member (hostile files put lists and objects where ids go)."""
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _plan_slim(scan, plan, untouched_turns, fetch, level, limits):
    """Slim kept lines before the last `untouched_turns` user turns (none if there are fewer)."""
    if level is None:
        return
    untouched_turns = max(0, int(untouched_turns))
    boundary = len(plan.kept)
    if untouched_turns:
        seen = 0
        boundary = 0
        for p in range(len(plan.kept) - 1, -1, -1):
            if scan.kinds[plan.kept[p]] & KIND_MASK == USER:
                seen += 1
                if seen == untouched_turns:
                    boundary = p
                    break
    plan.slim = set(i for i in plan.kept[:boundary]
                    if scan.kinds[i] & MAY_SLIM and _would_slim(fetch(i), level, limits))


def _would_slim(obj, level, limits):
    """would_slim, and True for a skimmed line with unread big strings (slim limits are KBs)."""
    return would_slim(obj, level, limits) or has_big(obj)


def write_trimmed(src, sink, scan, plan, level, limits):
    """Second pass: header, kept lines (copied or re-serialized), then the truncated fragment.

    Returns the bytes removed by slimming.
    """
    copy_range(src, sink, 0, scan.offsets[1])
    slimmed_away = 0
    for i in plan.kept:
        if i != plan.null_parent and i not in plan.slim and i not in plan.compaction_fix:
            copy_range(src, sink, scan.offsets[i], scan.offsets[i + 1])
            continue
        raw = read_line(src, scan, i)
        ending = b"\r\n" if raw.endswith(b"\r\n") else (b"\n" if raw.endswith(b"\n") else b"")
        old_len = len(raw)
        obj = json.loads(raw)
        del raw
        if i in plan.slim:
            obj = slim_line(obj, level, limits)[0]
        if i == plan.null_parent:
            obj = dict(obj)
            obj["parentId"] = None
        if i in plan.compaction_fix:
            obj = dict(obj)
            obj["firstKeptEntryId"] = plan.compaction_fix[i]
        data = dump_line(obj) + ending
        if i in plan.slim:
            slimmed_away += max(0, old_len - len(data))
        sink.write(data)
    if scan.fragment:
        copy_range(src, sink, scan.fragment[0], scan.fragment[0] + scan.fragment[1])
    return slimmed_away


def dump_line(obj):
    """Compact JSON as OpenClaw writes it (JSON.stringify): UTF-8, no spaces."""
    try:
        try:
            return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except UnicodeEncodeError:
            # Lone surrogates cannot be UTF-8; escaped they stay valid JSON.
            return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")
    except ValueError:
        # NaN, or a number beyond a double (1e400 parses as inf): Python would write NaN/Infinity,
        # which JSON.parse rejects, so OpenClaw would drop the whole transcript.
        raise FileError("a line to rewrite holds a number JSON cannot carry (NaN, Infinity or beyond "
                        "1e308); left untouched")


def copy_range(src, sink, start, end):
    src.seek(start)
    left = end - start
    while left > 0:
        data = src.read(min(CHUNK, left))
        if not data:
            raise FileError("file shrank while it was read; left untouched")
        sink.write(data)
        left -= len(data)


class BackupWitness(object):
    """Passes a planned rewrite's backup to the run's BackupStore and remembers what it holds.

    The backup is of exactly the bytes `scan` was made on (BackupStore's `expect`) when the file
    still starts with them; produce() then asks changed_since_scan(src) whether it must plan
    again on what was backed up, without reading the file once more.
    """

    def __init__(self, store, scan):
        self.store = store
        self.scan = scan
        self.last = None

    def backup(self, abs_path, rel_path):
        self.last = self.store.backup(abs_path, rel_path, expect=(self.scan.size, self.scan.sha256))
        return self.last

    def discard(self, backup):
        """The change did not happen: the store takes its backup back (fsutil.abandon_backup)."""
        self.store.discard(backup)
        if self.last is backup:
            self.last = None

    def changed_since_scan(self, src):
        """True when the backed-up bytes (src, a LimitedReader over them) are not the scanned ones."""
        last = self.last
        return (src.limit != self.scan.size or last is None or last["bytes"] != self.scan.size
                or last["sha256"] != self.scan.sha256)


def rewrite_planned(ctx, agent, info, scan, produce, witness):
    """safe_rewrite (appends carried) of a file planned on `scan`: (result, None), or (None, the
    error record of a file left untouched)."""
    try:
        return safe_rewrite(info.path, info.rel, produce, witness, ctx.dry_run, carry_appends=True), None
    except FileError as exc:
        return None, error_record(agent, info, str(exc), scan)
    except OSError as exc:
        return None, error_record(agent, info, describe_oserror(exc, "rewriting " + info.rel), scan)


def trim_transcript(ctx, agent, info, tier, policy):
    """Trim (and slim) one transcript per `tier`; returns its file record. Never raises FileError."""
    policy = policy or {}
    try:
        level = check_level(tier.get("slim"))
        keep_records = int(tier["keep_records"])
    except (KeyError, TypeError, ValueError) as exc:
        return error_record(agent, info, "bad transcript tier: %s" % exc)
    limits = Limits.from_policy(policy)
    untouched = int(policy.get("untouched_turns", 5))

    def analyse(f, made_ahead=None):
        scan = made_ahead or scan_transcript(f, level, limits)
        plan = plan_trim(scan, keep_records, untouched,
                         lambda i: fetch_line(f, scan, i), level, limits)
        return scan, plan

    prescans = getattr(ctx, "prescans", None)
    try:
        with open(open_nofollow(info.path), "rb") as f:
            scan, plan = analyse(f, prescans.take(info.path, f) if prescans is not None else None)
    except OSError as exc:
        return error_record(agent, info, describe_oserror(exc, "reading " + info.rel))
    except FileError as exc:
        return error_record(agent, info, str(exc))
    if not plan.changes:
        return file_record(agent, info.rel, info.kind, before=stats(scan.size, scan.records, scan.sha256),
                           notes=plan.notes)

    used = {}
    witness = BackupWitness(ctx.backups, scan)

    def produce(src, sink):
        use_scan, use_plan = scan, plan
        if witness.changed_since_scan(src):
            # The file changed between our first look and its backup: decide again on the
            # bytes that were backed up.
            src.seek(0)
            use_scan, use_plan = analyse(src)
            use_plan.notes.append("the file changed before its backup; the trim was planned again")
        used.update(scan=use_scan, plan=use_plan, sink=sink)
        used["slimmed"] = write_trimmed(src, sink, use_scan, use_plan, level, limits)

    result, failed = rewrite_planned(ctx, agent, info, scan, produce, witness)
    if failed:
        return failed
    use_scan, use_plan, sink = used["scan"], used["plan"], used["sink"]
    notes = list(use_plan.notes)
    if use_plan.slim:
        notes.append("slimmed %d lines (%s bytes less)" % (len(use_plan.slim), format(used["slimmed"], ",")))
    notes.extend(result["notes"])
    actions = use_plan.actions
    return file_record(agent, info.rel, info.kind,
                       before=stats(result["before"]["bytes"], use_scan.records, result["before"]["sha256"]),
                       after=stats(result["after"]["bytes"], max(0, sink.lines - 1), result["after"]["sha256"]),
                       action=actions[0] if actions else "none", actions=actions,
                       backup=result["backup"], notes=notes)


def error_record(agent, info, message, scan=None, header_lines=1):
    """The record of a file left untouched because of `message`."""
    if scan is not None:
        before = stats(scan.size, scan.records, scan.sha256)
    else:
        try:
            before = stats(info.size, max(0, count_lines(info.path) - header_lines))
        except OSError:
            before = stats(info.size or 0, 0)
    return file_record(agent, info.rel, info.kind, before=before, error=message)
