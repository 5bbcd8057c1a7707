"""Legacy `*.session.json` trim on real files: array and object forms, layout kept, bad JSON refused."""
import hashlib
import json
import os

import pytest

from fleet.hostside import fsutil
from fleet.hostside.context import FileInfo, RunContext
from fleet.hostside.legacy import trim_legacy

NOW_MS = 1763700000000


def conversation(turns, result_size=3000):
    records = []
    for t in range(turns):
        records.append({"role": "user", "content": "question %d" % t})
        records.append({"role": "assistant", "content": [
            {"type": "text", "text": "let me look"},
            {"type": "toolCall", "id": "call_%d" % t, "name": "exec", "arguments": {"command": "ls"}}]})
        records.append({"role": "toolResult", "toolCallId": "call_%d" % t, "toolName": "exec",
                        "content": [{"type": "text", "text": "r" * result_size}], "details": {"exitCode": 0}})
        records.append({"role": "assistant", "content": [{"type": "text", "text": "answer %d" % t}]})
    return records


def put(tmp_path, data, name="main.session.json"):
    path = tmp_path / "agents" / "main" / "sessions" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def trim(tmp_path, path, policy, dry_run=False):
    ctx = RunContext(str(tmp_path), "run1", NOW_MS, dry_run,
                     fsutil.BackupStore(str(tmp_path / ("backups-dry" if dry_run else "backups")), dry_run=dry_run), {})
    st = os.stat(str(path))
    info = FileInfo("main", str(path), os.path.relpath(str(path), str(tmp_path)), "legacy", st.st_size, st.st_mtime_ns)
    return trim_legacy(ctx, "main", info, policy)


def test_array_form_keeps_the_last_records_from_a_user_turn(tmp_path):
    records = conversation(30)
    original = json.dumps(records, indent=2).encode() + b"\n"
    path = put(tmp_path, original)
    record = trim(tmp_path, path, {"keep_records": 10, "slim": None})
    out = path.read_bytes()
    kept = json.loads(out)
    # The last 10 start mid-turn (records[-10] is a toolResult): the cut moves to the next user.
    assert records[-10]["role"] != "user"
    first_user = next(i for i in range(len(records) - 10, len(records)) if records[i]["role"] == "user")
    assert kept == records[first_user:]
    assert out == json.dumps(kept, indent=2).encode() + b"\n"          # same layout as the original
    assert record["action"] == "trim" and record["actions"] == ["trim"]
    assert record["before"] == {"bytes": len(original), "records": 120,
                                "sha256": hashlib.sha256(original).hexdigest()}
    assert record["after"] == {"bytes": len(out), "records": len(kept),
                               "sha256": hashlib.sha256(out).hexdigest()}
    assert open(record["backup"], "rb").read() == original


def test_object_form_keeps_other_keys_and_slims(tmp_path):
    doc = {"sessionId": "main", "version": 2, "messages": conversation(12), "meta": {"channel": "telegram"}}
    original = json.dumps(doc, indent=4, ensure_ascii=False).encode()
    path = put(tmp_path, original)
    policy = {"keep_records": 20, "slim": "tool-output", "tool_output_limit_bytes": 100, "untouched_turns": 2}
    record = trim(tmp_path, path, policy)
    out = path.read_bytes()
    new = json.loads(out)
    assert {k: v for k, v in new.items() if k != "messages"} == {k: v for k, v in doc.items() if k != "messages"}
    assert out.startswith(b'{\n    "sessionId"') and not out.endswith(b"\n")
    kept = new["messages"]
    assert len(kept) == 20 and kept[0] == {"role": "user", "content": "question 7"}
    results = [r for r in kept if r["role"] == "toolResult"]
    assert [len(r["content"][0]["text"]) for r in results[-2:]] == [3000, 3000]      # last 2 turns untouched
    for r in results[:-2]:
        assert r["content"][0]["text"].startswith("r" * 100) and "bytes of tool output removed" in r["content"][0]["text"]
        assert r["details"] == {}
    assert record["actions"] == ["trim", "slim"]


def test_transcript_style_records_and_dry_run_match_real_run(tmp_path):
    records = [{"type": "message", "id": "%08x" % i, "message": r} for i, r in enumerate(conversation(8))]
    original = json.dumps({"records": records}).encode()
    path = put(tmp_path, original)
    policy = {"keep_records": 9, "slim": "aggressive"}
    dry = trim(tmp_path, path, policy, dry_run=True)
    assert path.read_bytes() == original and dry["backup"] is None
    real = trim(tmp_path, path, policy)
    assert (dry["after"], dry["actions"]) == (real["after"], real["actions"])
    kept = json.loads(path.read_bytes())["records"]
    assert kept[0]["message"]["role"] == "user" and len(kept) == 8
    assert b'"records": [' in path.read_bytes()                      # compact one-line style kept


def test_small_clean_file_is_left_alone(tmp_path):
    original = json.dumps(conversation(2, result_size=10), indent=2).encode()
    path = put(tmp_path, original)
    record = trim(tmp_path, path, {"keep_records": 200, "slim": "tool-output"})
    assert record["action"] == "none" and record["backup"] is None and record["error"] is None
    assert path.read_bytes() == original and not (tmp_path / "backups").exists()


@pytest.mark.parametrize("data", [b'[{"role": "user", "content": "hi"},', b'{"a": 1, "b": 2}', b""])
def test_bad_files_are_errors_and_untouched(tmp_path, data):
    path = put(tmp_path, data)
    record = trim(tmp_path, path, {"keep_records": 1, "slim": None})
    assert record["error"] and record["action"] == "none"
    assert path.read_bytes() == data and not (tmp_path / "backups").exists()
