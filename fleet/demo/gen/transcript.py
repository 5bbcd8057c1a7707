"""Write one OpenClaw transcript (`<sessionId>.jsonl`, schema version 3) of a given size and length.

The file is built in two passes: first the skeleton of every line (ids, parentId tree, roles,
toolCall ids, usage) with empty payload strings, then the payload budget (target bytes minus the
skeleton) is spread over the payload slots — tool output first, then thinking, prose, an image —
and each slot is filled as its line is written, carrying any rounding to the next slot, so the file
lands within a few bytes of the target while memory holds only the skeleton. The record count
(lines after the header) is exact.
"""
from __future__ import annotations

import base64
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from fleet.demo.gen.common import KB, hex_id, iso_ms, set_mtime
from fleet.demo.gen.text import png_base64, pools

_TOOLS = (
    ("exec", lambda r: {"command": r.choice(["du -sh ~/* | sort -h", "tail -n 400 /var/log/syslog", "docker ps -a",
                                              "git log --oneline -80", "journalctl -u openclaw --since today",
                                              "df -h", "ls -la ~/projects", "npm run build 2>&1"])}),
    ("read", lambda r: {"path": f"/home/linou/projects/{r.choice(['web', 'api', 'notes'])}/{r.choice(['README.md', 'app.py', 'index.ts', 'todo.md'])}"}),
    ("web_fetch", lambda r: {"url": f"https://docs.example.org/{r.choice(['guide', 'api', 'faq'])}/{r.randint(1, 99)}"}),
    ("memory_search", lambda r: {"query": r.choice(["disk usage last week", "会議の資料", "deploy checklist"])}),
    ("write", lambda r: {"path": f"/home/linou/notes/{r.randint(1, 500)}.md", "content": ""}),
    ("process", lambda r: {"action": "list"}),
)
_MODEL = "claude-sonnet-4-5"


@dataclass
class TranscriptFeatures:
    """What a transcript contains besides plain turns."""

    image: bool = False
    branch: bool = False
    compactions: int = 0
    aborted: int = 0
    big_line: bool = False          # one tool result of 400-660 KB, as in old real files
    prompt: str = "chat"            # "chat" or "cron" (what the user turns say)


@dataclass
class TranscriptSummary:
    path: Path
    session_id: str
    bytes: int
    records: int
    leaf_id: Optional[str]
    input_tokens: int
    output_tokens: int
    cache_read: int
    compactions: int
    head: List[bytes]               # the header and the first records (for checkpoint copies)


class _Builder:
    """Accumulates records (dicts) and the payload slots inside them."""

    def __init__(self, rng: random.Random, n_records: int, start_ms: int, end_ms: int):
        self.rng = rng
        self.n_records = n_records
        self.start_ms = start_ms
        self.end_ms = max(end_ms, start_ms + n_records)
        self.records: List[dict] = []
        self.slots: List[list] = []        # [record_index, container, key, pool, weight, fixed_bytes]
        self.ids: set = set()
        self.call_ids: set = set()
        self.parent: Optional[str] = None
        self.user_ids: List[str] = []
        self.tokens = [0, 0, 0]          # the last assistant turn's usage: what the store reports
        self.context = 6000
        self.compactions = 0

    @property
    def remaining(self) -> int:
        return self.n_records - len(self.records)

    def now(self) -> int:
        span = self.end_ms - self.start_ms
        return self.start_ms + span * len(self.records) // max(1, self.n_records - 1)

    def add(self, kind: str, fields: dict, parent: Optional[str] = "active") -> str:
        rid = hex_id(self.rng, self.ids)
        record = {"type": kind, "id": rid, "parentId": self.parent if parent == "active" else parent,
                  "timestamp": iso_ms(self.now())}
        record.update(fields)
        self.records.append(record)
        self.parent = rid
        return rid

    def slot(self, container: dict, key: str, pool: str, weight: float, fixed: int = 0) -> None:
        container[key] = ""
        self.slots.append([len(self.records), container, key, pool, weight, fixed])

    def call_id(self) -> str:
        while True:
            value = f"toolu_01{self.rng.getrandbits(88):022x}"
            if value not in self.call_ids:
                self.call_ids.add(value)
                return value

    # --- lines -------------------------------------------------------------------------------

    def user(self, prompt: str, image: bool = False) -> str:
        ms = self.now()
        if prompt == "cron":
            message = {"role": "user", "content": f"[cron] Run job: {self.rng.choice(['daily report', 'backup check', 'news digest'])}", "timestamp": ms}
        elif self.rng.random() < 0.25 and not image:
            message = {"role": "user", "content": "", "timestamp": ms}
            self.slot(message, "content", "prose", 0.25)
        else:
            block = {"type": "text"}
            self.slot(block, "text", "prose", 0.3)
            content = [block]
            if image:
                picture = {"type": "image", "mimeType": "image/png"}
                self.slot(picture, "data", "image", 0.0, fixed=1)
                content.append(picture)
            message = {"role": "user", "content": content, "timestamp": ms}
        rid = self.add("message", {"message": message})
        self.user_ids.append(rid)
        return rid

    def assistant(self, n_calls: int, final: bool, aborted: bool = False) -> List[tuple]:
        rng = self.rng
        content: List[dict] = []
        if not aborted and rng.random() < 0.6:
            thinking = {"type": "thinking", "thinkingSignature": base64.b64encode(rng.randbytes(30)).decode()}
            self.slot(thinking, "thinking", "think", 1.0)
            content.append(thinking)
        if final or (not aborted and rng.random() < 0.3):
            text = {"type": "text"}
            self.slot(text, "text", "prose", 0.6 if final else 0.2)
            content.append(text)
        calls = []
        for _ in range(n_calls):
            name, make_args = rng.choice(_TOOLS)
            args = make_args(rng)
            call = {"type": "toolCall", "id": self.call_id(), "name": name, "arguments": args}
            if name == "write":
                self.slot(args, "content", "prose", 0.5)
            content.append(call)
            calls.append((call["id"], name))
        # The prompt grows with the conversation until a compaction shrinks it again.
        self.context = min(190_000, self.context + rng.randint(300, 2500))
        usage_in, usage_out = self.context, rng.randint(20, 4000)
        cache_read = rng.randint(usage_in // 2, usage_in)
        self.tokens = [usage_in, usage_out, cache_read]
        stop = "aborted" if aborted else ("toolUse" if n_calls else "stop")
        message = {"role": "assistant", "content": content, "api": "anthropic-messages", "provider": "anthropic",
                   "model": _MODEL,
                   "usage": {"input": usage_in, "output": usage_out, "cacheRead": cache_read, "cacheWrite": 0,
                             "totalTokens": usage_in + usage_out,
                             "cost": {"input": round(usage_in * 3e-6, 6), "output": round(usage_out * 15e-6, 6),
                                      "cacheRead": round(cache_read * 3e-7, 6), "cacheWrite": 0,
                                      "total": round(usage_in * 3e-6 + usage_out * 15e-6, 6)}},
                   "stopReason": stop, "timestamp": self.now()}
        if aborted:
            message["errorMessage"] = "Request was aborted."
        self.add("message", {"message": message})
        return calls

    def tool_result(self, call_id: str, name: str) -> None:
        rng = self.rng
        block = {"type": "text"}
        self.slot(block, "text", "tool", rng.lognormvariate(1.2, 1.1))
        details: dict = {}
        if name == "exec":
            details = {"exitCode": 0 if rng.random() < 0.9 else 1, "durationMs": rng.randint(5, 90_000),
                       "cwd": "/home/linou"}
            if rng.random() < 0.3:
                self.slot(details, "aggregated", "tool", rng.lognormvariate(0.5, 1.0))
        message = {"role": "toolResult", "toolCallId": call_id, "toolName": name, "content": [block],
                   "details": details, "isError": rng.random() < 0.04, "timestamp": self.now()}
        self.add("message", {"message": message})

    def step(self, n_calls: int, final: bool) -> None:
        calls = self.assistant(n_calls, final=final)
        for call_id, name in calls:
            self.tool_result(call_id, name)

    def custom(self, custom_type: str) -> None:
        data = {"provider": "anthropic", "modelApi": "anthropic-messages", "modelId": _MODEL, "timestamp": self.now()}
        if custom_type == "openclaw:bootstrap-context:full":
            data = {"files": ["AGENTS.md", "SOUL.md", "USER.md", "TOOLS.md", "MEMORY.md"]}
            self.slot(data, "text", "prose", 2.0)
        self.add("custom", {"customType": custom_type, "data": data})

    def compaction(self) -> None:
        kept = self.user_ids[-3] if len(self.user_ids) >= 3 else (self.user_ids[-1] if self.user_ids else self.parent)
        fields = {"summary": "", "firstKeptEntryId": kept, "tokensBefore": self.rng.randint(120_000, 190_000),
                  "details": {"readFiles": ["/home/linou/projects/web/README.md"], "modifiedFiles": []}}
        self.slot(fields, "summary", "prose", 1.0)
        self.add("compaction", fields)
        self.compactions += 1
        self.context = self.rng.randint(15_000, 30_000)


def _plan_turn(rng: random.Random, room: int) -> List[int]:
    """Tool calls per step of one turn whose line count (user + steps + results + final) fits `room`."""
    steps = [2 if rng.random() < 0.2 else 1 for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 4, 6]))]
    while steps and 2 + sum(1 + c for c in steps) > room:
        steps.pop()
    return steps


def _build(b: _Builder, features: TranscriptFeatures) -> None:
    rng, n = b.rng, b.n_records
    if n >= 3:
        b.add("model_change", {"provider": "anthropic", "modelId": _MODEL})
    if n >= 8:
        b.add("thinking_level_change", {"thinkingLevel": "low"})
        b.custom("openclaw:bootstrap-context:full")
    compaction_at = [n * (k + 1) // (features.compactions + 1) for k in range(features.compactions)]
    branch_at = n * 2 // 5 if features.branch else None
    image_at = n // 3 if features.image else None
    aborted_left = features.aborted
    while b.remaining > 0:
        room = b.remaining
        if room == 1:
            b.custom("model-snapshot")
        elif compaction_at and len(b.records) >= compaction_at[0] and room >= 3:
            compaction_at.pop(0)
            b.compaction()
        elif branch_at is not None and len(b.records) >= branch_at and room >= 8:
            branch_at = None
            point = b.user(features.prompt)
            abandoned = b.assistant(1, final=False)
            b.tool_result(*abandoned[0])
            b.assistant(0, final=True)
            leaf = b.parent
            b.parent = point                       # the user regenerated: the path resumes at the user turn
            fields = {"fromId": leaf, "summary": ""}
            b.slot(fields, "summary", "prose", 0.3)
            b.add("branch_summary", fields)
            b.step(1, final=False)
            b.step(0, final=True)
        elif aborted_left and room >= 4 and rng.random() < 0.2:
            aborted_left -= 1
            b.user(features.prompt)
            b.assistant(0, final=False, aborted=True)
        elif room >= 3 and rng.random() < 0.03:
            b.custom("model-snapshot")
        else:
            with_image = image_at is not None and len(b.records) >= image_at
            if with_image:
                image_at = None
            steps = _plan_turn(rng, room)
            b.user(features.prompt, image=with_image)
            for calls in steps:
                b.step(calls, final=False)
            b.step(0, final=True)


def _plan_sizes(b: _Builder, budget: int, features: TranscriptFeatures) -> List[int]:
    """Payload bytes per slot: the image and one huge tool result fixed, the rest by weight."""
    rng = b.rng
    slots = b.slots
    sizes = [0] * len(slots)
    fixed = [False] * len(slots)
    image_bytes = max(400, min(180 * KB, budget // 25))
    for i, slot in enumerate(slots):
        if slot[5]:
            sizes[i], fixed[i] = image_bytes, True
    tool_slots = [i for i, slot in enumerate(slots) if slot[3] == "tool"]
    if features.big_line and tool_slots and budget > 3 * 660 * KB:
        biggest = max(tool_slots, key=lambda i: slots[i][4])
        sizes[biggest], fixed[biggest] = rng.randint(400 * KB, 660 * KB), True
    spread = max(0, budget - sum(sizes))
    total_weight = sum(slot[4] for i, slot in enumerate(slots) if not fixed[i]) or 1.0
    for i, slot in enumerate(slots):
        if not fixed[i]:
            sizes[i] = int(spread * slot[4] / total_weight)
    return sizes


def _payload_len(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def _take_exact(pool, rng: random.Random, target: int) -> Tuple[str, int]:
    """Text from `pool` whose JSON encoding is within a few bytes of `target`; (text, its bytes)."""
    if target <= 0:
        return "", 0
    text = pool.take(rng, target)
    actual = _payload_len(text)
    for _ in range(4):
        diff = target - actual
        if abs(diff) <= 16:
            break
        if diff > 0:
            text += pool.take(rng, diff)
        else:
            cut = max(1, int(-diff / pool.bytes_per_char))
            text = text[:max(0, len(text) - cut)]
        actual = _payload_len(text)
    return text, actual


def _encode(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def _skeleton_bytes(records: List[dict]) -> int:
    """Bytes of all records as lines (newlines included) with every payload still empty."""
    if not records:
        return 0
    # One C-level dumps of the whole list instead of one call per record: same bytes plus "[", "]", ",".
    joined = len(json.dumps(records, ensure_ascii=False, separators=(",", ":")).encode())
    return joined - 2 - (len(records) - 1) + len(records)


def write_transcript(path: Path, *, session_id: str, rng: random.Random, n_records: int, n_bytes: int,
                     start_ms: int, end_ms: int, cwd: str,
                     features: Optional[TranscriptFeatures] = None) -> TranscriptSummary:
    """Write a transcript of exactly `n_records` records and about `n_bytes` bytes; mtime = end_ms.

    When `n_bytes` is less than the skeleton needs, the record count wins. Lines are filled and
    written one at a time, so memory stays at the skeleton's size whatever the file's size.
    """
    features = features or TranscriptFeatures()
    b = _Builder(rng, n_records, start_ms, end_ms)
    _build(b, features)
    header = _encode({"type": "session", "version": 3, "id": session_id, "timestamp": iso_ms(start_ms), "cwd": cwd})
    sizes = _plan_sizes(b, n_bytes - len(header) - 1 - _skeleton_bytes(b.records), features)
    slots_of: Dict[int, List[int]] = {}
    for i, slot in enumerate(b.slots):
        slots_of.setdefault(slot[0], []).append(i)
    all_pools = pools()
    head = [header]
    owed = 0                                  # bytes planned so far minus bytes written so far
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    size = 0
    with open(fd, "wb", buffering=1 << 20) as f:
        f.write(header + b"\n")
        size += len(header) + 1
        for index, record in enumerate(b.records):
            filled = slots_of.get(index, ())
            for i in filled:
                _, container, key, pool, _, _ = b.slots[i]
                if pool == "image":
                    container[key] = png_base64(rng, sizes[i])
                    actual = len(container[key])
                else:
                    container[key], actual = _take_exact(all_pools[pool], rng, sizes[i] + owed)
                owed += sizes[i] - actual
            line = _encode(record)
            f.write(line + b"\n")
            size += len(line) + 1
            if index < 40:
                head.append(line)
            for i in filled:                  # the text is on disk: let it go
                _, container, key, _, _, _ = b.slots[i]
                container[key] = ""
    os.chmod(path, 0o600)
    set_mtime(path, end_ms)
    return TranscriptSummary(path=path, session_id=session_id, bytes=size, records=len(b.records),
                             leaf_id=b.records[-1]["id"] if b.records else None,
                             input_tokens=b.tokens[0], output_tokens=b.tokens[1], cache_read=b.tokens[2],
                             compactions=b.compactions, head=head)
