"""Slim levels as pure functions: what they cut, the markers they leave, what they never touch."""
import copy
import json

import pytest

from fleet.hostside.slim import Limits, cut_text, slim_line

LIMITS = Limits(tool_output=100, assistant_text=200)
PNG = "iVBORw0KGgo" + "A" * 187389


def tool_result(text, details=None):
    return {"type": "message", "id": "e5f6a7b8", "parentId": "d4e5f6a7", "timestamp": "2026-11-14T08:00:03.000Z",
            "message": {"role": "toolResult", "toolCallId": "toolu_01", "toolName": "exec",
                        "content": [{"type": "text", "text": text}],
                        "details": details if details is not None else {"aggregated": "x" * 5000, "exitCode": 0},
                        "isError": False, "timestamp": 1763107203000}}


def assistant(thinking, text, calls=1):
    content = [{"type": "thinking", "thinking": thinking, "thinkingSignature": "EqQBCkYIBxgCKkA" * 20},
               {"type": "text", "text": text}]
    content += [{"type": "toolCall", "id": "toolu_%02d" % i, "name": "exec", "arguments": {"command": "du -sh ~"}}
                for i in range(calls)]
    return {"type": "message", "id": "d4e5f6a7", "parentId": "c3d4e5f6", "timestamp": "2026-11-14T08:00:02.000Z",
            "message": {"role": "assistant", "content": content,
                        "usage": {"input": 1200, "output": 45, "totalTokens": 1245},
                        "stopReason": "toolUse", "model": "claude-sonnet-4-5"}}


def test_long_tool_output_keeps_its_head_and_says_how_much_went():
    line = tool_result("h" * 100 + "t" * 58112)
    before = copy.deepcopy(line)
    new, removed = slim_line(line, "tool-output", LIMITS)
    assert line == before, "the input must not be modified"
    text = new["message"]["content"][0]["text"]
    assert text == "h" * 100 + "\u2026[fleet: 58,112 bytes of tool output removed]"
    assert new["message"]["details"] == {}
    assert removed == 58112 + len(json.dumps(before["message"]["details"], separators=(",", ":"))) - 2
    for key in ("id", "parentId", "timestamp"):
        assert new[key] == line[key]
    for key in ("role", "toolCallId", "toolName", "isError", "timestamp"):
        assert new["message"][key] == line["message"][key]


def test_short_output_and_empty_details_are_left_alone():
    line = tool_result("short", details={})
    assert slim_line(line, "tool-output", LIMITS) == (line, 0)
    assert slim_line(line, "aggressive", LIMITS)[1] == 0
    assert slim_line(line, None, LIMITS) == (line, 0)


def test_cut_is_on_a_character_boundary():
    text, removed = cut_text("é" * 1000, 101, "tool output")
    head = text.split("\u2026")[0]
    assert head == "é" * 50 and removed == 2000 - 100
    assert len(head.encode()) <= 101


def test_base64_images_become_placeholders_in_any_message():
    user = {"type": "message", "id": "c3d4e5f6", "parentId": None,
            "message": {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image", "mimeType": "image/png", "data": PNG},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.org/a.png"}}]}}
    new, removed = slim_line(user, "tool-output", LIMITS)
    content = new["message"]["content"]
    assert content[0] == user["message"]["content"][0]
    assert content[1] == content[2] == {"type": "text", "text": "[fleet: image removed, 183 KB]"}
    assert content[3] == user["message"]["content"][3]
    assert removed == 2 * len(PNG)


def test_tool_output_level_leaves_thinking_and_assistant_text():
    line = assistant("t" * 5000, "a" * 5000)
    assert slim_line(line, "tool-output", LIMITS) == (line, 0)


def test_aggressive_cuts_thinking_and_long_assistant_text_but_not_calls_or_usage():
    line = assistant("t" * 5000, "a" * 5000, calls=2)
    new, removed = slim_line(line, "aggressive", LIMITS)
    content = new["message"]["content"]
    assert content[0] == {"type": "thinking", "thinking": "[fleet: 5,000 bytes of thinking removed]"}
    assert content[1]["text"] == "a" * 200 + "\u2026[fleet: 4,800 bytes of assistant text removed]"
    assert content[2:] == line["message"]["content"][2:]
    assert new["message"]["usage"] == line["message"]["usage"]
    assert new["message"]["stopReason"] == "toolUse"
    assert removed == 5000 + len("EqQBCkYIBxgCKkA" * 20) + 4800
    # The user's own words are never cut, at any level.
    user = {"type": "message", "message": {"role": "user", "content": "u" * 9000}}
    assert slim_line(user, "aggressive", LIMITS) == (user, 0)


@pytest.mark.parametrize("level", ["tool-output", "aggressive"])
def test_slimming_twice_changes_nothing_more(level):
    for line in (tool_result("x" * 9000), assistant("t" * 5000, "a" * 5000)):
        once, removed = slim_line(line, level, LIMITS)
        twice, again = slim_line(once, level, LIMITS)
        assert again == 0 and twice == once


def test_bare_messages_of_legacy_files_are_slimmed_too():
    message = {"role": "toolResult", "toolCallId": "toolu_01", "content": "x" * 500}
    new, removed = slim_line(message, "tool-output", LIMITS)
    assert new["content"].startswith("x" * 100) and removed == 400
    openai_tool = {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "y" * 300}]}
    assert slim_line(openai_tool, "tool-output", LIMITS)[1] == 200


def test_unknown_level_is_refused():
    with pytest.raises(ValueError):
        slim_line(tool_result("x" * 500), "everything", LIMITS)


def test_would_slim_agrees_with_slim_line_near_every_edge():
    """The scan's quick check must say 'changes' exactly when slim_line changes something."""
    from fleet.hostside.slim import would_slim

    texts = ["", "a" * 25, "a" * 100, "a" * 101, "a" * 150, "a" * 170, "a" * 1000, "é" * 50, "é" * 51,
             "é" * 90, "é" * 200, "a" * 100 + "\u2026[fleet: 5,000 bytes of tool output removed]",
             "a" * 300 + "\u2026[fleet: 5,000 bytes of tool output removed]"]
    lines = []
    for text in texts:
        lines.append(tool_result(text, details={}))
        lines.append(tool_result(text))
        lines.append({"type": "message", "message": {"role": "toolResult", "toolCallId": "t", "content": text}})
        lines.append(assistant(text, text, calls=0))
        lines.append({"type": "message", "message": {"role": "assistant", "content": [
            {"type": "thinking", "thinking": text}]}})
    lines.append({"type": "custom", "customType": "model-snapshot", "data": {"x": "y" * 5000}})
    for level in ("tool-output", "aggressive"):
        for line in lines:
            assert would_slim(line, level, LIMITS) == (slim_line(line, level, LIMITS)[1] > 0), (level, line)
