"""What several test files share: the in-process CLI runner, recorded-run builders, a recording
HTTP server, small local fleets and report-table readers (the interpreters this machine has: pythons.py).

Test files import from here, never from each other."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import io
import json
import secrets
import subprocess
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fleet.cli import main
from fleet.report.tables import TOTAL_LABEL
from fleet.report.results import FileResult, HealthFinding, HostResult, RunResult, Stats
from fleet.units import human_bytes


def run_cli(argv, capsys):
    """Run the real `fleet` entry point in-process; return (exit code, stdout, stderr)."""
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    out, err = capsys.readouterr()
    return code, out, err


def expectations(path: Path) -> list[str]:
    """What a fixture says the user must read: its `# expect: …` lines."""
    return [line.split("# expect:", 1)[1].strip() for line in path.read_text().splitlines()
            if line.startswith("# expect:")]


SESSION_ID = "0f5d59ee-034e-47d9-ac97-d383e6c022b8"


def markdown_tables(text: str) -> dict[str, list[dict]]:
    """Parse the github tables under each ### heading into lists of {header: cell}."""
    tables, heading, lines = {}, None, []
    for line in text.splitlines() + ["### end"]:
        if line.startswith("### "):
            if heading and lines:
                headers = [c.strip() for c in lines[0].strip("|").split("|")]
                tables[heading] = [dict(zip(headers, (c.strip() for c in row.strip("|").split("|"))))
                                   for row in lines[2:]]
            heading, lines = line[4:], []
        elif line.startswith("|"):
            lines.append(line)
    return tables



TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def make_local_fleet(root: Path, tool_chars: int = 4000, turns: int = 300) -> Path:
    """An inventory with one `connection = "local"` host whose OpenClaw state has one ~1.3 MB
    transcript (the emergency playbook slims it); returns the inventory's path."""
    sessions = root / "openclaw" / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    lines = [{"type": "session", "version": 3, "id": SESSION_ID, "timestamp": "2026-11-01T00:00:00.000Z",
              "cwd": "/tmp"}]
    parent = None
    for turn in range(turns):
        for role in ("user", "assistant", "toolResult"):
            line_id = f"{len(lines):08x}"
            text = "x" * tool_chars if role == "toolResult" else f"{role} {turn}"
            message = {"role": role, "content": [{"type": "text", "text": text}]}
            if role == "toolResult":
                message.update(toolCallId=f"call{turn}", toolName="exec", isError=False)
            lines.append({"type": "message", "id": line_id, "parentId": parent,
                          "timestamp": "2026-11-01T00:00:01.000Z", "message": message})
            parent = line_id
    transcript = sessions / f"{SESSION_ID}.jsonl"
    transcript.write_text("".join(json.dumps(line) + "\n" for line in lines))
    (sessions / "sessions.json").write_text(json.dumps(
        {"agent:main:main": {"sessionId": SESSION_ID, "updatedAt": 1763700000000,
                             "sessionFile": str(transcript)}}, indent=2))
    inventory = root / "inventory.toml"
    inventory.write_text(f'[hosts.control]\nconnection = "local"\nstate_dir = "{root / "openclaw"}"\n')
    return inventory


class RecordingServer:
    """A real HTTP server in a thread: answers like Telegram's sendMessage, keeps what it got."""

    def __init__(self, status: int = 200, answer: dict | None = None):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                 "json": json.loads(body)})
                reply = json.dumps(answer or {"ok": True, "result": {"message_id": len(received)}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


ECHO_AGENT = """\
import json, os, sys
plan = json.load(sys.stdin)
sys.stderr.write('{"event": "done"}\\n')
print(json.dumps({"protocol": 1, "plan": plan, "argv": sys.argv[1:], "user": os.environ.get("USER"),
                  "home": os.path.expanduser("~")}))
"""


def make_bundle(main_py: str) -> tuple[bytes, str]:
    """A zipapp with `main_py` as __main__ and a nonce, so its digest is new to every cache."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", main_py + f"# {secrets.token_hex(8)}\n")
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def assert_markdown_adds_up(md: str, doc: dict) -> None:
    """The markdown report's per-host and per-agent tables agree with the JSON document, and
    the agents of each host add up to the host, the hosts to the fleet (exact bytes)."""
    tables = markdown_tables(md)
    per_host = {r["host"]: r for r in tables["Per host"]}
    for h in doc["hosts"]:
        if not h["ok"]:
            assert h["host"] not in per_host
            continue
        assert per_host[h["host"]]["before"] == human_bytes(h["before_bytes"])
        assert per_host[h["host"]]["after"] == human_bytes(h["after_bytes"])
        assert int(per_host[h["host"]]["files"]) == len(h["files"])
    assert per_host[TOTAL_LABEL]["before"] == human_bytes(doc["totals"]["before_bytes"])
    assert per_host[TOTAL_LABEL]["after"] == human_bytes(doc["totals"]["after_bytes"])
    assert per_host[TOTAL_LABEL]["freed"] == human_bytes(doc["totals"]["freed_bytes"])

    # Per host × agent: each row is the sum of that agent's files in the JSON, and the agents of
    # a host add up to the host's exact totals.
    sums: dict[tuple[str, str], list[int]] = {}
    for h in doc["hosts"]:
        for f in h["files"]:
            s = sums.setdefault((h["host"], f["agent"]), [0, 0, 0])
            s[0] += f["before"]["bytes"]
            s[1] += f["after"]["bytes"]
            s[2] += 1
    rows = [r for r in tables["Per host and agent"] if r["host"] != TOTAL_LABEL]
    assert {(r["host"], r["agent"]) for r in rows} == set(sums)
    for r in rows:
        before, after, files = sums[(r["host"], r["agent"])]
        assert (r["before"], r["after"], int(r["files"])) == (human_bytes(before), human_bytes(after), files)
    for h in doc["hosts"]:
        if h["ok"]:
            assert sum(v[0] for k, v in sums.items() if k[0] == h["host"]) == h["before_bytes"]
            assert sum(v[1] for k, v in sums.items() if k[0] == h["host"]) == h["after_bytes"]
    assert sum(v[0] for v in sums.values()) == doc["totals"]["before_bytes"]
    assert sum(v[1] for v in sums.values()) == doc["totals"]["after_bytes"]
    total = [r for r in tables["Per host and agent"] if r["host"] == TOTAL_LABEL][0]
    assert total["before"] == human_bytes(doc["totals"]["before_bytes"])
    fleet = tables["Fleet"][0]
    assert (int(fleet["hosts"]), int(fleet["ok"]), int(fleet["failed"])) == (
        doc["totals"]["hosts"], doc["totals"]["hosts_ok"], doc["totals"]["hosts_failed"])


def make_run(run_id="20261121T101500Z-3fa2c1", kind="run", dry_run=False, day=21, sizes=((9646899, 188743),),
             hosts=("pc-a",)) -> RunResult:
    host_results = []
    for host in hosts:
        files = tuple(FileResult("main", f"agents/main/sessions/s{i}.jsonl", "transcript",
                                 "none" if kind == "scan" else "trim", () if kind == "scan" else ("trim",),
                                 Stats(b, 4040, "a" * 64), Stats(b if kind == "scan" else a, 100, "b" * 64),
                                 backup=None if kind == "scan" else f"/home/x/.openclaw/fleet-backups/{run_id}/s{i}",
                                 backup_sha256=None if kind == "scan" else "a" * 64)
                      for i, (b, a) in enumerate(sizes))
        host_results.append(HostResult(host, True, elapsed_s=1.5, files=files,
                                       health=(HealthFinding("main", "warning", "transcript-size", "big"),)))
    return RunResult(run_id, kind, None if kind == "scan" else "weekly", dry_run,
                     f"2026-11-{day:02d}T10:15:00Z", f"2026-11-{day:02d}T10:16:00Z", tuple(host_results))


# --- fleet-test's real crontab (tests/schedule) ---------------------------------------------

CRON_USER = "fleet-test"


UNRELATED = (
    "# jobs of fleet-test, not fleet's\n"
    "MAILTO=\"\"\n"
    "SHELL=/bin/sh\n"
    "\n"
    "*/5 * * * * /usr/bin/true   # keep this spacing\n"
    "# fleet:nightly  (a comment that only looks like fleet's marker)\n"
    "17 4 * * * echo 'fleet:nightly' >/dev/null\n"
)


def crontab(*args: str, user: str | None = CRON_USER, text: str | None = None) -> subprocess.CompletedProcess:
    argv = ["crontab", *(["-u", user] if user else []), *args]
    return subprocess.run(argv, input=text, capture_output=True, text=True, timeout=60)


def read_crontab(user: str | None = CRON_USER) -> str:
    proc = crontab("-l", user=user)
    return proc.stdout if proc.returncode == 0 else ""


class Outcome:
    """What a command run in-process gave: exit code, stdout, stderr."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


# --- headless Chromium (tests/report: the HTML report as a browser shows it) ----------------

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"   # screenshots a person can look at

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def chromium(args: list[str], profile: Path) -> str:
    """Run headless Chromium on loopback-free flags; stop exactly its process group on timeout."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}"] + args
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return out


# --- the CLI as a return code, and the agents' files by digest (tests/control) ---------------

def cli_status(argv: list[str]) -> int:
    """The real `fleet` entry point in-process; its exit status (output left to capsys)."""
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def agents_snapshot(state: Path) -> dict[str, str]:
    """sha256 of every file of the agents (backups and stale-lock bookkeeping left out)."""
    return {p.relative_to(state).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((state / "agents").rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


# A small real playbook: a transcript tier, the store's disposable sessions, orphans (tests/control, tests/schedule).
SMALL_PLAYBOOK = """\
[[transcripts.tier]]
over = "4KB"
keep_records = 4

[store]
disposable_after = "24h"

[orphans]
archive_after = "24h"
"""
