"""systemd backend into a tmp unit folder (checked by systemd-analyze), and the overlap lock.

These machines do not run systemd as PID 1, so the units are verified, not started; the run is
started the way the service would start it (its ExecStart= with its Environment=).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fleet.schedule.systemd import exec_quote, service_text, timer_text
from helpers import make_local_fleet


def fleet_cli(args: list[str], state: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleet", *args], capture_output=True, text=True,
                          env={**os.environ, "FLEET_STATE_DIR": str(state), **env}, timeout=240)


def verify(unit_dir: Path, tmp_path: Path, *units: str) -> subprocess.CompletedProcess:
    """`systemd-analyze --user verify`; a private XDG_RUNTIME_DIR lets it start without a session."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(["systemd-analyze", "--user", "verify", "--man=no", *units], cwd=unit_dir,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))


def test_installed_units_verify_and_fire_when_cron_would(tmp_path):
    inventory = make_local_fleet(tmp_path)
    units = tmp_path / "units"
    proc = fleet_cli(["schedule", "install", "weekly", "--playbook", "emergency", "--at", "0 3 * * 0",
                      "-i", str(inventory), "--backend", "systemd", "--unit-dir", str(units), "--no-notify"],
                     tmp_path / "state")
    assert proc.returncode == 0, proc.stderr
    assert "systemctl --user daemon-reload && systemctl --user enable --now fleet-weekly.timer" in proc.stdout
    service = (units / "fleet-weekly.service").read_text()
    timer = (units / "fleet-weekly.timer").read_text()
    assert "OnCalendar=Sun *-*-* 03:00:00\n" in timer and "Persistent=true\n" in timer
    assert f"ExecStart={sys.executable} -m fleet schedule run weekly\n" in service
    assert f'Environment="FLEET_STATE_DIR={tmp_path / "state"}"\n' in service
    assert f"StandardOutput=append:{tmp_path / 'state' / 'logs' / 'weekly.log'}\n" in service

    checked = verify(units, tmp_path, "fleet-weekly.service", "fleet-weekly.timer")
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.strip() == ""

    calendar = subprocess.run(["systemd-analyze", "calendar", "--base-time=2026-11-21 05:00:00", "Sun *-*-* 03:00:00"],
                              capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}, timeout=60)
    assert "Next elapse: Sun 2026-11-22 03:00:00 UTC" in calendar.stdout

    # Run what the service runs, with the service's environment, from another folder.
    argv = shlex.split(re.search(r"^ExecStart=(.*)$", service, re.M).group(1))
    env = dict(re.findall(r'^Environment="([A-Z_]+)=(.*)"$', service, re.M))
    log = tmp_path / "state" / "logs" / "weekly.log"
    with open(log, "ab") as out:
        run = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, cwd="/", timeout=240,
                             env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env})
    assert run.returncode == 0, log.read_text()
    text = log.read_text()
    assert "fleet schedule weekly: started at" in text and "with exit 0" in text

    table = fleet_cli(["schedule", "list"], tmp_path / "state").stdout.splitlines()
    assert table[0].split() == ["name", "playbook", "when", "backend", "installed", "notify", "last", "run",
                                "inventory"]
    assert table[2].split()[:9] == ["weekly", "emergency", "Sun", "*-*-*", "03:00:00", "systemd", "yes", "no",
                                    table[2].split()[8]] and table[2].endswith(f"exit 0  {inventory}")
    listed = json.loads(fleet_cli(["schedule", "list", "--json"], tmp_path / "state").stdout)
    (entry,) = listed["schedules"]
    assert entry["installed"] and entry["last"]["exit_code"] == 0 and entry["unit_dir"] == str(units)

    removed = fleet_cli(["schedule", "remove", "weekly"], tmp_path / "state")
    assert removed.returncode == 0, removed.stderr
    assert sorted(p.name for p in units.iterdir()) == []
    assert json.loads(fleet_cli(["schedule", "list", "--json"], tmp_path / "state").stdout)["schedules"] == []


def test_two_oncalendar_lines_and_a_direct_value_verify(tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    (units / "fleet-x.service").write_text(service_text("x", "fleet 100% $HOME \"quoted\"",
                                                        [sys.executable, "-m", "fleet", "schedule", "run", "x"],
                                                        {"FLEET_STATE_DIR": "/tmp/a b/%h"}, tmp_path / "x.log"))
    (units / "fleet-x.timer").write_text(timer_text("x", ["*-*-13 03:00:00", "Fri *-*-* 03:00:00"]))
    checked = verify(units, tmp_path, "fleet-x.service", "fleet-x.timer")
    assert checked.returncode == 0 and checked.stderr.strip() == "", checked.stderr
    assert exec_quote("a b") == '"a b"' and exec_quote("$HOME%") == '"$$HOME%%"'

    inventory = make_local_fleet(tmp_path / "fleet")
    proc = fleet_cli(["schedule", "install", "daily", "--playbook", "scan", "--at", "*-*-* 04:30",
                      "-i", str(inventory), "--backend", "systemd", "--unit-dir", str(units), "--no-notify"],
                     tmp_path / "state")
    assert proc.returncode == 0, proc.stderr
    assert "OnCalendar=*-*-* 04:30:00\n" in (units / "fleet-daily.timer").read_text()


@pytest.mark.parametrize("at, message", [
    ("0 3 * * 8", "day of week: 8 is outside 0-7"),
    ("Sunday at three", "not a valid OnCalendar= value"),
    ("@reboot", "no calendar time"),
])
def test_a_bad_time_installs_nothing_and_exits_2(tmp_path, at, message):
    inventory = make_local_fleet(tmp_path)
    units = tmp_path / "units"
    proc = fleet_cli(["schedule", "install", "bad", "--playbook", "weekly", "--at", at, "-i", str(inventory),
                      "--backend", "systemd", "--unit-dir", str(units)], tmp_path / "state")
    assert proc.returncode == 2 and message in proc.stderr
    assert not units.exists() and not (tmp_path / "state" / "schedules" / "bad.json").exists()


class Tarpit:
    """A TCP server on 127.0.0.1 that accepts and never answers: an SSH host that hangs."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        if self.listener.fileno() == -1:
            return
        self.listener.shutdown(socket.SHUT_RDWR)   # wakes the blocked accept(); close() alone does not
        self.listener.close()
        self.thread.join(10)
        for conn in self.accepted:
            conn.close()


def test_two_runs_started_together_one_runs_one_exits_3(tmp_path):
    tarpit = Tarpit()
    procs: list[subprocess.Popen] = []
    try:
        inventory = tmp_path / "inventory.toml"
        (tmp_path / "known_hosts").write_text("")
        inventory.write_text(f'[hosts.slow]\naddress = "127.0.0.1"\nport = {tarpit.port}\nconnect_timeout = 120\n'
                             f'known_hosts = "{tmp_path / "known_hosts"}"\n')
        state = tmp_path / "state"
        installed = fleet_cli(["schedule", "install", "night", "--playbook", "scan", "--at", "0 2 * * *",
                               "-i", str(inventory), "--backend", "systemd", "--unit-dir", str(tmp_path / "u"),
                               "--no-notify"], state)
        assert installed.returncode == 0, installed.stderr
        env = {**os.environ, "FLEET_STATE_DIR": str(state)}
        procs = [subprocess.Popen([sys.executable, "-m", "fleet", "schedule", "run", "night"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        deadline = time.monotonic() + 100
        while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        first = next(p for p in procs if p.poll() is not None)
        other = next(p for p in procs if p is not first)
        out, err = first.communicate()
        assert first.returncode == 3, err
        assert "fleet schedule night: skipped at" in err and "is still going; nothing was run" in err
        assert other.poll() is None          # the winner is still talking to the hanging host
        tarpit.close()                       # let it fail fast now
        other.communicate(timeout=120)
        assert other.returncode == 1         # its one host failed: a real run, not a skip
        last = json.loads((state / "schedules" / "night.last.json").read_text())
        assert last["exit_code"] == 1 and not last["skipped"]   # the skip did not overwrite the run's status
    finally:
        tarpit.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    from fleet.report.history import list_runs, load_run

    kinds = sorted(r["kind"] for r in list_runs())
    assert kinds == ["scan", "skipped"]
    skipped = next(r for r in list_runs() if r["kind"] == "skipped")
    assert load_run(skipped["run_id"]).extra["schedule"] == "night" and skipped["playbook"] == "scan"
    assert "still going" in load_run(skipped["run_id"]).extra["reason"]


def test_sigterm_stops_the_run_like_ctrl_c_and_frees_the_lock(tmp_path):
    from fleet.schedule.run import ScheduleLock

    tarpit = Tarpit()
    proc = None
    try:
        inventory = tmp_path / "inventory.toml"
        (tmp_path / "known_hosts").write_text("")
        inventory.write_text(f'[hosts.slow]\naddress = "127.0.0.1"\nport = {tarpit.port}\nconnect_timeout = 120\n'
                             f'known_hosts = "{tmp_path / "known_hosts"}"\n')
        state = tmp_path / "state"
        assert fleet_cli(["schedule", "install", "night", "--playbook", "scan", "--at", "0 2 * * *", "-i",
                          str(inventory), "--backend", "systemd", "--unit-dir", str(tmp_path / "u"), "--no-notify"],
                         state).returncode == 0
        proc = subprocess.Popen([sys.executable, "-m", "fleet", "schedule", "run", "night"], text=True,
                                env={**os.environ, "FLEET_STATE_DIR": str(state)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 100
        while not tarpit.accepted and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tarpit.accepted, proc.communicate()
        proc.terminate()                      # what `systemctl stop` sends
        tarpit.close()                        # the host's thread would otherwise wait for its timeout
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "fleet schedule night: finished at" in out and "with exit 130" in out
        last = json.loads((state / "schedules" / "night.last.json").read_text())
        assert last["exit_code"] == 130 and last["finished_at"]
        lock = ScheduleLock(state / "locks" / "night.lock")
        assert lock.acquire()
        lock.release()
    finally:
        tarpit.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def test_reinstalling_into_another_unit_dir_moves_the_units(tmp_path):
    inventory = make_local_fleet(tmp_path)
    first, second = tmp_path / "u1", tmp_path / "u2"
    for units in (first, second):
        proc = fleet_cli(["schedule", "install", "w", "--playbook", "scan", "--at", "@daily", "-i", str(inventory),
                          "--backend", "systemd", "--unit-dir", str(units), "--no-notify"], tmp_path / "state")
        assert proc.returncode == 0, proc.stderr
    assert list(first.iterdir()) == []
    assert sorted(p.name for p in second.iterdir()) == ["fleet-w.service", "fleet-w.timer"]
    assert f"deleted {first / 'fleet-w.timer'}" in proc.stdout


def test_install_checks_fleet_toml_and_says_where_the_token_must_go(tmp_path):
    inventory = make_local_fleet(tmp_path)
    units = tmp_path / "units"
    args = ["schedule", "install", "w", "--playbook", "scan", "--at", "@daily", "-i", str(inventory),
            "--backend", "systemd", "--unit-dir", str(units)]
    (tmp_path / "fleet.toml").write_text('[notify.telegram]\nchat_id = 1\ntoken = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"\n')
    proc = fleet_cli(args, tmp_path / "state")
    assert proc.returncode == 2 and "notify.telegram.token: unknown key; secrets do not belong" in proc.stderr
    assert "AAHdqTcv" not in proc.stderr and not units.exists()

    (tmp_path / "fleet.toml").write_text("[notify.telegram]\nchat_id = 1\n")
    proc = fleet_cli(args, tmp_path / "state", FLEET_TELEGRAM_TOKEN="set-in-my-shell-only")
    assert proc.returncode == 0, proc.stderr
    assert (f"note: cron and systemd do not see your shell's FLEET_TELEGRAM_TOKEN; put `FLEET_TELEGRAM_TOKEN=…` "
            f"in {tmp_path / 'state' / 'schedule.env'} (mode 0600)") in proc.stdout
