"""Check generated (or trimmed) files against the format rules; used by the tests.

Each function returns a list of problems, empty when the file is valid:
`transcript_problems` (header first, 8-hex ids, every parentId names an earlier line, every
toolResult has its toolCall on its own path) and `store_problems` (an object of entries with a
safe sessionId and an integer updatedAt).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
LINE_ID = re.compile(r"^[0-9a-f]{8}$")
LINE_TYPES = frozenset({"message", "model_change", "thinking_level_change", "compaction", "branch_summary",
                        "custom", "custom_message", "label", "session_info"})


def read_lines(path: Path) -> List[dict]:
    """Every line of a JSONL file parsed with json (raises ValueError naming the line)."""
    records = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                records.append(json.loads(raw))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not JSON: {exc}") from exc
    return records


def active_path(records: List[dict]) -> List[dict]:
    """The conversation: from the last line back to the root via parentId, in file order."""
    by_id = {r.get("id"): r for r in records if r.get("type") != "session"}
    path = []
    node = records[-1] if records and records[-1].get("type") != "session" else None
    while node is not None:
        path.append(node)
        node = by_id.get(node.get("parentId"))
    return path[::-1]


def tool_calls(record: dict) -> List[str]:
    message = record.get("message") or {}
    if record.get("type") != "message" or message.get("role") != "assistant":
        return []
    return [block.get("id") for block in message.get("content") or [] if isinstance(block, dict)
            and block.get("type") == "toolCall"]


def transcript_problems(path: Path, records: Optional[List[dict]] = None) -> List[str]:
    """Problems of one transcript file (schema version 3)."""
    records = read_lines(path) if records is None else records
    problems: List[str] = []
    if not records or records[0].get("type") != "session":
        return [f"{path}: the first line is not the session header"]
    header = records[0]
    if header.get("version") != 3 or not SAFE_ID.match(str(header.get("id", ""))):
        problems.append(f"{path}: header has version {header.get('version')!r}, id {header.get('id')!r}")
    seen: Dict[str, dict] = {}
    for number, record in enumerate(records[1:], 2):
        rid, parent = record.get("id"), record.get("parentId")
        where = f"{path}:{number}"
        if record.get("type") == "session":
            problems.append(f"{where}: a second header")
            continue
        if record.get("type") not in LINE_TYPES:
            problems.append(f"{where}: unknown type {record.get('type')!r}")
        if not isinstance(rid, str) or not LINE_ID.match(rid) or rid in seen:
            problems.append(f"{where}: bad or repeated id {rid!r}")
        if parent is not None and parent not in seen:
            problems.append(f"{where}: parentId {parent!r} names no earlier line")
        if not isinstance(record.get("timestamp"), str):
            problems.append(f"{where}: no timestamp")
        message = record.get("message") or {}
        if record.get("type") == "message" and message.get("role") == "toolResult":
            if not _call_on_path(seen, parent, message.get("toolCallId")):
                problems.append(f"{where}: toolResult {message.get('toolCallId')!r} has no toolCall on its path")
        seen[rid] = record
    return problems


def _call_on_path(seen: Dict[str, dict], parent: Optional[str], call_id: object) -> bool:
    node = seen.get(parent) if parent else None
    while node is not None:
        if call_id in tool_calls(node):
            return True
        node = seen.get(node.get("parentId"))
    return False


def store_problems(path: Path) -> List[str]:
    """Problems of one sessions.json."""
    try:
        store = json.loads(Path(path).read_bytes())
    except ValueError as exc:
        return [f"{path}: not JSON: {exc}"]
    if not isinstance(store, dict):
        return [f"{path}: not an object"]
    problems = []
    for key, entry in store.items():
        if not isinstance(entry, dict):
            problems.append(f"{path}: {key}: not an object")
            continue
        if not SAFE_ID.match(str(entry.get("sessionId", ""))):
            problems.append(f"{path}: {key}: unsafe sessionId {entry.get('sessionId')!r}")
        if not isinstance(entry.get("updatedAt"), int):
            problems.append(f"{path}: {key}: updatedAt is not epoch ms")
    return problems


def split_name(name: str) -> Tuple[str, str]:
    """(session id, what) of a sessions-folder file name, e.g. ("0f5d…", "transcript")."""
    for marker, what in ((".jsonl.deleted.", "archive"), (".jsonl.reset.", "archive"), (".checkpoint.", "checkpoint"),
                         (".trajectory.jsonl", "trajectory"), (".trajectory-path.json", "trajectory-pointer")):
        if marker in name:
            return name.split(marker)[0], what
    if name.endswith(".jsonl"):
        return re.sub(r"-topic-\d+$", "", name[:-6]), "transcript"
    return name, "other"
