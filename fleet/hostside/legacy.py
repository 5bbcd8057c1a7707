"""Legacy `*.session.json` trim: keep the last N records of a single-file session, slim the rest.

`trim_legacy(ctx, agent, info, policy)` returns one file record; policy is the plan's
operations.legacy `{"keep_records": N, "slim": null|"tool-output"|"aggressive"}` and may carry
`tool_output_limit_bytes`, `assistant_text_limit_bytes` and `untouched_turns` (defaults 2048,
4096, 5).

The file is a JSON array of records, or an object holding them under one list key (the only
list value, else the first of "messages", "records", "history", "entries", "turns"); every
other key of the object is kept as it is. Records are the list's items. When the records carry
roles (`{"role":…}` or transcript-style `{"type":"message","message":{"role":…}}`), the kept
part starts at a user record and never keeps a tool result without its tool call, as for
transcripts; records without roles are simply the last N. Kept records before the last
`untouched_turns` user turns are slimmed (see slim.py).

The file is written back pretty-printed like the original (its indent, separators, ASCII
escaping and final newline as far as detectable) by fsutil.safe_rewrite. The whole file is
held in memory: these files are a few MB. A file that is not JSON, or has no record list, is a
FileError (untouched).
"""
import hashlib
import json

from .context import file_record, stats
from .fsutil import FileError, describe_oserror, open_nofollow, safe_rewrite
from .slim import Limits, check_level, slim_line
from .transcript import error_record

LIST_KEYS = ("messages", "records", "history", "entries", "turns")


def find_records(doc):
    """(records list, key or None) of a parsed legacy file; FileError if it has none."""
    if isinstance(doc, list):
        return doc, None
    if isinstance(doc, dict):
        lists = [k for k, v in doc.items() if isinstance(v, list)]
        if len(lists) == 1:
            return doc[lists[0]], lists[0]
        for key in LIST_KEYS:
            if isinstance(doc.get(key), list):
                return doc[key], key
    raise FileError("no list of records found (expected an array, or an object with one list "
                    "such as \"messages\"); left untouched")


def record_role(record):
    if not isinstance(record, dict):
        return None
    message = record.get("message")
    if isinstance(message, dict) and "role" in message:
        return message.get("role")
    return record.get("role")


def _message_of(record):
    message = record.get("message") if isinstance(record, dict) else None
    return message if isinstance(message, dict) else (record if isinstance(record, dict) else {})


def tool_call_ids(record):
    """Ids of the tool calls an assistant record makes (pi `toolCall`, Anthropic `tool_use`, OpenAI `tool_calls`)."""
    message = _message_of(record)
    ids = []
    content = message.get("content")
    if isinstance(content, list):
        ids.extend(b.get("id") for b in content
                   if isinstance(b, dict) and b.get("type") in ("toolCall", "tool_use"))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        ids.extend(c.get("id") for c in calls if isinstance(c, dict))
    return [i for i in ids if i is not None]


def tool_result_id(record):
    message = _message_of(record)
    if message.get("role") in ("toolResult", "tool"):
        value = message.get("toolCallId", message.get("tool_call_id"))
        return value if isinstance(value, str) else None
    return None


def choose_kept(records, keep_records):
    """(start index, note or None): where the kept tail begins. Pure."""
    n = len(records)
    if n <= keep_records:
        return 0, None
    start = n - max(0, keep_records)
    if not any(record_role(r) is not None for r in records):
        return start, None
    users = [i for i in range(start, n) if record_role(records[i]) == "user"]
    while True:
        if not users:
            return 0, "not trimmed: no user turn among the last %d records that keeps tool calls paired" % keep_records
        start = users[0]
        calls = set()
        orphan = None
        for i in range(start, n):
            result_id = tool_result_id(records[i])
            if result_id is not None and result_id not in calls:
                orphan = i
                break
            calls.update(tool_call_ids(records[i]))
        if orphan is None:
            return start, None
        users = [u for u in users if u > orphan]


def slim_records(records, level, limits, untouched_turns):
    """(new records, records slimmed, bytes removed): slim all but the last user turns."""
    if level is None:
        return records, 0, 0
    boundary = len(records)
    if untouched_turns > 0:
        seen = 0
        boundary = 0
        for i in range(len(records) - 1, -1, -1):
            if record_role(records[i]) == "user":
                seen += 1
                if seen == untouched_turns:
                    boundary = i
                    break
    out = list(records)
    count = removed = 0
    for i in range(boundary):
        new, n = slim_line(records[i], level, limits)
        if n:
            out[i] = new
            count += 1
            removed += n
    return out, count, removed


def detect_style(data):
    """json.dumps keyword arguments that reproduce the original's layout."""
    text = data[:65536].decode("utf-8", "replace")
    indent = None
    nl = text.find("\n")
    if 0 <= nl < len(text.rstrip()):
        rest = text[nl + 1:]
        ws = rest[:len(rest) - len(rest.lstrip(" \t"))]
        if ws:
            indent = "\t" if ws.startswith("\t") else len(ws)
    if indent is not None:
        separators = (",", ": ")
    elif '": ' in text or ", " in text:
        separators = (", ", ": ")
    else:
        separators = (",", ":")
    ensure_ascii = not any(b >= 0x80 for b in data[:65536]) and b"\\u" in data
    return {"indent": indent, "separators": separators, "ensure_ascii": ensure_ascii}


def rewrite_legacy(data, keep_records, level, limits, untouched_turns):
    """The new file content for `data`: (bytes or None when unchanged, records before, records
    after, notes, (trimmed, slimmed)). Raises FileError for bad JSON or no record list."""
    try:
        doc = json.loads(data)
    except RecursionError:
        raise FileError("not valid JSON (nested too deeply); left untouched")
    except ValueError as exc:
        raise FileError("not valid JSON (%s); left untouched" % exc)
    records, key = find_records(doc)
    start, note = choose_kept(records, keep_records)
    notes = [note] if note else []
    kept = records[start:]
    kept, slimmed, removed = slim_records(kept, level, limits, untouched_turns)
    if start == 0 and not slimmed:
        return None, len(records), len(records), notes, (False, False)
    if start:
        notes.append("kept %d of %d records" % (len(kept), len(records)))
    if slimmed:
        notes.append("slimmed %d records (%s bytes of payload removed)" % (slimmed, format(removed, ",")))
    if key is None:
        new_doc = kept
    else:
        new_doc = dict(doc)
        new_doc[key] = kept
    style = detect_style(data)
    try:
        text = json.dumps(new_doc, allow_nan=False, **style)
    except ValueError:
        raise FileError("holds a number JSON cannot carry (NaN, Infinity or beyond 1e308): it cannot be "
                        "rewritten exactly; left untouched")
    ending = b"\r\n" if data.endswith(b"\r\n") else (b"\n" if data.endswith(b"\n") else b"")
    if ending == b"\r\n":
        text = text.replace("\n", "\r\n")
    try:
        out = text.encode("utf-8")
    except UnicodeEncodeError:
        style["ensure_ascii"] = True
        out = json.dumps(new_doc, allow_nan=False, **style).encode("ascii")
    return out + ending, len(records), len(kept), notes, (start > 0, slimmed > 0)


def trim_legacy(ctx, agent, info, policy):
    """Trim (and slim) one legacy session file per `policy`; returns its record. Never raises FileError."""
    policy = policy or {}
    try:
        keep_records = int(policy["keep_records"])
        level = check_level(policy.get("slim"))
    except (KeyError, TypeError, ValueError) as exc:
        return error_record(agent, info, "bad legacy policy: %s" % exc, header_lines=0)
    limits = Limits.from_policy(policy)
    untouched = int(policy.get("untouched_turns", 5))

    def compute(data):
        return rewrite_legacy(data, keep_records, level, limits, untouched)

    try:
        with open(open_nofollow(info.path), "rb") as f:
            data = f.read()
        planned = compute(data)
    except OSError as exc:
        return _bad(agent, info, describe_oserror(exc, "reading " + info.rel))
    except FileError as exc:
        return _bad(agent, info, str(exc))
    if planned[0] is None:
        return file_record(agent, info.rel, info.kind, before=stats(len(data), planned[1], _sha(data)),
                           notes=planned[3])
    used = {}

    def produce(src, sink):
        # Computed again from the bytes that were backed up, in case the file changed since.
        got = src.read()
        result = planned if got == data else compute(got)
        if result[0] is None:
            raise FileError("the file changed before its backup and needs no trim any more; left as it is")
        used["result"] = result
        sink.write(result[0])

    try:
        done = safe_rewrite(info.path, info.rel, produce, ctx.backups, ctx.dry_run, carry_appends=False)
    except FileError as exc:
        return _bad(agent, info, str(exc), len(data), planned[1])
    except OSError as exc:
        return _bad(agent, info, describe_oserror(exc, "rewriting " + info.rel), len(data), planned[1])
    _, before_records, after_records, notes, (trimmed, slimmed) = used["result"]
    actions = (["trim"] if trimmed else []) + (["slim"] if slimmed else [])
    return file_record(agent, info.rel, info.kind,
                       before=stats(done["before"]["bytes"], before_records, done["before"]["sha256"]),
                       after=stats(done["after"]["bytes"], after_records, done["after"]["sha256"]),
                       action=actions[0], actions=actions, backup=done["backup"],
                       notes=list(notes) + done["notes"])


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _bad(agent, info, message, size=None, records=0):
    before = stats(info.size if size is None else size, records)
    return file_record(agent, info.rel, info.kind, before=before, error=message)


def legacy_policy(ops, size, pick_tier):
    """The trim policy of a legacy `*.session.json` of `size` bytes, or None to leave it.

    With `legacy.tiers` (the playbook's transcript tiers) a legacy file is trimmed like a
    transcript of its size: the highest matching tier's keep_records and slim, the transcripts'
    slim limits; below the first tier it is left alone. Without tiers: legacy.keep_records and
    legacy.slim for every file (protocol 1's behaviour). `pick_tier(tiers, size)` is the
    orchestrator's, so transcripts and legacy files choose tiers by one rule.
    """
    legacy = ops["legacy"]
    tiers = legacy.get("tiers") or []
    if not tiers:
        return legacy
    tier = pick_tier(tiers, size)
    if tier is None:
        return None
    policy = dict(legacy)
    for key in ("tool_output_limit_bytes", "assistant_text_limit_bytes", "untouched_turns"):
        if key in ops.get("transcripts", {}):
            policy[key] = ops["transcripts"][key]
    policy.update(keep_records=tier["keep_records"], slim=tier.get("slim"))
    return policy
