"""Shared fixtures: a real-sshd test fleet (see tests/sshfleet.py)."""
from __future__ import annotations

import pytest

from sshfleet import SshFleet


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
