"""A stand-in for a live OpenClaw gateway, writing a sessions folder the way OpenClaw does.

    python gateway_writer.py SESSIONS_DIR --mode 2026.2|2026.4|nolock --log FILE
        [--transcript NAME ...] [--hold-lock NAME ...] [--duration S] [--stop-file F] [--interval S]
        [--lock-wait S]

Until `--stop-file` exists (or `--duration` seconds have passed, when given), every `--interval` it either
- appends one line to one of the `--transcript` files (round robin): a schema-3 message line with a
  fresh 8-hex id whose parentId is the id of the last line it knows of in that file (read once at
  start, then its own), user and assistant turns alternating; written like Node's fs.appendFile
  (open O_APPEND, one write, close); or
- (every fourth action) rewrites `sessions.json`: re-reads it, adds a new group-session entry
  `agent:main:telegram:group:live-<n>` (with a bulky skillsSnapshot, so fleet has fields to strip),
  sets `updatedAt` of `agent:main:main` to a counter, writes `sessions.json.<pid>.<uuid>.tmp` (0600)
  and renames it over. With --mode 2026.2 it first takes `sessions.json.lock` by O_EXCL create
  with body {pid, startedAt}; 2026.4 with {pid, createdAt (ISO), starttime}; a held lock is waited
  for (10 ms polls, `--lock-wait` seconds at most, OpenClaw's 10 by default, then this write is
  given up and logged; `inf` waits as long as it takes), a stale one (2026.2: over 30 s old;
  2026.4: dead pid or over 30 s) is taken over. nolock (2026.5-2026.7) takes no lock.
`--hold-lock NAME` creates `NAME.lock` ({pid, createdAt, maxHoldMs}) for the whole run, as a
gateway mid-turn does, and removes it at the end.

Every write is one log line, written and flushed after the write completed:
`<monotonic s> <wall ms> append <file> <id>`, `<monotonic> <wall> store <key> <updatedAt>`,
`<monotonic> <wall> store-gave-up - -`. time.monotonic() is CLOCK_MONOTONIC: comparable across
processes on one machine. Stdlib only.
"""
import argparse
import json
import os
import random
import sys
import time
import uuid

STORE = "sessions.json"
STALE_MS = 30 * 1000


def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


def last_id(path):
    """The id of the last complete line of a transcript (None for a header-only file)."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    for raw in reversed(lines):
        if raw.strip():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            return line.get("id") if line.get("type") != "session" else None
    return None


def start_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
        return int(data[data.rfind(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Writer(object):
    def __init__(self, args):
        self.dir = args.sessions_dir
        self.mode = args.mode
        self.lock_wait = args.lock_wait
        self.log = open(args.log, "a", buffering=1)
        self.rng = random.Random(args.seed)
        self.transcripts = list(args.transcript or [])
        self.last = {}
        self.role = {}
        self.taken = set()
        for name in self.transcripts:
            self.last[name] = last_id(os.path.join(self.dir, name))
            self.role[name] = "user"
        self.n_store = 0
        self.turn = 0

    def note(self, kind, what, detail):
        self.log.write("%.6f %d %s %s %s\n" % (time.monotonic(), int(time.time() * 1000), kind, what, detail))

    def fresh_id(self):
        while True:
            value = "%08x" % self.rng.getrandbits(32)
            if value not in self.taken:
                self.taken.add(value)
                return value

    def append(self, name):
        line_id = self.fresh_id()
        now = int(time.time() * 1000)
        role = self.role[name]
        self.role[name] = "assistant" if role == "user" else "user"
        line = {"type": "message", "id": line_id, "parentId": self.last[name], "timestamp": iso(now),
                "message": {"role": role, "content": [{"type": "text", "text": "live %s %d" % (role, self.turn)}],
                            "timestamp": now}}
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        fd = os.open(os.path.join(self.dir, name), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        self.last[name] = line_id
        self.turn += 1
        self.note("append", name, line_id)

    # ---- the store -------------------------------------------------------------------

    def lock_body(self):
        now = int(time.time() * 1000)
        if self.mode == "2026.2":
            return {"pid": os.getpid(), "startedAt": now}
        return {"pid": os.getpid(), "createdAt": iso(now), "starttime": start_ticks(os.getpid())}

    def stale(self, path):
        try:
            st = os.stat(path)
            with open(path, "rb") as f:
                body = json.loads(f.read() or b"{}")
        except (OSError, ValueError):
            return False
        age_ms = time.time() * 1000 - st.st_mtime * 1000
        if age_ms > STALE_MS:
            return True
        if self.mode == "2026.4" and isinstance(body, dict) and isinstance(body.get("pid"), int):
            if not pid_alive(body["pid"]):
                return True
            ticks = body.get("starttime")
            return ticks is not None and ticks != start_ticks(body["pid"])
        return False

    def acquire(self):
        path = os.path.join(self.dir, STORE + ".lock")
        deadline = time.monotonic() + self.lock_wait
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                if self.stale(path):
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        pass
                    continue
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.01)
                continue
            body = json.dumps(self.lock_body()).encode()
            os.write(fd, body)
            os.close(fd)
            return path, body

    def release(self, held):
        path, body = held
        try:
            with open(path, "rb") as f:
                if f.read() == body:
                    os.unlink(path)
        except OSError:
            pass

    def rewrite_store(self):
        held = None
        if self.mode != "nolock":
            held = self.acquire()
            if held is None:
                self.note("store-gave-up", "-", "-")
                return
        try:
            path = os.path.join(self.dir, STORE)
            with open(path, "rb") as f:
                store = json.loads(f.read())
            self.n_store += 1
            key = "agent:main:telegram:group:live-%d" % self.n_store
            now = int(time.time() * 1000)
            store[key] = {"sessionId": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                          "updatedAt": now, "chatType": "group",
                          "skillsSnapshot": {"prompt": "skills " * 40}}
            main = store.get("agent:main:main")
            if isinstance(main, dict):
                main["updatedAt"] = now
            tmp = os.path.join(self.dir, "%s.%d.%s.tmp" % (STORE, os.getpid(), uuid.uuid4()))
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(store, indent=2).encode())
            os.rename(tmp, path)
            self.note("store", key, now)
        finally:
            if held is not None:
                self.release(held)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Imitate a live OpenClaw gateway writing its sessions folder.")
    parser.add_argument("sessions_dir")
    parser.add_argument("--mode", choices=("2026.2", "2026.4", "nolock"), required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--transcript", action="append", help="transcript file name to append to (repeatable)")
    parser.add_argument("--hold-lock", action="append", default=[], help="transcript whose .lock to hold")
    parser.add_argument("--duration", type=float, default=None, help="seconds (default: until --stop-file)")
    parser.add_argument("--stop-file", default=None)
    parser.add_argument("--interval", type=float, default=0.004)
    parser.add_argument("--seed", default="gateway")
    parser.add_argument("--lock-wait", type=float, default=10.0, help="seconds to wait for a held store lock")
    args = parser.parse_args(argv)
    writer = Writer(args)
    locks = []
    for name in args.hold_lock:
        lock = os.path.join(args.sessions_dir, name + ".lock")
        with open(lock, "w") as f:
            json.dump({"pid": os.getpid(), "createdAt": iso(int(time.time() * 1000)), "maxHoldMs": 600000}, f)
        locks.append(lock)
    writer.note("ready", "-", "-")
    end = time.monotonic() + args.duration if args.duration is not None else float("inf")
    action = appends = 0
    try:
        while time.monotonic() < end and not (args.stop_file and os.path.exists(args.stop_file)):
            if action % 4 == 3 or not writer.transcripts:
                writer.rewrite_store()
            else:
                writer.append(writer.transcripts[appends % len(writer.transcripts)])
                appends += 1
            action += 1
            time.sleep(args.interval)
    finally:
        for lock in locks:
            os.unlink(lock)
        writer.note("done", "-", "-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
