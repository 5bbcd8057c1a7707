"""Slim levels: make kept transcript lines smaller without changing the conversation's shape.

Pure functions on one parsed line (a dict) that return `(new_line, bytes_removed)`; the input
is never modified (changed containers are copied along the changed path only). Ids, parentIds,
toolCall blocks, toolCallId, roles and usage are never touched.

Levels (the plan's `slim`):

- `None`: nothing.
- `"tool-output"`: a toolResult's text over `tool_output_limit_bytes` becomes its head plus
  `…[fleet: 58,112 bytes of tool output removed]`; its `details` becomes `{}`; every base64
  image block (`{"type":"image","data":…}` or `{"type":"image","source":{"type":"base64",…}}`)
  in a message's content becomes `{"type":"text","text":"[fleet: image removed, 183 KB]"}`.
- `"aggressive"`: all of the above, and in assistant messages: thinking text becomes
  `[fleet: 12,345 bytes of thinking removed]` (its `thinkingSignature` is dropped too: a
  signature no longer matches the text, and a provider would reject it) and text over
  `assistant_text_limit_bytes` becomes its head plus `…[fleet: N bytes of assistant text removed]`.

Which lines get slimmed (all but the last `untouched_turns` user turns) is the caller's
decision. `bytes_removed` counts the UTF-8 bytes of the payload taken out (text, base64 data,
serialized details), not the length of the markers put in.

Lines are transcript lines (`{"type":"message","message":{role, content…}}`); a bare message
(`{"role":…, "content":…}`, as in legacy `*.session.json` files) is slimmed the same way.
"""
import json
import re

# A marker fleet put in earlier: slimming again leaves such text as it is (idempotent).
_MARKER_MAX = 64                 # bytes: longer than any marker fleet writes
_MARKER_RE = re.compile("\u2026\\[fleet: ([0-9,]+) bytes of [a-z ]+ removed\\]$")

LEVELS = (None, "tool-output", "aggressive")
DEFAULT_LIMITS = {"tool_output_limit_bytes": 2048, "assistant_text_limit_bytes": 4096}


class Limits(object):
    """The byte limits of the slim levels (from the plan's operations.transcripts)."""

    __slots__ = ("tool_output", "assistant_text", "quick")

    def __init__(self, tool_output=2048, assistant_text=4096, quick=False):
        self.tool_output = max(0, int(tool_output))
        self.assistant_text = max(0, int(assistant_text))
        # quick: only whether bytes would be removed matters (see would_slim), not the result.
        self.quick = quick

    @classmethod
    def from_policy(cls, policy):
        policy = policy or {}
        return cls(policy.get("tool_output_limit_bytes", DEFAULT_LIMITS["tool_output_limit_bytes"]),
                   policy.get("assistant_text_limit_bytes", DEFAULT_LIMITS["assistant_text_limit_bytes"]))


def check_level(level):
    """Return `level` if it is a known slim level, else raise ValueError naming the choices."""
    if level not in LEVELS:
        raise ValueError("unknown slim level %r (use null, \"tool-output\" or \"aggressive\")" % (level,))
    return level


def slim_line(line, level, limits):
    """Slim one parsed transcript line (or bare message) at `level`; returns (new_line, bytes_removed).

    When nothing changes the very same object is returned with 0.
    """
    if level is None or not isinstance(line, dict):
        return line, 0
    if isinstance(line.get("message"), dict):
        message, removed = slim_message(line["message"], level, limits)
        if not removed:
            return line, 0
        new_line = dict(line)
        new_line["message"] = message
        return new_line, removed
    if "role" in line:
        return slim_message(line, level, limits)
    return line, 0


def would_slim(line, level, limits):
    """True when slim_line(line, level, limits) would remove something; cheaper on big texts."""
    quick = Limits(limits.tool_output, limits.assistant_text, quick=True)
    return slim_line(line, level, quick)[1] > 0


def slim_message(message, level, limits):
    """Slim one message dict (role, content, …); returns (new_message, bytes_removed)."""
    check_level(level)
    if level is None:
        return message, 0
    role = message.get("role")
    removed = 0
    new = None
    content = message.get("content")
    if isinstance(content, list):
        blocks, n = _slim_blocks(content, role, level, limits)
        if n:
            new = dict(message)
            new["content"] = blocks
            removed += n
    elif isinstance(content, str) and role in ("toolResult", "tool"):
        text, n = cut_text(content, limits.tool_output, "tool output", limits.quick)
        if n:
            new = dict(message)
            new["content"] = text
            removed += n
    elif isinstance(content, str) and role == "assistant" and level == "aggressive":
        text, n = cut_text(content, limits.assistant_text, "assistant text", limits.quick)
        if n:
            new = dict(message)
            new["content"] = text
            removed += n
    if role in ("toolResult", "tool") and "details" in message and message["details"] not in ({}, None):
        if new is None:
            new = dict(message)
        removed += 1 if limits.quick else max(1, _json_bytes(message["details"]) - 2)
        new["details"] = {}
    return (new, removed) if new is not None else (message, 0)


def _slim_blocks(blocks, role, level, limits):
    out = None
    removed = 0
    for i, block in enumerate(blocks):
        new_block, n = _slim_block(block, role, level, limits)
        if n:
            if out is None:
                out = list(blocks)
            out[i] = new_block
            removed += n
    return (out, removed) if out is not None else (blocks, 0)


def _slim_block(block, role, level, limits):
    if not isinstance(block, dict):
        return block, 0
    kind = block.get("type")
    if kind == "image":
        size = base64_image_bytes(block)
        if size:
            return {"type": "text", "text": image_placeholder(size)}, size
        return block, 0
    if kind == "text" and isinstance(block.get("text"), str):
        if role in ("toolResult", "tool"):
            text, n = cut_text(block["text"], limits.tool_output, "tool output", limits.quick)
        elif role == "assistant" and level == "aggressive":
            text, n = cut_text(block["text"], limits.assistant_text, "assistant text", limits.quick)
        else:
            return block, 0
        if not n:
            return block, 0
        new_block = dict(block)
        new_block["text"] = text
        return new_block, n
    if kind == "thinking" and role == "assistant" and level == "aggressive":
        thinking = block.get("thinking")
        signature = block.get("thinkingSignature")
        if limits.quick and (isinstance(signature, str) and signature
                             or isinstance(thinking, str) and len(thinking) > _MARKER_MAX):
            return block, 1
        thinking_bytes = _utf8_len(thinking) if isinstance(thinking, str) else 0
        signature_bytes = _utf8_len(signature) if isinstance(signature, str) else 0
        marker = "[fleet: %s bytes of thinking removed]" % format(thinking_bytes, ",")
        already = isinstance(thinking, str) and thinking.startswith("[fleet: ") \
            and thinking.endswith(" bytes of thinking removed]")
        if (already or thinking_bytes <= _utf8_len(marker)) and not signature_bytes:
            return block, 0
        new_block = dict(block)
        new_block["thinking"] = marker
        new_block.pop("thinkingSignature", None)
        new_block.pop("redacted", None)
        return new_block, thinking_bytes + signature_bytes
    return block, 0


def base64_image_bytes(block):
    """Bytes of inline base64 data in an image block, 0 when it has none (e.g. a URL image)."""
    data = block.get("data")
    if isinstance(data, str) and data:
        return len(data)
    source = block.get("source")
    if isinstance(source, dict) and isinstance(source.get("data"), str) and source["data"]:
        if source.get("type", "base64") == "base64":
            return len(source["data"])
    return 0


def image_placeholder(size):
    return "[fleet: image removed, %s KB]" % format(max(1, (size + 512) // 1024), ",")


def cut_text(text, limit, what, quick=False):
    """Cut `text` to at most `limit` UTF-8 bytes (on a character boundary) plus a marker.

    Returns (new_text, bytes_removed); (text, 0) when it is within the limit or cutting would
    not make it shorter. With `quick`, only whether bytes_removed is 0 is exact: a text far
    over the limit returns (text, 1) without being measured.
    """
    # Cheap bounds first: a character is 1 to 4 bytes in UTF-8.
    if len(text) <= limit // 4:
        return text, 0
    earlier = 0
    body = text
    found = _MARKER_RE.search(text, max(0, len(text) - 80)) if text.endswith(" removed]") else None
    if found:
        earlier = int(found.group(1).replace(",", ""))
        body = text[:found.start()]
    if quick and len(body) > limit + _MARKER_MAX:
        # At least len(body) - limit bytes go, more than any marker: no need to measure.
        return text, 1
    if body.isascii():
        # Most tool output: bytes == characters, no need to encode the whole text.
        if len(body) <= limit:
            return text, 0
        head = body[:limit]
        removed = len(body) - limit
    else:
        data = body.encode("utf-8", "surrogatepass")
        if len(data) <= limit:
            return text, 0
        head = data[:limit].decode("utf-8", "ignore")
        removed = len(data) - _utf8_len(head)
    if found:
        removed_total = removed + earlier
        return head + "\u2026[fleet: %s bytes of %s removed]" % (format(removed_total, ","), what), removed
    marker = "\u2026[fleet: %s bytes of %s removed]" % (format(removed, ","), what)
    if removed <= _utf8_len(marker):
        return text, 0
    return head + marker, removed


def _utf8_len(text):
    return len(text.encode("utf-8", "surrogatepass"))


def _json_bytes(value):
    try:
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))
    except (TypeError, ValueError):
        return 0
