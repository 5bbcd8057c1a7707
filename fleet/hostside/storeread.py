"""Read a sessions.json from the file in pieces, one entry at a time, never the whole file.

`stream_store(f, scan_once, drop)` returns the store (a dict, the fields in `drop` let go as each
entry is parsed, as discover.loads_store_text does) reading `f` CHUNK by CHUNK: memory is about
CHUNK plus the largest entry, not twice the file. It takes only the common case, a well-formed
UTF-8 JSON object; on anything else (a BOM, bad UTF-8, bad JSON, another top-level type, an empty
file) it returns None and the caller reads the file whole as before, so results and error
messages are exactly those of json.loads.

Stdlib only, Python >= 3.8.
"""
import codecs
from json.decoder import WHITESPACE, scanstring

CHUNK = 4 << 20
_WS = WHITESPACE.match


class _Window(object):
    """The decoded text not yet consumed; `more()` reads on (more each time an entry needs it)."""

    def __init__(self, f):
        self.f = f
        self.text = ""
        self.eof = False
        self._decode = codecs.getincrementaldecoder("utf-8")().decode

    def more(self, at_least):
        """Read at least `at_least` more bytes (or to the end); False when already at the end."""
        if self.eof:
            return False
        data = self.f.read(max(CHUNK, at_least))
        if not data:
            self.eof = True
            self.text += self._decode(b"", True)
        else:
            self.text += self._decode(data)
        return True

    def drop(self, i):
        """Forget text[:i] (once it is most of the window: copying is then cheap per entry)."""
        if i > len(self.text) // 2:
            self.text = self.text[i:]
            return 0
        return i


def stream_store(f, scan_once, drop=(), keep_keys=False):
    """The store in `f` (see the module), or None when the caller must read it whole."""
    w = _Window(f)
    try:
        i = 0
        while i == len(w.text) and w.more(0):
            i = _WS(w.text, i).end()
        if w.text[i:i + 1] != "{":
            return None
        i = _WS(w.text, i + 1).end()
        store = {}
        while not w.text[i:i + 1] and w.more(0):
            i = _WS(w.text, i).end()
        if w.text[i:i + 1] == "}":
            i += 1
        else:
            while True:
                parsed = _entry(w, i, scan_once)
                if parsed is None:
                    return None
                key, value, i, sep = parsed
                if drop:
                    drop_fields((value,), drop, keep_keys)
                store[key] = value          # a repeated key: last value, first place (as json.loads)
                i = w.drop(i)
                if sep == "}":
                    break
        while True:                         # only white space may follow
            if _WS(w.text, i).end() != len(w.text):
                return None
            w.text, i = "", 0
            if not w.more(0):
                return store
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def read_member(text, i, scan_once):
    """One `"key": value` of a JSON object at `i` and the ',' or '}' after it: (key, value, index
    after the separator and its white space, separator). Raises ValueError (or json's
    StopIteration/IndexError) on anything else."""
    i = _WS(text, i).end()
    if text[i] != '"':
        raise ValueError("expected a key")
    key, i = scanstring(text, i + 1, True)
    i = _WS(text, i).end()
    if text[i] != ":":
        raise ValueError("expected ':'")
    value, i = scan_once(text, _WS(text, i + 1).end())
    i = _WS(text, i).end()
    sep = text[i]
    if sep not in ",}":
        raise ValueError("expected ',' or '}'")
    return key, value, _WS(text, i + 1).end(), sep


def _entry(w, start, scan_once):
    """(key, value, index after its ',' or '}', that separator) of the entry at `start`, reading
    more while the window ends inside it; None when it is not well-formed (or the file ends)."""
    want = 0
    while True:
        try:
            # The window may have ended inside the white space or the entry.
            return read_member(w.text, start, scan_once)
        except (ValueError, StopIteration, IndexError, RecursionError):
            # Cut off by the window's end, or really malformed: read on; at the file's end, give up.
            want = max(CHUNK, 2 * want, len(w.text) - start)
            if not w.more(want):
                return None


def drop_fields(entries, drop, keep_keys):
    """Drop (or, with keep_keys, null) the `drop` fields of each entry object, in place."""
    for entry in entries:
        if isinstance(entry, dict):
            for name in drop:
                if name in entry:
                    if keep_keys:
                        entry[name] = None
                    else:
                        del entry[name]
