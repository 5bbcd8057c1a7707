"""SSH dropped mid-run: `fleet run` (the real CLI, a subprocess) on two real sshd hosts; while the
agent on one host is in the middle of its writes, that host's sshd process tree (listener,
connection processes and everything they started, the agent too) is SIGKILLed. The host must be
reported failed with an error a person understands, the other host must finish, the exit status
must be 1, and every file on the dropped host must be whole (crashkit.check_whole).

No race decides it: the dropped host's agent freezes itself at write step STOP_AT (its fault hook,
$FLEET_AGENT_FAULT_STOP), the test sees it frozen (state T), kills the tree, and sees every killed
process gone; the step log then holds exactly STOP_AT steps, because a frozen process that was
killed cannot have taken another.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import crashkit as ck
from fleet.demo.gen import TINY_FLEET, generate_host
from fleet.demo.sshd import pid_alive

STOP_AT = 8           # mid-run: the dropped host's agent has backed up and written, and has more to do


def populate(state_dir: Path, index: int) -> None:
    if index == 0:
        ck.build_state(state_dir, scale=3)
    else:
        generate_host(state_dir, TINY_FLEET[0], 1, ck.GEN_NOW_MS)


def test_sshd_killed_mid_run(ssh_fleet, tmp_path):
    fleet_ = ssh_fleet(2, populate=populate, names=["dropped", "steady"])
    dropped = fleet_.host("dropped")
    original = ck.snapshot(dropped.state_dir)
    steps = tmp_path / "steps.log"
    # The dropped host's python logs the agent's write steps and freezes at step STOP_AT (its own
    # fault hook): the plug is pulled while the run is certainly mid-way.
    wrapper = tmp_path / "python-logging-steps"
    wrapper.write_text(f'#!/bin/sh\nFLEET_AGENT_FAULT_LOG={steps} FLEET_AGENT_FAULT_STOP={STOP_AT} exec python3 "$@"\n')
    wrapper.chmod(0o755)
    inventory = fleet_.write_inventory('command_timeout = 120\nconnect_timeout = 10')
    text = inventory.read_text().replace('[hosts.dropped]\n', f'[hosts.dropped]\npython = "{wrapper}"\n')
    inventory.write_text(text)
    playbook = tmp_path / "reliability.toml"
    playbook.write_text(ck.PLAYBOOK)
    env = dict(os.environ, FLEET_STATE_DIR=str(tmp_path / "fleet-state"))
    run = subprocess.Popen([sys.executable, "-m", "fleet", "run", str(playbook), "-i", str(inventory), "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path, text=True)
    try:
        frozen = ck.wait_for(lambda: [p for p in ck.process_tree(dropped.server.pid) if ck.stopped(p)],
                          "the agent never reached its write step %d" % STOP_AT, alive=lambda: run.poll() is None)
        killed = ck.process_tree(dropped.server.pid)
        for pid in killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        ck.wait_for(lambda: not any(pid_alive(p) for p in killed), "a killed process lived on")
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert set(frozen) <= set(killed)
    assert len(killed) >= 3, f"expected listener, connection and agent processes, killed {killed}"
    assert run.returncode == 1, err[-2000:]
    doc = json.loads(out)
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert hosts["steady"]["ok"] and hosts["steady"]["error"] is None
    assert any(f["action"] != "none" for f in hosts["steady"]["files"])
    failed = hosts["dropped"]
    assert failed["ok"] is False
    assert "the connection was lost" in failed["error"], failed["error"]
    assert "timed out" not in failed["error"]
    assert doc["totals"]["hosts_failed"] == 1
    # The agent died with the connection, frozen at STOP_AT: no write step after it.
    assert len(steps.read_text().splitlines()) == STOP_AT
    problems = ck.check_whole(original, dropped.state_dir)
    assert problems == [], "; ".join(problems)
    assert "dropped" in err
