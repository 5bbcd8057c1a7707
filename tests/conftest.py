"""Shared fixtures: every test's own control-host folder, and a real-sshd test fleet (tests/sshfleet.py)."""
from __future__ import annotations

import pytest

from sshfleet import SshFleet


@pytest.fixture(autouse=True)
def control_dir(tmp_path, monkeypatch):
    """The control host's folder (fleet.home) of this test: history, schedules, retry lists and
    logs land here, never in the real ~/.local/state/fleet."""
    path = tmp_path / "fleet-state"
    monkeypatch.setenv("FLEET_STATE_DIR", str(path))
    return path


@pytest.fixture
def ssh_fleet():
    """Factory: `fleet = ssh_fleet(3, user="root", populate=lambda state_dir, i: ...)`.

    Every sshd it started is stopped by pid at teardown, also when the test failed.
    Keyword arguments: user ("root" or "fleet-test"), populate, log_level ("VERBOSE"/"DEBUG"), names.
    """
    started = []

    def factory(n: int = 1, **kwargs) -> SshFleet:
        fleet = SshFleet.start(n, **kwargs)
        started.append(fleet)
        return fleet

    yield factory
    for fleet in started:
        fleet.close()
