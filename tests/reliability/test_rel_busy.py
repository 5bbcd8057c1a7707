"""One changing run per host, decided on the host: two real `fleet` processes (two control hosts:
each its own FLEET_STATE_DIR) against the same real sshd hosts, the second started while the first
certainly holds them. One works, the other is told "busy: run R from USER@HOST since T" for every
host, exits 3 and writes nothing: no file errors anywhere. The same for a `fleet restore` started
during a run.

No clock decides the overlap: the first run's agents freeze themselves mid-run (the fault hook,
FLEET_AGENT_FAULT_STOP, set by the hosts' python wrapper), the second command starts 0.2 s after
the test has seen every one of them frozen, and the first goes on (SIGCONT) once the second has
finished.
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

PLAYBOOK = """\
[backup]
keep_runs = 5

[[transcripts.tier]]
over = "6KB"
keep_records = 4

[store]
disposable_after = "24h"

[orphans]
archive_after = "24h"
"""


@pytest.fixture(scope="module")
def populate(tmp_path_factory):
    """Each host gets a copy of one state big enough that a run holds its host for a second or
    more (the second command starts 0.2 s after the first); built once, copied with its mtimes."""
    template = ck.build_state(tmp_path_factory.mktemp("busy-template") / "state", scale=4)

    def copy(state_dir: Path, index: int) -> None:
        shutil.copytree(template, state_dir, dirs_exist_ok=True)

    return copy


def start(args: list, inventory: Path, control_host: Path) -> subprocess.Popen:
    env = dict(os.environ, FLEET_STATE_DIR=str(control_host))
    return subprocess.Popen([sys.executable, "-m", "fleet"] + args + ["-i", str(inventory), "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def freezing(inventory: Path, tmp_path: Path, hosts: list, step: int = 4) -> Path:
    """A copy of `inventory` whose hosts run the agent through a python that freezes it at its
    write step `step` (it has taken the host's run lock and started changing files)."""
    wrapper = tmp_path / "python-freezes"
    wrapper.write_text(f'#!/bin/sh\nFLEET_AGENT_FAULT_STOP={step} exec python3 "$@"\n')
    wrapper.chmod(0o755)
    text = inventory.read_text()
    for name in hosts:
        text = text.replace(f"[hosts.{name}]\n", f'[hosts.{name}]\npython = "{wrapper}"\n')
    frozen = tmp_path / "freezing.toml"
    frozen.write_text(text)
    return frozen


def overlapping(first: subprocess.Popen, servers: list, then) -> tuple:
    """Wait until the agent under every sshd in `servers` is frozen, start the second command
    (`then()`) 0.2 s later and let it finish, then let the first go on: (first's, second's)."""
    frozen = []
    for server in servers:
        frozen += ck.wait_for(lambda s=server: [p for p in ck.process_tree(s.pid) if ck.stopped(p)],
                              "an agent of the first command never froze", alive=lambda: first.poll() is None)
    time.sleep(0.2)     # "started 0.2 s apart", counted from a moment the first surely holds the hosts
    second = finish(then())
    for pid in frozen:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    return finish(first), second


def finish(proc: subprocess.Popen) -> tuple:
    out, err = proc.communicate(timeout=180)
    return proc.returncode, json.loads(out) if out.strip() else None, err


def file_errors(doc: dict) -> list:
    return [(h["host"], f["path"], f["error"]) for h in doc["hosts"] for f in h["files"] if f["error"]]


def check_one_worked_one_busy(a: tuple, b: tuple, hosts: list) -> dict:
    """Per host: one of the two commands worked there, the other was told it is busy with that one.
    Returns {host: the doc that worked there}. (Two runs may split the hosts between them.)"""
    assert a[0] in (0, 3) and b[0] in (0, 3) and 3 in (a[0], b[0]), \
        f"exit codes {a[0]}, {b[0]}: {a[2][-800:]} / {b[2][-800:]}"
    assert file_errors(a[1]) == [] and file_errors(b[1]) == []
    worked = {}
    for name in hosts:
        ha = next(h for h in a[1]["hosts"] if h["host"] == name)
        hb = next(h for h in b[1]["hosts"] if h["host"] == name)
        assert [ha.get("skipped"), hb.get("skipped")].count("busy") == 1, (ha, hb)
        (good, good_doc), (busy, busy_err) = (((ha, a[1]), (hb, b[2])) if hb.get("skipped")
                                              else ((hb, b[1]), (ha, a[2])))
        assert good["ok"] and good["error"] is None
        assert good["elapsed_s"] > 0.4, "the run was too short to overlap: the test would prove nothing"
        assert busy["ok"] is False and busy["files"] == []
        assert busy["error"].startswith(f"busy: run {good_doc['run_id']} from "), busy["error"]
        assert " since 20" in busy["error"]
        assert f"{name}: skipped, nothing was" in busy_err
        worked[name] = good_doc
    return worked


def test_two_runs_0_2s_apart_one_works_the_other_is_busy(ssh_fleet, populate, tmp_path):
    fleet_ = ssh_fleet(2, populate=populate, names=["a", "b"])
    inventory = fleet_.write_inventory("command_timeout = 120")
    playbook = tmp_path / "weekly.toml"
    playbook.write_text(PLAYBOOK)
    first = start(["run", str(playbook)], freezing(inventory, tmp_path, ["a", "b"]), tmp_path / "laptop")
    ran, second = overlapping(first, [h.server for h in fleet_.hosts],
                              lambda: start(["run", str(playbook)], inventory, tmp_path / "control-host"))
    worked = check_one_worked_one_busy(ran, second, ["a", "b"])
    for host in fleet_.hosts:
        doc = worked[host.name]
        assert doc["run_id"] == ran[1]["run_id"], "the frozen first run holds both hosts"
        assert any(f["action"] != "none" for h in doc["hosts"] if h["host"] == host.name for f in h["files"])
        # The busy run wrote nothing there: the only run folder is the one that worked.
        runs = sorted(p.name for p in (host.state_dir / "fleet-backups").iterdir() if p.is_dir())
        assert runs == [doc["run_id"]]


def test_a_restore_started_during_a_run_is_busy_or_the_run_is(ssh_fleet, populate, tmp_path):
    fleet_ = ssh_fleet(1, populate=populate, names=["a"])
    inventory = fleet_.write_inventory("command_timeout = 120")
    playbook = tmp_path / "weekly.toml"
    playbook.write_text(PLAYBOOK)
    laptop = tmp_path / "laptop"
    # The first run cleans agent "main" only; the second has the other agents' work to do while
    # the restore of the first comes in.
    only_main = tmp_path / "only-main.toml"
    only_main.write_text(inventory.read_text().replace("[hosts.a]\n", '[hosts.a]\nagents = ["main"]\n'))
    code, first, err = finish(start(["run", str(playbook)], only_main, laptop))
    assert code == 0, err[-1500:]
    assert any(f["backup"] for h in first["hosts"] for f in h["files"])
    run = start(["run", str(playbook)], freezing(inventory, tmp_path, ["a"]), laptop)
    ran, restored = overlapping(run, [fleet_.hosts[0].server],
                                lambda: start(["restore", first["run_id"]], inventory, laptop))
    worked = check_one_worked_one_busy(ran, restored, ["a"])
    assert worked["a"]["kind"] == "run" and restored[0] == 3
