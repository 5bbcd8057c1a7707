"""The parallel runner against real sshd: order, independence, one retry for dropped handshakes
(never for auth failures), Ctrl-C, and the open-file bound on --forks."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import fleet.control.runner
import fleet.demo.sshd
from fleet.config.inventory import load_inventory
from fleet.control.plan import build_plan, new_run_id
from fleet.control.runner import default_forks, run_one, run_plans
from fleet.control.transport import CancelToken

from helpers import ECHO_AGENT, make_bundle


NOW_MS = 1763700000000


def scan_plan(host):
    return build_plan(host, "scan", new_run_id(), NOW_MS)


def small_state(state_dir: Path, index: int) -> None:
    sessions = state_dir / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    sid = f"00000000-0000-4000-8000-00000000000{index}"
    header = {"type": "session", "version": 3, "id": sid, "timestamp": "2026-11-14T08:00:00.000Z", "cwd": "/"}
    (sessions / f"{sid}.jsonl").write_text(json.dumps(header) + "\n")
    (sessions / "sessions.json").write_text(json.dumps(
        {"agent:main:main": {"sessionId": sid, "updatedAt": NOW_MS}}, indent=2))


class FlakyFront:
    """A TCP front for one sshd: drops the first `drop` connections at once (as sshd's MaxStartups
    does under a burst), then relays bytes both ways. Counts the connections it saw."""

    def __init__(self, target_port: int, drop: int = 1):
        self.target_port, self.drop, self.seen = target_port, drop, 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.seen += 1
            if self.seen <= self.drop:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


def test_results_come_back_in_inventory_order_and_a_dead_host_stops_nobody(ssh_fleet):
    fleet_ = ssh_fleet(4, populate=small_state)
    fleet_.stop("host2")
    hosts = list(load_inventory(fleet_.inventory).hosts.values())
    seen = []
    results = run_plans(hosts, scan_plan, forks=2, progress=lambda h, s, d: seen.append((h, s)))
    assert [r.host for r in results] == ["host1", "host2", "host3", "host4"]
    assert [r.ok for r in results] == [True, False, True, True]
    assert "connection refused" in results[1].error
    assert all(r.files for r in results if r.ok)
    assert ("host2", "failed") in seen and ("host4", "ok") in seen and ("host1", "running") in seen


def test_a_plan_that_cannot_be_built_fails_only_its_host(ssh_fleet):
    fleet_ = ssh_fleet(2, populate=small_state)
    hosts = list(load_inventory(fleet_.inventory).hosts.values())

    def plan_for(host):
        if host.name == "host1":
            raise ValueError("no playbook for this host")
        return scan_plan(host)

    first, second = run_plans(hosts, plan_for)
    assert not first.ok and "cannot build the plan: no playbook for this host" in first.error
    assert second.ok


def test_a_dropped_handshake_is_retried_once(ssh_fleet, tmp_path, capsys):
    fleet_ = ssh_fleet(1, populate=small_state)
    real = load_inventory(fleet_.inventory).hosts["host1"]
    front = FlakyFront(real.port, drop=1)
    try:
        known = tmp_path / "known_hosts"
        fleet.demo.sshd.write_known_hosts(known, [("127.0.0.1", front.port, fleet_.hosts[0].server.host_public_key_line())])
        host = dataclasses.replace(real, port=front.port, known_hosts=str(known))
        bundle, digest = make_bundle(ECHO_AGENT)
        states = []
        result = run_one(host, {"protocol": 1}, accept_new_host_keys=False, cancel=CancelToken(),
                         progress=lambda h, s, d: states.append((s, d)), bundle=bundle, digest=digest)
        assert result.ok, result.error
        assert front.seen == 2
        retry = [d for s, d in states if s == "retrying"]
        assert len(retry) == 1 and "host1" in retry[0] and "dropped before the SSH banner" in retry[0]
        assert "Traceback" not in capsys.readouterr().err     # paramiko's own log stays quiet
    finally:
        front.close()


def test_twice_dropped_handshake_fails_after_exactly_one_retry(ssh_fleet, tmp_path):
    fleet_ = ssh_fleet(1)
    real = load_inventory(fleet_.inventory).hosts["host1"]
    front = FlakyFront(real.port, drop=5)
    try:
        host = dataclasses.replace(real, port=front.port)
        result = run_one(host, {"protocol": 1}, accept_new_host_keys=False, cancel=CancelToken())
        assert not result.ok and "host1" in result.error
        assert front.seen == 2
    finally:
        front.close()


def test_authentication_failures_are_not_retried(ssh_fleet, tmp_path):
    fleet_ = ssh_fleet(1)
    real = load_inventory(fleet_.inventory).hosts["host1"]
    front = FlakyFront(real.port, drop=0)
    try:
        known = tmp_path / "known_hosts"
        fleet.demo.sshd.write_known_hosts(known, [("127.0.0.1", front.port, fleet_.hosts[0].server.host_public_key_line())])
        stranger = fleet.demo.sshd.make_keypair(tmp_path / "stranger")
        host = dataclasses.replace(real, port=front.port, known_hosts=str(known), identity_files=(str(stranger),))
        result = run_one(host, {"protocol": 1}, accept_new_host_keys=False, cancel=CancelToken())
        assert "authentication failed" in result.error
        assert front.seen == 1
    finally:
        front.close()


SLOW_AGENT_WITH_MARKER = """\
import json, sys, time
plan = json.load(sys.stdin)
open(plan["marker"], "w").close()
for _ in range(600):
    sys.stderr.write(".")
    sys.stderr.flush()
    time.sleep(0.1)
"""


def interrupt_when(marker: Path) -> threading.Thread:
    """Send this process a real SIGINT (Ctrl-C) once `marker` exists (the agent is running)."""
    def watch():
        for _ in range(600):
            if marker.exists():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_interrupts_running_and_waiting_hosts(ssh_fleet, tmp_path, monkeypatch):
    assert threading.current_thread() is threading.main_thread()
    bundle, digest = make_bundle(SLOW_AGENT_WITH_MARKER)
    monkeypatch.setattr(fleet.control.runner, "agent_bundle", lambda: bundle)
    monkeypatch.setattr(fleet.control.runner, "agent_digest", lambda: digest)
    fleet_ = ssh_fleet(3)
    hosts = list(load_inventory(fleet_.inventory).hosts.values())
    marker = tmp_path / "agent-started"
    interrupt_when(marker)
    results = run_plans(hosts, lambda h: {"marker": str(marker)}, forks=1)
    assert [(r.host, r.interrupted, r.error) for r in results] == [
        ("host1", True, "interrupted"), ("host2", True, "interrupted"), ("host3", True, "interrupted")]


def test_forks_default_to_the_host_count_up_to_fifty():
    assert default_forks(3) == 3
    assert default_forks(500) == 50
    assert default_forks(500, requested=120) == 120


def test_forks_never_exceed_what_the_open_file_limit_allows():
    code = ("import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256));"
            "from fleet.control.runner import default_forks; print(default_forks(500), default_forks(500, 10))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == [str((256 - fleet.control.runner.FDS_RESERVED) // fleet.control.runner.FDS_PER_HOST), "10"]


def test_run_ids_are_utc_time_plus_random_hex():
    from datetime import datetime, timezone

    moment = datetime(2026, 11, 21, 10, 15, 0, tzinfo=timezone.utc)
    first, second = new_run_id(moment), new_run_id(moment)
    assert first.startswith("20261121T101500Z-") and len(first) == len("20261121T101500Z-3fa2c1")
    assert first != second


def test_plans_carry_the_hosts_state_dir_agents_and_the_playbooks_sections(tmp_path):
    from fleet.config.playbook import load_playbook

    inventory = tmp_path / "inventory.toml"
    inventory.write_text('[hosts.t440]\nstate_dir = "~/.openclaw-work"\nagents = ["main", "ops"]\n')
    host = load_inventory(inventory).hosts["t440"]
    book = load_playbook("weekly")
    plan = build_plan(host, "run", "20261121T101500Z-3fa2c1", NOW_MS, dry_run=True, playbook=book)
    assert plan["protocol"] == 1 and plan["mode"] == "run" and plan["dry_run"] is True
    assert (plan["state_dir"], plan["agents"], plan["now_ms"]) == ("~/.openclaw-work", ["main", "ops"], NOW_MS)
    assert plan["operations"] == book.operations and plan["operations"]["transcripts"]["tiers"]
    assert plan["backup"]["keep_runs"] == book.backup["keep_runs"]
    scan = build_plan(host, "scan", "r1", NOW_MS)
    assert scan["operations"] == {} and scan["restore"] is None
    with pytest.raises(ValueError):
        build_plan(host, "run", "r1", NOW_MS)
