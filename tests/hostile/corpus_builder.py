"""Build one hostile-corpus case on disk, and snapshot a tree to prove what changed.

A case is a folder `tests/hostile/corpus/<name>/` holding `case.json` (what it is, what fleet must
do, what to expect) and `tree/` (plain files copied into the state dir as they are). What git
cannot hold as a plain file — symlinks and loops, FIFOs, devices, sockets, a 50 MB line, names
that are not UTF-8, old mtimes — is listed in case.json's `build` steps and made here at test
time. See tests/hostile/corpus/README.md for the keys.

Every case gets the same surroundings, under one root folder:

    root/state/                    the OpenClaw state dir the agent works on
    root/state/agents/good/        a healthy agent whose transcript a run must still trim
    root/state/agents/other/       another agent (targets of cross-agent links)
    root/outside/                  files and folders outside the state dir; every file in it
                                   holds SECRET, so a read through a link shows in the output
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"
SECRET = "OUTSIDE-SECRET-7f3e9a1c5b"
NOW_MS = 1_795_000_000_000
DAY_MS = 86_400_000


def conversation(sid: str, turns: int = 6, text: str = "") -> str:
    """A schema-3 transcript: per turn user → assistant toolCall → toolResult → assistant text."""
    lines = [{"type": "session", "version": 3, "id": sid, "timestamp": "2026-11-14T08:00:00.000Z", "cwd": "/w"}]
    parent, n = None, 0
    for t in range(turns):
        for message in (
                {"role": "user", "content": [{"type": "text", "text": f"question {t} {text}"}]},
                {"role": "assistant", "content": [{"type": "toolCall", "id": f"tc{t}", "name": "exec",
                                                   "arguments": {"command": "ls"}}]},
                {"role": "toolResult", "toolCallId": f"tc{t}", "toolName": "exec",
                 "content": [{"type": "text", "text": "out " * 80 + text}], "details": {}, "isError": False},
                {"role": "assistant", "content": [{"type": "text", "text": f"answer {t} {text}"}]}):
            n += 1
            line_id = "%08x" % n
            lines.append({"type": "message", "id": line_id, "parentId": parent,
                          "timestamp": "2026-11-14T08:00:%02d.000Z" % (n % 60), "message": message})
            parent = line_id
    return "".join(json.dumps(x) + "\n" for x in lines)


def _store(sid: str, extra_text: str = "") -> str:
    store = {"agent:main:main": {"sessionId": sid, "updatedAt": NOW_MS - DAY_MS,
                                 "label": extra_text or "main"},
             "agent:main:cron:job:run:old": {"sessionId": "old", "updatedAt": NOW_MS - 40 * DAY_MS}}
    return json.dumps(store, indent=2)


def load_cases() -> list[dict]:
    cases = []
    for folder in sorted(CORPUS.iterdir()):
        if folder.is_dir():
            case = json.loads((folder / "case.json").read_text(encoding="utf-8"))
            case["name"] = folder.name
            case["dir"] = folder
            cases.append(case)
    return cases


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def build_outside(outside: Path) -> None:
    """Targets of hostile links: every file holds SECRET (so reading one shows in the output)."""
    _write(outside / "secret.jsonl", conversation("secret", turns=4, text=SECRET))
    _write(outside / "dir" / "inside.jsonl", conversation("inside", turns=2, text=SECRET))
    _write(outside / "store.json", _store("secret", SECRET))
    _write(outside / "lockbody", json.dumps({"pid": 999999999, "note": SECRET}))
    _write(outside / "legacy.session.json", json.dumps({"messages": [{"role": "user", "content": SECRET}] * 5}))
    for agent_dir in (outside / "sessdir", outside / "agentdir" / "sessions",
                      outside / "agentsroot" / "main" / "sessions"):
        _write(agent_dir / "sessions.json", _store("secret", SECRET))
        _write(agent_dir / "secret.jsonl", conversation("secret", turns=4, text=SECRET))
        _write(agent_dir / "orphan.jsonl", conversation("orphan", turns=4, text=SECRET))
        old = (NOW_MS - 40 * DAY_MS) / 1000
        os.utime(agent_dir / "orphan.jsonl", (old, old))


def build_baseline(state: Path) -> None:
    """A healthy agent `good` (its transcript is over every tier) and an agent `other`."""
    good = state / "agents" / "good" / "sessions"
    _write(good / "sessions.json", _store("g-1"))
    _write(good / "g-1.jsonl", conversation("g-1"))
    other = state / "agents" / "other" / "sessions"
    _write(other / "sessions.json", _store("o-1"))
    _write(other / "o-1.jsonl", conversation("o-1"))


def _fill(text: str, state: Path, outside: Path) -> str:
    return text.replace("{STATE}", str(state)).replace("{OUTSIDE}", str(outside))


def big_transcript(path: Path, sid: str, size: int) -> None:
    """A transcript whose toolResult is one line of `size` bytes (OpenClaw #36865)."""
    head = conversation(sid, turns=1).splitlines(True)
    blob = "x" * size
    big = {"type": "message", "id": "0000beef", "parentId": "00000002", "timestamp": "2026-11-14T08:01:00.000Z",
           "message": {"role": "toolResult", "toolCallId": "tc0", "toolName": "exec",
                       "content": [{"type": "text", "text": blob}], "details": {}, "isError": False}}
    tail = {"type": "message", "id": "0000cafe", "parentId": "0000beef", "timestamp": "2026-11-14T08:02:00.000Z",
            "message": {"role": "assistant", "content": [{"type": "text", "text": "done"}]}}
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(head[:3])
        f.write(json.dumps(big) + "\n")
        f.write(json.dumps(tail) + "\n")


def _bind_socket(path: Path) -> socket.socket:
    # AF_UNIX paths are limited to ~108 bytes: bind by a relative name from the folder.
    here = os.getcwd()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.chdir(path.parent)
        sock.bind(path.name)
    finally:
        os.chdir(here)
    return sock


def apply_step(step: dict, state: Path, outside: Path, keep: list) -> None:
    op = step["op"]
    path = state / step["path"]
    if op == "symlink":
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(_fill(step["to"], state, outside), path)
    elif op == "fifo":
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path, 0o600)
    elif op == "chardev":
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(step["major"], step["minor"]))
    elif op == "socket":
        path.parent.mkdir(parents=True, exist_ok=True)
        keep.append(_bind_socket(path))
    elif op == "mkdir":
        path.mkdir(parents=True, exist_ok=True)
    elif op == "rmtree":
        shutil.rmtree(path)
    elif op == "age":
        t = time.time() - step["seconds"]
        os.utime(path, (t, t), follow_symlinks=False)
    elif op == "bigline":
        big_transcript(path, step["sid"], step["bytes"])
    elif op == "write":
        if "name_hex" in step:
            raw = os.fsencode(str(path.parent)) + b"/" + bytes.fromhex(step["name_hex"])
            with open(raw, "w", encoding="utf-8") as f:
                f.write(step["text"])
        else:
            _write(path, step["text"])
    else:
        raise ValueError(f"unknown build step {op!r}")


def build_case(case: dict, root: Path) -> tuple[Path, Path, list]:
    """Lay out `root/state` and `root/outside` for `case`; returns (state, outside, keep-alive objects)."""
    state, outside = root / "state", root / "outside"
    build_outside(outside)
    build_baseline(state)
    templates = set(case.get("templates") or ())
    for rel in case.get("tree") or ():
        data = (case["dir"] / "tree" / rel).read_bytes()
        if rel in templates:
            data = _fill(data.decode("utf-8"), state, outside).encode("utf-8")
        _write(state / rel, data)
    keep: list = []
    for step in case.get("build") or ():
        apply_step(step, state, outside, keep)
    return state, outside, keep


# --- snapshots -------------------------------------------------------------------------------

def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot(root: Path) -> dict:
    """{relative path: (type, mode, uid, size, mtime_ns, inode, sha256 or link target)} of a tree.

    Never follows a symlink and never opens anything but regular files (a FIFO would block).
    Names are bytes-safe (os.fsdecode keeps undecodable bytes as surrogates).
    """
    out: dict = {}

    def walk(folder: str) -> None:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            rel = os.path.relpath(entry.path, root)
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                kind, content = "link", os.readlink(entry.path)
            elif stat.S_ISDIR(mode):
                kind, content = "dir", None
            elif stat.S_ISREG(mode):
                kind, content = "file", _sha256(entry.path)
            else:
                kind, content = "special", None
            out[rel] = (kind, stat.S_IMODE(mode), st.st_uid, st.st_size, st.st_mtime_ns, st.st_ino, content)
            if kind == "dir":
                walk(entry.path)

    walk(str(root))
    return out


def under(snap: dict, prefix: str) -> dict:
    return {k: v for k, v in snap.items() if k == prefix or k.startswith(prefix + os.sep)}


def files_containing(root: Path, needle: bytes) -> list[str]:
    """Regular files under `root` (not through links) whose bytes contain `needle`."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path) or not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            with open(path, "rb") as f:
                if needle in f.read():
                    found.append(os.path.relpath(path, root))
    return found
