"""Interrupted runs over real SSH, as an operator meets them: Ctrl-C (SIGINT) and SIGKILL of the
controller, and SIGKILL of the host-side program, each at many points spread over a weekly-like run.

Three hosts per run, each a point: for a signal, wherever each host's agent is when it lands (the
signal is sent once every host has reached a chosen write step, spread over the run); for an
agent kill, each host's agent dies at its own chosen step (its fault hook). Every time: the host
stops within the bound docs/security.md states (once the agent saw the channel close, no file is
started beyond the one in hand; the host lock is free again within a second), the history then
shows exactly the files that changed, and `fleet restore RUN_ID` brings every one back
byte-identical. Half of the points restore from the control host that started the run (after
`fleet history sync`), half from a second control-host folder that never saw the run: it works from
the host's journal alone.

The controller is a real `python -m fleet run` subprocess started with SIGINT at its default
disposition (a background job of a non-interactive shell ignores SIGINT: a Ctrl-C test that
inherits that tests nothing), and the test checks that disposition in /proc before it signals.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import crashkit as ck
from fleet.hostside.journal import JOURNAL_NAME
from fleet.hostside.runlock import LOCK_NAME
from helpers import run_cli


POINTS = 21                  # per kind of interruption: 7 runs x 3 hosts
HOSTS = ("h1", "h2", "h3")
STOP_BOUND_S = 1.0           # from the controller's death to the host lock being free, at most


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """Three real sshd hosts whose pythons log the agent's write steps (crashkit's fault hook)."""
    from sshfleet import SshFleet

    base = tmp_path_factory.mktemp("interrupts")
    fleet_ = SshFleet.start(len(HOSTS), names=list(HOSTS))
    try:
        playbook = base / "weekly-like.toml"
        playbook.write_text(ck.PLAYBOOK)
        for host in fleet_.hosts:
            fresh_state(host.state_dir)
        inventory = write_inventory(fleet_, base, "enum", {})
        # One whole run enumerates the write steps (the agent gets cached on the hosts meanwhile).
        done = subprocess.run(controller_cmd(playbook, inventory), env=controller_env(base / "enum"),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        total = min(step_count(steps_log(base, "enum", h)) for h in HOSTS)
        assert total > 100
        yield {"fleet": fleet_, "playbook": playbook, "total": total, "base": base}
    finally:
        fleet_.close()


def steps_log(base: Path, tag: str, host: str) -> Path:
    return base / f"steps-{tag}-{host}.log"


def write_inventory(fleet_, base: Path, tag: str, fault_at: dict) -> Path:
    """The inventory of this run: each host's python logs its write steps (and dies at fault_at[h])."""
    text = fleet_.write_inventory("command_timeout = 120\nconnect_timeout = 10").read_text()
    for host in HOSTS:
        wrapper = base / f"python-{tag}-{host}"
        fault = f"FLEET_AGENT_FAULT_AT={fault_at[host]} " if host in fault_at else ""
        wrapper.write_text(f'#!/bin/sh\nFLEET_AGENT_FAULT_LOG={steps_log(base, tag, host)} {fault}'
                           f'exec python3 "$@"\n')
        wrapper.chmod(0o755)
        text = text.replace(f"[hosts.{host}]\n", f'[hosts.{host}]\npython = "{wrapper}"\n')
    inventory = base / f"inventory-{tag}.toml"
    inventory.write_text(text)
    return inventory


def fresh_state(state: Path) -> dict:
    shutil.rmtree(state)
    state.mkdir()
    ck.build_state(state)
    return ck.snapshot(state)


def controller_cmd(playbook: Path, inventory: Path) -> list:
    return [sys.executable, "-m", "fleet", "run", str(playbook), "-i", str(inventory), "--json"]


def controller_env(state: Path) -> dict:
    return dict(os.environ, FLEET_STATE_DIR=str(state))


def default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sigint_reaches(pid: int) -> bool:
    """True when the process neither ignores nor blocks SIGINT: a Ctrl-C reaches it."""
    status = Path(f"/proc/{pid}/status").read_text()
    masks = {line.split(":")[0]: int(line.split(":")[1], 16) for line in status.splitlines()
             if line.startswith(("SigIgn", "SigBlk"))}
    return not (masks["SigIgn"] | masks["SigBlk"]) & (1 << (signal.SIGINT - 1))


def step_count(steps: Path) -> int:
    try:
        return len(steps.read_text().splitlines())
    except FileNotFoundError:
        return 0


def lock_free_at(state: Path, limit: float) -> float:
    """time.monotonic() when no live process holds the host's run lock (waits at most `limit` s)."""
    lock = state / LOCK_NAME
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            holder = json.loads(lock.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        pid = holder.get("pid")
        if not pid or not Path(f"/proc/{pid}").exists():
            return time.monotonic()
        time.sleep(0.005)
    raise AssertionError(f"{state}: the host-side program still holds the lock {limit}s later")


def changed_on_disk(original: dict, state: Path) -> set:
    now = ck.snapshot(state)
    return {rel for rel, data in original.items()
            if now.get(rel) != data and not rel.endswith("sessions.json.lock")}


def journal_of(state: Path, run_id: str) -> list:
    path = state / "fleet-backups" / run_id / JOURNAL_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def started_after_stop(events: list) -> int:
    """Files the agent began (a verified backup journaled) after it saw the controller go."""
    end = next((e for e in events if e["e"] == "end"), None)
    if end is None or not end.get("stop_requested_at"):
        return 0
    return sum(1 for e in events if e["e"] == "backup" and e["at"] > end["stop_requested_at"])


def recorded_changes(doc: dict, host: str) -> set:
    return {f["path"] for h in doc["hosts"] if h["host"] == host for f in h["files"]
            if f["action"] not in ("none", "skip") and f["backup"]}


def interrupt_once(rig, kind: str, at_step: int, index: int, capsys, monkeypatch) -> list:
    """One interrupted run on three hosts and its recovery; returns one measurement per host."""
    fleet_, base = rig["fleet"], rig["base"]
    tag = f"{kind}-{index}"
    originals = {h.name: fresh_state(h.state_dir) for h in fleet_.hosts}
    # An agent kill: each host at its own step, spread around at_step.
    fault_at = {h: at_step + 7 * i for i, h in enumerate(HOSTS)} if kind == "kill-agent" else {}
    inventory = write_inventory(fleet_, base, tag, fault_at)
    ctl_a = base / f"ctl-a-{tag}"
    proc = subprocess.Popen(controller_cmd(rig["playbook"], inventory), env=controller_env(ctl_a),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    at_signal, signalled = {}, None
    try:
        if kind != "kill-agent":
            deadline = time.monotonic() + 60
            # Every host's agent is at least at_step into its writes (the first ones further on).
            while min(step_count(steps_log(base, tag, h)) for h in HOSTS) < at_step:
                assert proc.poll() is None, f"the run ended before step {at_step}: {proc.stderr.read()[-1500:]}"
                assert time.monotonic() < deadline, "the agent never got that far"
                time.sleep(0.002)
            assert sigint_reaches(proc.pid), "the controller ignores SIGINT: this Ctrl-C would test nothing"
            at_signal = {h: step_count(steps_log(base, tag, h)) for h in HOSTS}
            signalled = time.monotonic()
            proc.send_signal(signal.SIGINT if kind == "sigint" else signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    gone = max(lock_free_at(h.state_dir, 10) for h in fleet_.hosts)
    if kind == "sigint":
        assert proc.returncode == 130, err[-1500:]
    elif kind == "kill-controller":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 1, err[-1500:]
        assert not any(h["ok"] for h in json.loads(out)["hosts"])
    # A host whose agent had not begun when the signal landed has no run folder.
    run_ids = {p.name for h in fleet_.hosts if (h.state_dir / "fleet-backups").is_dir()
               for p in (h.state_dir / "fleet-backups").iterdir() if p.is_dir()}
    assert len(run_ids) == 1, run_ids
    run_id = run_ids.pop()
    changed = {h.name: changed_on_disk(originals[h.name], h.state_dir) for h in fleet_.hosts}
    points = []
    for h in fleet_.hosts:
        events = journal_of(h.state_dir, run_id)
        points.append({"kind": kind, "host": h.name, "step": at_signal.get(h.name, fault_at.get(h.name)),
                       "changed": len(changed[h.name]), "started_after_stop": started_after_stop(events),
                       "stop_s": None if signalled is None else gone - signalled})

    # Recover: on the same control host through `fleet history sync`, or on a second one that never
    # saw the run (a FLEET_STATE_DIR of its own), straight from the hosts' journals by `fleet restore`.
    second = index % 2 == 1
    monkeypatch.setenv("FLEET_STATE_DIR", str(base / f"ctl-b-{tag}" if second else ctl_a))
    if not second:
        code, _, err = run_cli(["history", "sync", "-i", str(inventory)], capsys)
        assert code == 0, err
    code, out, err = run_cli(["restore", run_id, "-i", str(inventory), "--json"], capsys)
    if not any(changed.values()):
        assert code == 1 and "no backups to restore" in err, (code, err)
        return points
    assert code == 0, f"{tag}: restore exit {code}: {err[-1500:]}"
    code, report, _ = run_cli(["report", run_id, "--format", "json"], capsys)
    assert code == 0
    doc = json.loads(report)
    for h in fleet_.hosts:
        recorded = recorded_changes(doc, h.name)
        assert recorded == changed[h.name], f"{tag} {h.name}: history differs by {sorted(recorded ^ changed[h.name])}"
        now = ck.snapshot(h.state_dir)
        for rel in changed[h.name]:
            assert now.get(rel) == originals[h.name][rel], f"{tag} {h.name}: {rel} not restored byte-identical"
    return points


def spread(rig, count: int, kind: str, low: int = 3) -> list:
    """`count` write steps spread over the run, from its first steps to its last."""
    if kind == "kill-agent":      # each host dies at its own step: at_step, +7, +14
        top = rig["total"] - 7 * (len(HOSTS) - 1) - 1
    else:                         # the slowest host sets the trigger; the others are further on
        top = rig["total"] * 60 // 100
    return [low + (top - low) * i // (count - 1) for i in range(count)]


@pytest.mark.parametrize("kind", ["sigint", "kill-controller", "kill-agent"])
def test_interrupted_anywhere_history_is_exact_and_restore_is_byte_identical(rig, kind, capsys, monkeypatch):
    runs = POINTS // len(HOSTS)
    points = [p for i, at in enumerate(spread(rig, runs, kind)) for p in interrupt_once(rig, kind, at, i, capsys, monkeypatch)]
    assert len(points) >= 20
    assert sum(1 for p in points if p["changed"]) >= len(points) // 2, "too few points interrupted real work"
    for p in points:
        # The agent's own bound: after it saw the channel close, at most the file in hand was begun.
        assert p["started_after_stop"] <= 1, p
        if p["stop_s"] is not None:
            assert p["stop_s"] < STOP_BOUND_S, p
    stops = [p["stop_s"] for p in points if p["stop_s"] is not None]
    with capsys.disabled():
        print(f"\n{kind}: {len(points)} points at steps {sorted(p['step'] for p in points)}; "
              f"changed files {sorted(p['changed'] for p in points)}; "
              + (f"lock free {max(stops) * 1000:.0f} ms after the signal at most; " if stops else "")
              + f"files begun after the stop was seen: {sorted(p['started_after_stop'] for p in points)}")
