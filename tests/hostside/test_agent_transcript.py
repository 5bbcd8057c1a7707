"""Transcript trim on real files: the kept lines are the independently computed tail of the
active path, the rules OpenClaw needs hold, nothing is lost (backups, appends, bad input)."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from fleet.hostside import fsutil
from fleet.hostside.context import FileInfo, RunContext
from fleet.hostside.transcript import plan_trim, read_line, scan_transcript, trim_transcript, write_trimmed

NOW_MS = 1763700000000
HEADER = {"type": "session", "version": 3, "id": "0f5d59ee-034e-47d9-ac97-d383e6c022b8",
          "timestamp": "2026-11-14T08:00:00.000Z", "cwd": "/home/u/.openclaw/workspace"}
POLICY = {"tool_output_limit_bytes": 200, "assistant_text_limit_bytes": 300, "untouched_turns": 2}


class Chat(object):
    """Builds a transcript line by line; `parent` is the line the next one hangs from."""

    def __init__(self):
        self.lines = [HEADER]
        self.parent = None
        self.calls = 0

    def add(self, kind, parent="active", **fields):
        line_id = "%08x" % (0x1000 + len(self.lines))
        line = {"type": kind, "id": line_id,
                "parentId": self.parent if parent == "active" else parent,
                "timestamp": "2026-11-14T08:%02d:00.000Z" % (len(self.lines) % 60)}
        line.update(fields)
        self.lines.append(line)
        self.parent = line_id
        return line_id

    def user(self, text="hello"):
        return self.add("message", message={"role": "user", "content": [{"type": "text", "text": text}]})

    def assistant(self, calls=0, text="ok", thinking=None):
        content = []
        if thinking:
            content.append({"type": "thinking", "thinking": thinking, "thinkingSignature": "sig" * 10})
        content.append({"type": "text", "text": text})
        ids = []
        for _ in range(calls):
            self.calls += 1
            ids.append("toolu_%02d" % self.calls)
            content.append({"type": "toolCall", "id": ids[-1], "name": "exec", "arguments": {"command": "ls"}})
        self.add("message", message={"role": "assistant", "content": content,
                                     "usage": {"input": 10, "output": 5, "totalTokens": 15},
                                     "stopReason": "toolUse" if calls else "stop"})
        return ids

    def result(self, call_id, size=50):
        return self.add("message", message={"role": "toolResult", "toolCallId": call_id, "toolName": "exec",
                                            "content": [{"type": "text", "text": "r" * size}],
                                            "details": {"exitCode": 0, "aggregated": "d" * size},
                                            "isError": False})

    def turn(self, calls=1, size=50):
        self.user("question %d" % len(self.lines))
        for call_id in self.assistant(calls=calls):
            self.result(call_id, size)
        self.assistant(text="answer %d" % len(self.lines))

    def encode(self):
        return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in self.lines)


def branchy_chat():
    """Turns, an abandoned branch, parallel tool calls, a user line between a toolCall and its
    toolResult (steering), a compaction, custom lines — 40-odd records."""
    c = Chat()
    c.add("model_change", provider="anthropic", modelId="claude-sonnet-4-5")
    c.turn()
    c.turn(calls=2)
    fork = c.user("please check the disk")
    for call_id in c.assistant(calls=1):
        c.result(call_id)
    c.assistant(text="abandoned answer")
    c.parent = fork                                  # regenerated: the path resumes at the user turn
    c.add("branch_summary", fromId=c.lines[-1]["id"], summary="tried once")
    for call_id in c.assistant(calls=1):
        c.result(call_id, 400)
    c.assistant(text="final")
    c.add("custom", customType="model-snapshot", data={})
    calls = c.assistant(calls=1)                     # a steering message lands before the result
    c.user("also look at /var")
    c.result(calls[0])
    c.assistant(text="done")
    c.turn(calls=1)
    first_kept = c.lines[-4]["id"]                   # a turn's user message, as OpenClaw points to
    c.turn(calls=3, size=300)
    c.add("compaction", summary="summary", firstKeptEntryId=first_kept, tokensBefore=180000)
    c.turn()
    c.turn(calls=0)
    c.turn(calls=2, size=500)
    return c


def reference_path(lines):
    """Every line from the root to the last line, following parentId."""
    by_id = {line["id"]: line for line in lines[1:]}
    path = []
    line = lines[-1]
    while line is not None:
        path.insert(0, line)
        line = by_id.get(line.get("parentId"))
    return path


def reference_tail(lines, keep):
    """The obvious way: walk the whole path from the last line, take the last `keep`, then drop
    from the front until it starts at a user message and no toolResult lacks its toolCall."""
    path = reference_path(lines)
    kept = path[-keep:] if keep else []

    def is_user(line):
        return line["type"] == "message" and line["message"]["role"] == "user"

    def has_orphan(part):
        calls = set()
        for line in part:
            message = line.get("message") or {}
            if message.get("role") == "toolResult" and message["toolCallId"] not in calls:
                return True
            for block in message.get("content") or []:
                if isinstance(block, dict) and block.get("type") == "toolCall":
                    calls.add(block["id"])
        return False

    while kept and (not is_user(kept[0]) or has_orphan(kept)):
        kept.pop(0)
    return kept


def make_ctx(tmp_path, dry_run=False, name="backups"):
    return RunContext(str(tmp_path), "run1", NOW_MS, dry_run, fsutil.BackupStore(str(tmp_path / name), dry_run=dry_run), {})


def write(tmp_path, data, name="0f5d59ee.jsonl"):
    path = tmp_path / "agents" / "main" / "sessions" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def info_for(tmp_path, path):
    st = os.stat(str(path))
    return FileInfo("main", str(path), os.path.relpath(str(path), str(tmp_path)), "transcript",
                    st.st_size, st.st_mtime_ns)


def trim(tmp_path, path, keep, slim=None, dry_run=False, policy=POLICY):
    ctx = make_ctx(tmp_path, dry_run, "backups-dry" if dry_run else "backups")
    return trim_transcript(ctx, "main", info_for(tmp_path, path), {"over_bytes": 0, "keep_records": keep, "slim": slim},
                           policy)


def parsed_lines(data):
    return [json.loads(line) for line in data.splitlines()]


def assert_openclaw_rules(lines):
    """The rules any trim must keep (spec: 'Rules any trim must keep')."""
    assert lines[0]["type"] == "session"
    kept = lines[1:]
    if not kept:
        return
    assert kept[0]["parentId"] is None
    seen = set()
    calls = set()
    for line in kept:
        if line is not kept[0]:
            assert line["parentId"] in seen, "gap: %s names a line that was not kept" % line["id"]
        seen.add(line["id"])
        message = line.get("message") or {}
        if message.get("role") == "toolResult":
            assert message["toolCallId"] in calls, "toolResult %s kept without its toolCall" % line["id"]
        for block in message.get("content") or []:
            if isinstance(block, dict) and block.get("type") == "toolCall":
                calls.add(block["id"])
    messages = [line for line in kept if line["type"] == "message"]
    assert messages[0]["message"]["role"] == "user"


ALL_KEEPS = list(range(0, 50))


@pytest.mark.parametrize("keep", ALL_KEEPS)
def test_kept_lines_are_the_reference_tail_for_every_cut(tmp_path, keep):
    chat = branchy_chat()
    original = chat.encode()
    path = write(tmp_path, original)
    record = trim(tmp_path, path, keep)
    assert record["error"] is None
    expected = reference_tail(chat.lines, keep)
    out = path.read_bytes()
    if len(chat.lines) - 1 <= keep:
        assert record["action"] == "none" and out == original
        return
    if not expected:
        # No valid cut: the file is left whole rather than emptied.
        assert record["action"] == "none" and out == original
        assert any("no user turn" in note for note in record["notes"])
        return
    got = parsed_lines(out)
    assert got[0] == HEADER
    assert [line["id"] for line in got[1:]] == [line["id"] for line in expected]
    # Byte for byte, except the first kept line (parentId null) and a repointed compaction.
    raw = out.splitlines(True)
    source = {json.loads(line)["id"]: line for line in original.splitlines(True)[1:]}
    kept_ids = set(line["id"] for line in expected)
    for line, want in zip(raw[2:], expected[1:]):
        if want["type"] == "compaction" and want["firstKeptEntryId"] not in kept_ids:
            assert json.loads(line)["firstKeptEntryId"] == expected[0]["id"]
        else:
            assert line == source[want["id"]]
    first = dict(expected[0], parentId=None)
    assert got[1] == first
    assert_openclaw_rules(got)
    assert record["action"] == "trim" and record["actions"] == ["trim"]
    assert record["before"] == {"bytes": len(original), "records": len(chat.lines) - 1,
                                "sha256": hashlib.sha256(original).hexdigest()}
    assert record["after"] == {"bytes": len(out), "records": len(expected),
                               "sha256": hashlib.sha256(out).hexdigest()}


def test_cut_inside_abandoned_branch_and_between_call_and_result(tmp_path):
    """Two named cases of the sweep above, checked by what they must drop."""
    chat = branchy_chat()
    ids = [line["id"] for line in chat.lines]
    path_ids = [line["id"] for line in reference_path(chat.lines)]
    abandoned = [i for i in ids[1:] if i not in path_ids]
    assert len(abandoned) == 3            # the abandoned toolCall, its result, the answer
    # keep = path records from the fork's user turn on: the abandoned lines sit between kept ones.
    fork = next(line for line in chat.lines if line.get("message", {}).get("content") ==
                [{"type": "text", "text": "please check the disk"}])
    keep = len(path_ids) - path_ids.index(fork["id"])
    path = write(tmp_path, chat.encode())
    trim(tmp_path, path, keep)
    got = [line["id"] for line in parsed_lines(path.read_bytes())[1:]]
    assert got[0] == fork["id"] and not set(abandoned) & set(got)
    # keep such that the cut lands on the steering user line between a toolCall and its result.
    steering = next(line for line in chat.lines if line.get("message", {}).get("content") ==
                    [{"type": "text", "text": "also look at /var"}])
    keep = len(path_ids) - path_ids.index(steering["id"])
    path = write(tmp_path, chat.encode(), "steer.jsonl")
    trim(tmp_path, path, keep)
    got = parsed_lines(path.read_bytes())
    assert steering["id"] not in [line["id"] for line in got]
    assert_openclaw_rules(got)


def test_dry_run_reports_what_the_real_run_writes(tmp_path):
    chat = branchy_chat()
    path = write(tmp_path, chat.encode())
    dry = trim(tmp_path, path, 20, slim="aggressive", dry_run=True)
    assert path.read_bytes() == chat.encode()
    assert dry["backup"] is None and not (tmp_path / "backups-dry").exists()
    real = trim(tmp_path, path, 20, slim="aggressive")
    assert dry["after"] == real["after"] and dry["before"] == real["before"]
    assert dry["actions"] == real["actions"] == ["trim", "slim"]
    assert real["after"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_backup_holds_the_original_and_restores_it(tmp_path):
    chat = branchy_chat()
    original = chat.encode()
    path = write(tmp_path, original)
    record = trim(tmp_path, path, 12, slim="tool-output")
    backup = record["backup"]
    assert open(backup, "rb").read() == original
    assert record["backup_sha256"] == hashlib.sha256(original).hexdigest()
    assert os.stat(backup).st_mode & 0o777 == 0o600
    assert path.read_bytes() != original
    # Restoring is copying the backup back: the original bytes return.
    path.write_bytes(open(backup, "rb").read())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["before"]["sha256"]


def test_slim_leaves_the_last_turns_untouched(tmp_path):
    chat = branchy_chat()
    path = write(tmp_path, chat.encode())
    record = trim(tmp_path, path, 40, slim="tool-output")
    assert record["actions"] == ["trim", "slim"]
    got = parsed_lines(path.read_bytes())
    assert_openclaw_rules(got)
    users = [i for i, line in enumerate(got) if line.get("message", {}).get("role") == "user"]
    boundary = users[-POLICY["untouched_turns"]]
    original = {line["id"]: line for line in chat.lines[1:]}
    slimmed = 0
    for i, line in enumerate(got[1:], 1):
        want = original[line["id"]]
        if i >= boundary:
            assert line == want or i == 1
            continue
        message = line.get("message") or {}
        if message.get("role") == "toolResult" and len(want["message"]["content"][0]["text"]) > 200:
            text = message["content"][0]["text"]
            assert text.startswith("r" * 200) and "bytes of tool output removed]" in text
            assert message["details"] == {} and message["toolCallId"] == want["message"]["toolCallId"]
            slimmed += 1
    assert slimmed >= 2
    big_results = [line for line in got[boundary:] if line.get("message", {}).get("role") == "toolResult"]
    assert any(len(line["message"]["content"][0]["text"]) == 500 for line in big_results)


def test_small_file_only_slimmed_and_clean_file_untouched(tmp_path):
    chat = Chat()
    for _ in range(4):
        chat.turn(size=1000)
    path = write(tmp_path, chat.encode())
    record = trim(tmp_path, path, 100, slim="tool-output")
    assert record["action"] == "slim" and record["actions"] == ["slim"]
    assert record["after"]["records"] == record["before"]["records"] == len(chat.lines) - 1
    again = trim(tmp_path, path, 100, slim="tool-output")
    assert again["action"] == "none" and again["backup"] is None
    assert again["before"] == record["after"]


def test_truncated_last_line_is_kept_verbatim(tmp_path):
    chat = branchy_chat()
    fragment = b'{"type":"message","id":"deadbeef","parentId":"%s","message":{"role":"ass' % \
        chat.lines[-1]["id"].encode()
    path = write(tmp_path, chat.encode() + fragment)
    record = trim(tmp_path, path, 15)
    out = path.read_bytes()
    assert record["error"] is None and out.endswith(b"\n" + fragment)
    assert any("truncated" in note for note in record["notes"])
    got = parsed_lines(out[:-len(fragment)])
    assert [line["id"] for line in got[1:]] == [line["id"] for line in reference_tail(chat.lines, 15)]
    assert record["before"]["records"] == len(chat.lines)        # the fragment counts as a line
    assert record["after"]["records"] == len(got)


def test_bad_line_in_the_middle_is_an_error_and_no_write(tmp_path):
    data = branchy_chat().encode().splitlines(True)
    data[7] = b'{"type":"message", broken\n'
    original = b"".join(data)
    path = write(tmp_path, original)
    record = trim(tmp_path, path, 5)
    assert record["error"] == "line 8 is not valid JSON; left untouched"
    assert record["action"] == "none" and record["backup"] is None
    assert path.read_bytes() == original and not (tmp_path / "backups").exists()


@pytest.mark.parametrize("first", [b'{"type":"message","id":"a","parentId":null}\n', b"not json\n", b""])
def test_missing_header_is_refused(tmp_path, first):
    rest = b"".join(branchy_chat().encode().splitlines(True)[1:])
    path = write(tmp_path, first + rest if first else b"")
    record = trim(tmp_path, path, 5)
    assert record["error"] and path.read_bytes() == (first + rest if first else b"")


def test_crlf_endings_are_kept(tmp_path):
    chat = branchy_chat()
    data = chat.encode().replace(b"\n", b"\r\n")
    path = write(tmp_path, data)
    record = trim(tmp_path, path, 10, slim="tool-output")
    out = path.read_bytes()
    assert record["error"] is None
    assert out.count(b"\r\n") == out.count(b"\n") == record["after"]["records"] + 1
    assert_openclaw_rules(parsed_lines(out))


def _append_in_another_process(path, lines):
    script = ("import sys\n"
              "with open(sys.argv[1], 'ab') as f:\n"
              "    for line in sys.argv[2:]:\n"
              "        f.write(line.encode() + b'\\n'); f.flush()\n")
    subprocess.check_call([sys.executable, "-c", script, str(path)] + lines)


@pytest.mark.parametrize("dry_run", [False, True])
def test_lines_appended_during_the_trim_are_carried(tmp_path, dry_run):
    chat = branchy_chat()
    original = chat.encode()
    path = write(tmp_path, original)
    appended = [json.dumps({"type": "message", "id": "fe%06d" % i, "parentId": chat.lines[-1]["id"],
                            "message": {"role": "user", "content": "live %d" % i}}) for i in range(3)]
    with open(str(path), "rb") as f:
        scan = scan_transcript(f)
        plan = plan_trim(scan, 12, 2, lambda i: json.loads(read_line(f, scan, i)))

    def produce(src, sink):
        half = len(plan.kept) // 2
        kept = plan.kept
        plan.kept = kept[:half]
        write_trimmed(src, sink, scan, plan, None, None)     # header + first half
        _append_in_another_process(path, appended)           # a live gateway appends meanwhile
        plan.kept = kept[half:]
        scan_no_header = scan
        for i in plan.kept:
            sink.write(read_line(src, scan_no_header, i))
        plan.kept = kept

    ctx = make_ctx(tmp_path, dry_run)
    result = fsutil.safe_rewrite(str(path), "s.jsonl", produce, ctx.backups, dry_run, carry_appends=True)
    out = path.read_bytes()
    if dry_run:
        assert out == original + "".join(a + "\n" for a in appended).encode()
        return
    assert result["backup"]["bytes"] == len(original)
    assert out.endswith("".join(a + "\n" for a in appended).encode())
    assert any("carried" in note for note in result["notes"])
    kept_ids = [line["id"] for line in parsed_lines(out)[1:]]
    assert kept_ids[-3:] == ["fe000000", "fe000001", "fe000002"]
    assert kept_ids[:-3] == [line["id"] for line in reference_tail(chat.lines, 12)]


def test_concurrent_appender_process_loses_nothing(tmp_path):
    """A separate process appends (open, O_APPEND write, close — as a gateway does) while
    trim_transcript runs: the result is the trim of exactly the backed-up bytes followed by
    every line appended after the backup, none lost, none doubled.

    The exact order of carried lines is checked deterministically in
    test_lines_appended_during_the_trim_are_carried."""
    chat = Chat()
    for _ in range(300):
        chat.turn(calls=2, size=8000)
    path = write(tmp_path, chat.encode())
    size0 = path.stat().st_size
    stop = tmp_path / "stop"
    script = ("import json, os, sys, time\n"
              "path, stop, parent = sys.argv[1:4]\n"
              "n = 0\n"
              "while not os.path.exists(stop) or n < 5:\n"
              "    line_id = 'c%07d' % n\n"
              "    line = json.dumps({'type': 'message', 'id': line_id, 'parentId': parent,\n"
              "                       'message': {'role': 'user', 'content': 'live %d' % n}})\n"
              "    fd = os.open(path, os.O_WRONLY | os.O_APPEND)\n"
              "    os.write(fd, (line + '\\n').encode()); os.close(fd)\n"
              "    parent = line_id\n"
              "    n += 1\n"
              "    time.sleep(0.002)\n"
              "print(n)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(path), str(stop), chat.lines[-1]["id"]],
                            stdout=subprocess.PIPE)
    try:
        while path.stat().st_size == size0 and proc.poll() is None:
            pass                                   # the appender is running before the trim starts
        record = trim(tmp_path, path, 30, slim="tool-output")
    finally:
        stop.write_text("x")
        written = int(proc.communicate(timeout=60)[0])
    assert record["error"] is None and record["action"] == "trim"
    backed_up = open(record["backup"], "rb").read()
    assert hashlib.sha256(backed_up).hexdigest() == record["before"]["sha256"]
    complete = backed_up[:backed_up.rfind(b"\n") + 1]
    before_lines = parsed_lines(complete)
    in_backup = set(line["id"] for line in before_lines)
    kept = [line["id"] for line in reference_tail(before_lines, 30)]
    appended_later = ["c%07d" % n for n in range(written) if "c%07d" % n not in in_backup]
    got = parsed_lines(path.read_bytes())
    got_ids = [line["id"] for line in got[1:]]
    assert got_ids[:len(kept)] == kept
    # Every line appended after the backup is there exactly once. Their order is kept except,
    # on a heavily loaded machine, for lines written to the old file in the instant of the
    # rename: those are carried right after it, behind lines the writer already put in the new
    # file (OpenClaw links lines by parentId, not by position, so the conversation is intact).
    assert sorted(got_ids[len(kept):]) == appended_later
    ids = set(got_ids)
    assert got[1]["parentId"] is None and all(line["parentId"] in ids for line in got[2:])


@pytest.mark.parametrize("seed,keep,slim", [(1, 25, None), (2, 60, "tool-output"), (3, 100, "aggressive"),
                                            (4, 7, "tool-output"), (5, 3, "tool-output")])
def test_generated_transcripts_trim_to_the_reference_tail(tmp_path, seed, keep, slim):
    """fleet.demo.gen's transcripts (branches, compactions, images, custom lines) against the
    reference tail and the generator's own format checker."""
    import random
    from pathlib import Path

    from fleet.demo.gen.check import transcript_problems
    from fleet.demo.gen.transcript import TranscriptFeatures, write_transcript

    path = tmp_path / "agents" / "main" / "sessions" / "gen.jsonl"
    path.parent.mkdir(parents=True)
    features = TranscriptFeatures(image=True, branch=True, compactions=2, aborted=3)
    write_transcript(Path(str(path)), session_id="0f5d59ee-034e-47d9-ac97-d383e6c022b8", rng=random.Random(seed),
                     n_records=400, n_bytes=600 * 1024, start_ms=NOW_MS - 86400000, end_ms=NOW_MS,
                     cwd="/home/u", features=features)
    original = path.read_bytes()
    lines = parsed_lines(original)
    record = trim(tmp_path, path, keep, slim=slim)
    got = parsed_lines(path.read_bytes())
    expected = reference_tail(lines, keep)
    if not expected:
        # No user turn in reach: nothing is cut (only slimmed), and the record says why.
        assert record["actions"] == ["slim"] and any("no user turn" in n for n in record["notes"])
        assert [line["id"] for line in got] == [line["id"] for line in lines]
        return
    assert record["error"] is None and record["action"] == "trim"
    assert [line["id"] for line in got[1:]] == [line["id"] for line in expected]
    assert_openclaw_rules(got)
    assert transcript_problems(path) == []
    assert record["after"]["records"] == len(expected) and record["after"]["bytes"] < len(original)
    assert open(record["backup"], "rb").read() == original


def test_parent_search_finds_far_branch_points_and_ignores_misaligned_bytes():
    """Branch points far back (more than one search chunk) and id bytes that straddle two
    entries: the backward search must return the real, aligned line."""
    from array import array

    from fleet.hostside.transcript import NO_KEY, TranscriptScan

    wanted = 0x1111111122222222
    scan = TranscriptScan()
    ids = [NO_KEY, wanted]                                        # header, then the fork point
    ids += [0x10000000 + n for n in range(200000)]                # a long abandoned branch
    ids += [0x2222222200000000, 0x0000000011111111]               # little-endian: wanted's bytes straddle these
    ids += [0x30000000]                                           # the child, hanging from line 1
    scan.ids = array("Q", ids)
    scan.parent_ids = array("Q", [NO_KEY] * (len(ids) - 1) + [wanted])
    assert scan.parent(len(ids) - 1) == 1
    scan.parent_ids[-1] = 0x10000000 + 150000
    assert scan.parent(len(ids) - 1) == 2 + 150000
    scan.parent_ids[-1] = 0xDEADBEEF                                # names no line: a root
    assert scan.parent(len(ids) - 1) == -1
    assert scan.key("0a1b2c3d") == 0x0a1b2c3d and scan.key(None) == NO_KEY
    assert scan.key("0A1B2C3D") != 0x0a1b2c3d and scan.key("0A1B2C3D") == scan.key("0A1B2C3D")


class ChangingBackupStore(fsutil.BackupStore):
    """A real BackupStore in front of which another writer changes the file once: the file the
    trim planned on is not the file that gets backed up."""

    def __init__(self, root, change, **kwargs):
        super(ChangingBackupStore, self).__init__(root, **kwargs)
        self.change = change

    def backup(self, abs_path, rel_path, **kwargs):
        if self.change is not None:
            self.change(abs_path)
            self.change = None
        return super(ChangingBackupStore, self).backup(abs_path, rel_path, **kwargs)


def _extra_line(chat):
    return json.dumps({"type": "message", "id": "feedf00d", "parentId": chat.lines[-1]["id"],
                       "message": {"role": "user", "content": "one more"}}, separators=(",", ":")).encode() + b"\n"


@pytest.mark.parametrize("dry_run", [False, True])
def test_file_changed_before_its_backup_is_planned_again(tmp_path, dry_run):
    """Rewritten in place (same inode, an early byte differs) and grown between the scan and the
    backup: the backup holds the new bytes and the trim is planned again on exactly those."""
    chat = branchy_chat()
    original = chat.encode()
    path = write(tmp_path, original)
    extra = _extra_line(chat)
    changed = original.replace(b"2026-", b"2027-", 1) + extra
    assert len(changed) == len(original) + len(extra) and changed[:len(original)] != original

    def rewrite(abs_path):
        with open(abs_path, "r+b") as f:
            f.write(changed)

    store = ChangingBackupStore(str(tmp_path / "backups"), rewrite, dry_run=dry_run)
    ctx = RunContext(str(tmp_path), "run1", NOW_MS, dry_run, store, {})
    record = trim_transcript(ctx, "main", info_for(tmp_path, path), {"keep_records": 12, "slim": None}, POLICY)
    assert any("planned again" in note for note in record["notes"])
    assert record["before"]["sha256"] == hashlib.sha256(changed).hexdigest()
    expected = reference_tail(chat.lines + [json.loads(extra)], 12)
    if dry_run:
        assert path.read_bytes() == changed
        return
    assert open(record["backup"], "rb").read() == changed
    got = parsed_lines(path.read_bytes())
    assert [line["id"] for line in got[1:]] == [line["id"] for line in expected]
    assert got[-1]["id"] == "feedf00d"


def test_line_appended_before_the_backup_is_carried(tmp_path):
    """Appended between the scan and the backup: the backup is exactly the bytes the trim was
    planned on (copied in the kernel, checked against the scan's sha256), and the new line is
    carried after the trimmed tail, as any line a live gateway appends during a trim."""
    chat = branchy_chat()
    original = chat.encode()
    path = write(tmp_path, original)
    extra = _extra_line(chat)

    def append(abs_path):
        with open(abs_path, "ab") as f:
            f.write(extra)

    store = ChangingBackupStore(str(tmp_path / "backups"), append)
    ctx = RunContext(str(tmp_path), "run1", NOW_MS, False, store, {})
    record = trim_transcript(ctx, "main", info_for(tmp_path, path), {"keep_records": 12, "slim": None}, POLICY)
    assert record["error"] is None and record["action"] == "trim"
    assert record["before"]["sha256"] == hashlib.sha256(original).hexdigest()
    assert open(record["backup"], "rb").read() == original
    assert os.stat(record["backup"]).st_mode & 0o777 == 0o600
    assert any("carried %d bytes" % len(extra) in note for note in record["notes"]), record["notes"]
    got = parsed_lines(path.read_bytes())
    assert [line["id"] for line in got[1:]] == [line["id"] for line in reference_tail(chat.lines, 12)] + ["feedf00d"]
