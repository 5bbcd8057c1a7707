"""What the schedule tests share: fleet-test's real crontab (a machine-wide lock), the CLI in-process, a private
state folder per test."""
from __future__ import annotations

import fcntl
import shutil
import tempfile
from pathlib import Path

import pytest

from helpers import Outcome, UNRELATED, crontab, read_crontab


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

