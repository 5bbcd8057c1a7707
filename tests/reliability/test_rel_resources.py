"""Resources: backups on a full disk, and slow hosts.

- Full disk: the backup folder is a 2 MB tmpfs (mounted here, we are root; unmounted at teardown
  even on failure). An agent whose backups cannot fit is left exactly as it was and says "no space
  for backup"; the other agent of the host is cleaned as usual. With gzip backups (no estimate
  possible) the backup that hits the full disk fails on its own: that file is untouched, no
  partial copy stays, the rest goes on.
- Slow hosts: behind real sshd, a host whose agent does not finish within its `command_timeout`
  and a host that accepts TCP but never speaks SSH (its `connect_timeout`) are reported with a
  timeout error; the other host finishes; exit 1.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import crashkit as ck
from fleet.demo.gen import KB, MB, HostSpec, generate_host, tiny_agent


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs mounted at tmp_path/backups; unmounted at teardown, also on failure."""
    mount = tmp_path / "backups"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        if os.path.ismount(mount):
            subprocess.run(["umount", "-l", str(mount)], check=False)


def plan(state: Path, backup_dir: Path, gzip: bool = False) -> dict:
    return {
        "protocol": 1, "mode": "run", "run_id": "20261121T070000Z-disk01", "now_ms": ck.GEN_NOW_MS,
        "dry_run": False, "state_dir": str(state), "agents": None,
        "backup": {"dir": str(backup_dir), "gzip": gzip, "keep_runs": None, "max_age_s": None},
        "operations": {
            "transcripts": {"tiers": [{"over_bytes": 8 * KB, "keep_records": 10, "slim": None}]},
            "store": {"prune": {"cron_run": 86400}, "strip_fields": list(ck.STRIP)},
            "orphans": {"archive_after_s": 86400},
        },
    }


def agent_files(state: Path, agent: str) -> dict:
    return {rel: data for rel, data in ck.snapshot(state).items() if rel.startswith(f"agents/{agent}/")}


def parts(root: Path) -> list:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


def test_agent_whose_backups_cannot_fit_is_left_alone(small_disk, tmp_path):
    state = tmp_path / "state"
    generate_host(state, HostSpec("disk", (tiny_agent("big", 3 * MB, 1200), tiny_agent("small"))), 5,
                  ck.GEN_NOW_MS)
    big_before = agent_files(state, "big")
    agent = ck.export(tmp_path)
    done = ck.run_agent(agent, plan(state, small_disk), tmp_path / "plan.json")
    assert done.code == 1, done.stderr[-1000:]
    doc = done.result
    agents = {a["agent"]: a for a in doc["agents"]}
    assert any(e.startswith("no space for backup") for e in agents["big"]["errors"]), agents["big"]["errors"]
    assert agent_files(state, "big") == big_before
    assert all(f["action"] == "none" for f in doc["files"] if f["agent"] == "big")
    assert agents["small"]["errors"] == []
    changed = [f for f in doc["files"] if f["agent"] == "small" and f["action"] != "none"]
    assert {f["action"] for f in changed} >= {"trim", "prune", "archive"}
    for f in changed:
        if f["kind"] == "lock":
            continue  # a dead process's store lock, taken over: no data, no backup
        copy = Path(f["backup"])
        assert copy.is_relative_to(small_disk)
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == f["backup_sha256"] == f["before"]["sha256"]
    assert parts(small_disk) == []


def incompressible_transcript(path: Path, n_lines: int, line_bytes: int) -> None:
    """A schema-3 conversation of random (nearly incompressible) tool output."""
    rng = random.Random(9)
    lines = [{"type": "session", "version": 3, "id": "big-random", "timestamp": "2026-11-14T08:00:00.000Z", "cwd": "/"}]
    parent = None
    for i in range(n_lines):
        role = ("user", "assistant")[i % 2]
        text = base64.b64encode(rng.randbytes(line_bytes)).decode() if role == "assistant" else f"question {i}"
        line_id = f"{i:08x}"
        lines.append({"type": "message", "id": line_id, "parentId": parent, "timestamp": "2026-11-14T08:00:01.000Z",
                      "message": {"role": role, "content": [{"type": "text", "text": text}]}})
        parent = line_id
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_backup_that_hits_a_full_disk_fails_alone(small_disk, tmp_path):
    state = tmp_path / "state"
    generate_host(state, HostSpec("disk", (tiny_agent("main"),)), 5, ck.GEN_NOW_MS)
    sessions = state / "agents" / "main" / "sessions"
    big = sessions / "big-random.jsonl"
    incompressible_transcript(big, 200, 24 * KB)        # ~3.2 MB of base64: gzip keeps 3/4 of it
    store = json.loads((sessions / "sessions.json").read_bytes())
    store["agent:main:telegram:group:big"] = {"sessionId": "big-random", "updatedAt": ck.GEN_NOW_MS}
    (sessions / "sessions.json").write_text(json.dumps(store, indent=2))
    original = big.read_bytes()
    agent = ck.export(tmp_path)
    done = ck.run_agent(agent, plan(state, small_disk, gzip=True), tmp_path / "plan.json")
    assert done.code == 1, done.stderr[-1000:]
    rec = next(f for f in done.result["files"] if f["path"].endswith("big-random.jsonl"))
    assert rec["action"] == "none" and rec["error"].startswith("no space for backup"), rec
    assert big.read_bytes() == original
    assert parts(small_disk) == []
    others = [f for f in done.result["files"] if f["action"] != "none"]
    assert others and all(f["error"] is None for f in others)
    assert not [p for p in sessions.iterdir() if ck.FLEET_TMP_RE.match(p.name)]


class BlackHole:
    """A TCP listener on loopback that accepts connections and never says a word (no SSH banner)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_slow_hosts_time_out_and_the_others_finish(ssh_fleet, tmp_path):
    fleet_ = ssh_fleet(2, names=["quick", "sluggish"],
                       populate=lambda state, i: generate_host(state, HostSpec("h", (tiny_agent("main"),)), 1,
                                                               ck.GEN_NOW_MS))
    ran, pids = tmp_path / "sluggish-agent-started", tmp_path / "sluggish-pids"
    wrapper = tmp_path / "python-after-a-nap"
    wrapper.write_text(f'#!/bin/sh\nsleep 60 &\necho $$ $! > {pids}\nwait $!\ntouch {ran}\nexec python3 "$@"\n')
    wrapper.chmod(0o755)
    hole = BlackHole()
    try:
        inventory = fleet_.write_inventory()
        text = inventory.read_text().replace(
            "[hosts.sluggish]\n", f'[hosts.sluggish]\npython = "{wrapper}"\ncommand_timeout = 3\n')
        text += (f'\n[hosts.silent]\naddress = "127.0.0.1"\nport = {hole.port}\nconnect_timeout = 2\n'
                 f'state_dir = "{tmp_path / "silent-state"}"\n')
        inventory.write_text(text)
        env = dict(os.environ, FLEET_STATE_DIR=str(tmp_path / "fleet-state"))
        done = subprocess.run([sys.executable, "-m", "fleet", "run", "weekly", "-i", str(inventory), "--json"],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    finally:
        hole.close()
        stop_napping(pids, wrapper)
    assert done.returncode == 1, done.stderr[-2000:]
    hosts = {h["host"]: h for h in json.loads(done.stdout)["hosts"]}
    assert hosts["quick"]["ok"] and hosts["quick"]["error"] is None
    assert not hosts["sluggish"]["ok"] and "timed out after 3s" in hosts["sluggish"]["error"], hosts["sluggish"]
    assert not hosts["silent"]["ok"] and "within 2s" in hosts["silent"]["error"], hosts["silent"]
    # fleet did not wait for the sluggish host (its python would have started after 60 s), and
    # its agent never ran, so nothing there changed.
    assert not ran.exists() and not (fleet_.host("sluggish").state_dir / "fleet-backups").exists()


def stop_napping(pids: Path, wrapper: Path) -> None:
    """Kill the sluggish host's wrapper shell and its sleep (ours: checked by command line)."""
    if not pids.exists():
        return
    for pid in (int(p) for p in pids.read_text().split()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if str(wrapper).encode() in cmdline or cmdline.startswith(b"sleep\x0060"):
            os.kill(pid, signal.SIGKILL)
