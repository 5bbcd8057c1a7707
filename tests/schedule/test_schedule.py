"""Cron backend into the REAL crontab of the unprivileged user `fleet-test`, run as cron would.

Root's own crontab is never written: every crontab change goes through FLEET_CRONTAB_USER
(`crontab -u fleet-test`), and the test checks root's crontab is unchanged afterwards. The
entry's command is run by `sh -c` with cron's PATH, as root, because the test venv's Python lives
under /root and fleet-test cannot execute it; what is checked is that the line alone (absolute
paths, FLEET_STATE_DIR, the log redirect) is enough to run the schedule.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fleet.schedule import cron as schedule_cron
from fleet.schedule.schedules import check_name
from fleet.schedule.run import ScheduleLock, load_env_file, rotate_log
from helpers import TOKEN, RecordingServer, make_local_fleet

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


@pytest.fixture
def test_users_crontab():
    """fleet-test's crontab, with unrelated lines in it; restored afterwards.

    The crontab is one file for the whole machine, so its lock is machine-wide too (in the temp
    folder, not a test's): xdist workers and concurrent pytest sessions take turns.
    """
    if shutil.which("crontab") is None:
        pytest.fail("the cron package is missing: run scripts/setup.sh test")
    # Closing the file is what releases the lock, so everything after the open is inside the try:
    # a failure here must not leave the other workers waiting for a lock nobody will give back.
    lock_file = open(Path(tempfile.gettempdir()) / "fleet-test-crontab.lock", "w")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        before_root = read_crontab(user=None)
        saved = read_crontab()
        try:
            assert crontab("-", text=UNRELATED).returncode == 0
            yield
        finally:
            if saved:
                crontab("-", text=saved)
            else:
                crontab("-r")
            assert read_crontab(user=None) == before_root, "root's own crontab changed"
    finally:
        lock_file.close()


class Outcome:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def fleet_cli(capsys, monkeypatch):
    """The real CLI in this process (its one error boundary included): exit code, stdout, stderr."""
    from fleet.cli import main

    def call(args: list[str], state: Path, **env: str) -> Outcome:
        monkeypatch.setenv("FLEET_STATE_DIR", str(state))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(args)
        out, err = capsys.readouterr()
        for key in env:
            monkeypatch.delenv(key)
        return Outcome(info.value.code, out, err)

    return call


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))


def test_install_run_remove_in_a_real_crontab(tmp_path, test_users_crontab, fleet_cli):
    telegram = RecordingServer()
    try:
        inventory = make_local_fleet(tmp_path)
        (tmp_path / "fleet.toml").write_text(f'[notify.telegram]\nchat_id = 42\nbase_url = "{telegram.url}"\n')
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        env_file = state / "schedule.env"
        env_file.write_text(f"# secrets for scheduled runs\nFLEET_TELEGRAM_TOKEN={TOKEN}\n")
        env_file.chmod(0o600)

        install = ["schedule", "install", "nightly", "--playbook", "emergency", "--at", "30 2 * * *",
                   "-i", str(inventory), "--backend", "cron"]
        proc = fleet_cli(install, state, FLEET_CRONTAB_USER=CRON_USER)
        assert proc.returncode == 0, proc.stderr
        assert f"added the line marked # fleet:nightly in the crontab of {CRON_USER}" in proc.stdout

        text = read_crontab()
        assert text.startswith(UNRELATED)                     # every other byte as it was
        (line,) = text[len(UNRELATED):].splitlines()
        assert schedule_cron.fleet_entries(text) == {"nightly": line}
        log = state / "logs" / "nightly.log"
        assert line == (f"30 2 * * * FLEET_STATE_DIR={state} {sys.executable} -m fleet schedule run nightly "
                        f">>{log} 2>&1 # fleet:nightly")

        # Installing again replaces the line in place; nothing else moves.
        assert fleet_cli(install, state, FLEET_CRONTAB_USER=CRON_USER).returncode == 0
        assert read_crontab() == text

        # What cron runs: the command part, by sh, with cron's PATH and nothing of ours inherited.
        command = schedule_cron.command_of(line)
        run = subprocess.run(["sh", "-c", command], cwd="/", capture_output=True, text=True, timeout=240,
                             env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh",
                                  "LOGNAME": CRON_USER})
        assert run.returncode == 0 and run.stdout == "" and run.stderr == "", log.read_text()
        logged = log.read_text()
        assert "fleet schedule nightly: started at" in logged and "finished at" in logged and "with exit 0" in logged

        from fleet.report.history import list_runs, load_run

        (recorded,) = list_runs()
        assert recorded["kind"] == "run" and recorded["playbook"] == "emergency" and recorded["ok"]
        result = load_run(recorded["run_id"])
        assert result.totals()["freed_bytes"] > 0
        (sent,) = telegram.received                           # the token came from schedule.env
        assert sent["path"] == f"/bot{TOKEN}/sendMessage"
        assert sent["json"]["text"].startswith(f"fleet run {recorded['run_id']}: emergency — ok")
        assert TOKEN not in logged

        listed = json.loads(fleet_cli(["schedule", "list", "--json"], state).stdout)["schedules"]
        assert [(s["name"], s["installed"], s["crontab_user"], s["last"]["exit_code"]) for s in listed] == [
            ("nightly", True, CRON_USER, 0)]
        assert listed[0]["inventory"] == str(inventory) and listed[0]["playbook"].endswith("/emergency.toml")
        assert Path(listed[0]["playbook"]).is_absolute()

        removed = fleet_cli(["schedule", "remove", "nightly"], state)
        assert removed.returncode == 0, removed.stderr
        assert read_crontab() == UNRELATED
        assert not (state / "schedules" / "nightly.json").exists() and log.exists()
    finally:
        telegram.close()


def test_the_crontab_text_edits_touch_only_fleets_lines():
    odd = "no final newline here"
    text = with_line = schedule_cron.with_entry(odd, "a", "0 3 * * * x # fleet:a")
    assert with_line == odd + "\n0 3 * * * x # fleet:a\n"
    text = schedule_cron.with_entry(text, "b", "0 4 * * * y # fleet:b")
    text = schedule_cron.with_entry(text, "a", "5 3 * * * z # fleet:a")
    assert text == odd + "\n5 3 * * * z # fleet:a\n0 4 * * * y # fleet:b\n"
    assert schedule_cron.without_entry(text, "a") == (odd + "\n0 4 * * * y # fleet:b\n", 1)
    crlf = "1 1 * * * a\r\n# fleet:a\r\n"
    assert schedule_cron.without_entry(crlf, "a") == (crlf, 0)
    assert schedule_cron.marked_name("# 0 3 * * * x # fleet:a") is None
    assert schedule_cron.command_of("@daily  run this # fleet:d") == "run this # fleet:d"


def test_a_crontab_line_cannot_carry_percent_signs(tmp_path):
    with pytest.raises(Exception, match="contains % or a line break"):
        schedule_cron.entry_command(["/x/python", "-m", "fleet"], {"FLEET_STATE_DIR": "/tmp/100%"}, tmp_path / "l")


def test_names_are_safe_and_bad_input_exits_2_before_touching_anything(tmp_path, fleet_cli):
    for bad in ("Weekly", "../x", "a b", "-x", ""):
        with pytest.raises(Exception, match="schedule name"):
            check_name(bad)
    inventory = make_local_fleet(tmp_path)
    state = tmp_path / "state"
    cases = [
        (["--playbook", "emergency", "--at", "Sun *-*-* 03:00"], "the cron backend needs a cron expression"),
        (["--playbook", "no-such-book", "--at", "0 3 * * 0"], 'no playbook "no-such-book"'),
        (["--playbook", "emergency", "--at", "0 3 * * 0", "--limit", "nosuchhost"], "nosuchhost"),
    ]
    for extra, message in cases:
        proc = fleet_cli(["schedule", "install", "x", "-i", str(inventory), "--backend", "cron", *extra], state,
                         FLEET_CRONTAB_USER=CRON_USER)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (state / "schedules").exists()
    proc = fleet_cli(["schedule", "run", "x"], state)
    assert proc.returncode == 2 and "no schedule named 'x'" in proc.stderr


def test_the_env_file_is_read_only_when_private(tmp_path, monkeypatch):
    env_file = tmp_path / "schedule.env"
    env_file.write_text("export A_FROM_FILE='one'\nB_FROM_FILE=two\nnot a pair\n")
    env_file.chmod(0o644)
    for key in ("A_FROM_FILE", "B_FROM_FILE"):
        # Set first, so monkeypatch remembers them as absent and removes what load_env_file sets.
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    assert "chmod 600" in load_env_file(env_file)[0] and "A_FROM_FILE" not in os.environ
    env_file.chmod(0o600)
    assert load_env_file(env_file) == [f"{env_file}:3: expected KEY=VALUE"]
    assert os.environ["A_FROM_FILE"] == "one" and os.environ["B_FROM_FILE"] == "two"


def test_the_lock_is_exclusive_and_names_its_holder(tmp_path):
    first, second = ScheduleLock(tmp_path / "l.lock"), ScheduleLock(tmp_path / "l.lock")
    assert first.acquire()
    assert not second.acquire() and second.holder()["pid"] == os.getpid()
    first.release()
    assert second.acquire()
    second.release()


def test_a_big_log_moves_aside_while_the_appending_writer_keeps_writing(tmp_path):
    log = tmp_path / "nightly.log"
    writer = open(log, "ab")                     # what `>>log` gives cron's shell
    writer.write(b"old line\n" * 200)
    writer.flush()
    assert not rotate_log(log, max_bytes=10_000)
    assert rotate_log(log, max_bytes=1000)
    writer.write(b"new line\n")
    writer.close()
    assert log.read_bytes() == b"new line\n"
    assert (tmp_path / "nightly.log.1").read_bytes() == b"old line\n" * 200


def test_removing_an_unknown_schedule_exits_2_and_auto_follows_pid_1(tmp_path, fleet_cli):
    proc = fleet_cli(["schedule", "remove", "ghost", "--unit-dir", str(tmp_path / "u")], tmp_path / "state",
                     FLEET_CRONTAB_USER=CRON_USER)
    assert proc.returncode == 2 and "no schedule named 'ghost'" in proc.stderr
    from fleet.schedule.schedules import _pick_backend

    pid1 = Path("/proc/1/comm").read_text().strip()
    assert _pick_backend("auto") == ("systemd" if pid1 == "systemd" else "cron")
