"""sessions.json read in pieces (storeread, issue 15): the same store as reading it whole, for
well-formed stores cut at every possible place; None (read whole instead, same errors) for
anything else. A 200 MB store cost 420 MB read whole, 33 MB in pieces (bench/hostile_memory.py)."""
import io
import json
import random

import pytest

from fleet.hostside import storeread
from fleet.hostside.discover import BULKY_FIELDS, _reject_constant, _store_decoder, load_store, loads_store_text


def store_text(seed: int) -> str:
    rng = random.Random(seed)
    store = {}
    for k in range(rng.randint(0, 12)):
        entry = {"sessionId": "s%d" % k, "updatedAt": rng.randint(0, 10 ** 13), "n": rng.random() * 1e6,
                 "flags": [True, False, None], "label": "é\"\\\u2028 %d" % k, "nested": {"a": [1, {"b": "c"}]}}
        if rng.random() < 0.5:
            entry["skillsSnapshot"] = {"prompt": "p" * rng.randint(0, 300)}
        store["agent:main:k%d" % k] = entry
    if store and rng.random() < 0.3:
        store["agent:main:k0"] = {"dup": True}
    indent = rng.choice([None, 2, "\t"])
    text = json.dumps(store, indent=indent, ensure_ascii=rng.random() < 0.5)
    return (" \n" if rng.random() < 0.5 else "") + text + ("\n  " if rng.random() < 0.5 else "")


@pytest.mark.parametrize("seed", range(40))
def test_pieces_give_the_same_store_as_the_whole(seed, monkeypatch):
    text = store_text(seed)
    expected = loads_store_text(text, BULKY_FIELDS)
    for chunk in (1, 3, 17, 4096):
        monkeypatch.setattr(storeread, "CHUNK", chunk)
        got = storeread.stream_store(io.BytesIO(text.encode("utf-8")), _store_decoder(_reject_constant).scan_once,
                                     BULKY_FIELDS)
        assert got == expected and list(got) == list(expected)


@pytest.mark.parametrize("data", [
    b"", b"   ", b"\xef\xbb\xbf{}", b'{"a": {"b": 1}} extra', b'[1, 2]', b'{"a": NaN}', b'{"a": 1e400}',
    b'{"a": {"b": "\xff"}}', b'{"a": {"b": 1}', b'{"a" {"b": 1}}', b'{"a": {"b": 1},}',
])
def test_anything_but_a_plain_object_is_left_to_the_whole_read(data, monkeypatch, tmp_path):
    monkeypatch.setattr(storeread, "CHUNK", 3)
    assert storeread.stream_store(io.BytesIO(data), _store_decoder(_reject_constant).scan_once) is None
    path = tmp_path / "sessions.json"
    path.write_bytes(data)
    store, problem = load_store(str(path))
    assert problem is not None or store == {}
