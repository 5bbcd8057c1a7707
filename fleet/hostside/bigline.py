"""Lines too long to read whole: parse their shape, stream past their big strings.

A transcript or trajectory line over BIG_LINE bytes is almost always one huge string (a tool's
output, a base64 image) inside a small structure. `skim_line` reads such a line in CHUNK pieces
and returns its JSON value with every string over SMALL_STRING bytes replaced by a `BigStr` (an
empty str that knows its encoded size), so ids, types, roles and toolCallIds are at hand while
the big strings never are: memory stays about CHUNK whatever the line's length. The structure is
checked as JSON is (objects, arrays, literals, numbers, string quoting); a big string's content
is not decoded, so a line skimmed is copied byte for byte or parsed whole later (slimming does
that: a line it must change, it must read).

Stdlib only, Python >= 3.8.
"""
import json
import re

BIG_LINE = 4 << 20          # lines up to this are read whole (the fast path of the scans)
SMALL_STRING = 64 << 10     # strings up to this are decoded; longer ones become BigStr
CHUNK = 1 << 20
MAX_DEPTH = 500
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_LITERALS = ((b"true", True), (b"false", False), (b"null", None))
_WS = b" \t\r\n"


class BigStr(str):
    """A string value left unread: `size` is its length in the file (quotes excluded)."""

    size = 0


def has_big(value):
    """True when a skimmed value holds a BigStr anywhere."""
    if isinstance(value, BigStr):
        return True
    if isinstance(value, dict):
        return any(has_big(v) for v in value.values())
    if isinstance(value, list):
        return any(has_big(v) for v in value)
    return False


class _Bad(Exception):
    pass


class _Stream(object):
    """The rest of one line: `head` (its first bytes, already read) then the file, CHUNK by CHUNK.

    `on_bytes(data)` sees every byte of the line exactly once, head included (hashing); bytes
    read past the line's newline are given back to the file (seek) and never seen."""

    def __init__(self, f, head, on_bytes):
        self.f = f
        self.buf = bytes(head)
        self.pos = 0
        self.seen = 0              # buf[:seen] has gone to on_bytes
        self.length = 0            # line bytes dropped from buf so far
        self.on_bytes = on_bytes
        self.eof = False

    def _see(self, upto):
        if self.on_bytes is not None and upto > self.seen:
            self.on_bytes(self.buf[self.seen:upto])
        self.seen = max(self.seen, upto)

    def fill(self):
        """Read more; False at the end of the file. Drops what is consumed (after hashing it)."""
        if self.eof:
            return False
        data = self.f.read(CHUNK)
        if not data:
            self.eof = True
            return False
        self._see(self.pos)
        self.length += self.pos
        self.buf = self.buf[self.pos:] + data
        self.seen -= self.pos
        self.pos = 0
        return True

    def finish(self, end):
        """The line ends at buf[end] (exclusive): hash the rest of it, give back what follows."""
        self._see(end)
        extra = len(self.buf) - end
        if extra:
            self.f.seek(-extra, 1)
        return self.length + end

    def peek(self):
        while self.pos >= len(self.buf):
            if not self.fill():
                return b""
        return self.buf[self.pos:self.pos + 1]

    def skip_ws(self):
        while True:
            c = self.peek()
            if not c or c not in _WS or c == b"\n":
                return c
            self.pos += 1

    def want(self, n):
        """At least n bytes available from pos (fewer only at the end of the file)."""
        while len(self.buf) - self.pos < n and self.fill():
            pass


def _items(s, close, item):
    """After an opening bracket: call `item()` for each element until `close` (b"}" or b"]")."""
    if s.skip_ws() == close:
        s.pos += 1
        return
    while True:
        item()
        c = s.skip_ws()
        s.pos += 1
        if c == close:
            return
        if c != b",":
            raise _Bad("expected ',' or '%s'" % close.decode())


def _value(s, depth):
    if depth > MAX_DEPTH:
        raise _Bad("nested too deeply")
    c = s.skip_ws()
    if c == b"{":
        s.pos += 1
        obj = {}

        def member():
            if s.skip_ws() != b'"':
                raise _Bad("expected a key")
            s.pos += 1
            key = _string(s)
            if s.skip_ws() != b":":
                raise _Bad("expected ':'")
            s.pos += 1
            obj[key] = _value(s, depth + 1)

        _items(s, b"}", member)
        return obj
    if c == b"[":
        s.pos += 1
        arr = []
        _items(s, b"]", lambda: arr.append(_value(s, depth + 1)))
        return arr
    if c == b'"':
        s.pos += 1
        return _string(s)
    s.want(64)
    for word, value in _LITERALS:
        if s.buf.startswith(word, s.pos):
            s.pos += len(word)
            return value
    m = _NUMBER.match(s.buf, s.pos)
    if m and m.end() < len(s.buf):
        s.pos = m.end()
        return json.loads(m.group())
    raise _Bad("not a JSON value")


def _string(s):
    """The string whose opening quote was just consumed; a BigStr when over SMALL_STRING."""
    kept = []
    kept_len = 0
    size = 0
    backslashes = 0           # the run of backslashes right before the search point
    while True:
        if s.pos >= len(s.buf) and not s.fill():
            raise _Bad("unterminated string")
        at = s.buf.find(b'"', s.pos)
        end = len(s.buf) if at < 0 else at
        piece = s.buf[s.pos:end]
        if b"\n" in piece:
            raise _Bad("newline inside a string")
        if piece:
            stripped = piece.rstrip(b"\\")
            run = len(piece) - len(stripped)
            backslashes = run if stripped else backslashes + run
        size += len(piece)
        if kept_len <= SMALL_STRING:
            kept.append(piece)
            kept_len += len(piece)
        s.pos = end
        if at < 0:
            continue
        s.pos = at + 1
        if backslashes % 2:
            size += 1
            if kept_len <= SMALL_STRING:
                kept.append(b'"')
                kept_len += 1
            backslashes = 0
            continue
        if size > SMALL_STRING:
            big = BigStr("")
            big.size = size
            return big
        try:
            return json.loads(b'"' + b"".join(kept) + b'"')
        except ValueError:
            raise _Bad("bad string")


def skim_line(f, head, on_bytes=None):
    """Parse one line's JSON value from `head` (its first bytes, already read from `f`) and the
    rest of the line in `f`; returns (value, or None when the line is not one JSON value; the
    line's length in bytes; whether it ended with a newline). `f` is left at the next line."""
    s = _Stream(f, head, on_bytes)
    try:
        value = _value(s, 0)
        if s.skip_ws() not in (b"\n", b""):
            raise _Bad("extra data")
    except (_Bad, ValueError, RecursionError):
        value = None
    while True:                        # the rest of the line, without keeping it
        at = s.buf.find(b"\n", s.pos)
        if at >= 0:
            return value, s.finish(at + 1), True
        s.pos = len(s.buf)
        if not s.fill():
            return value, s.finish(len(s.buf)), False
