import pytest

from procs import start_live_process


@pytest.fixture
def live_pid():
    """The pid of a real live process, killed (by that pid) when the test ends."""
    proc = start_live_process()
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
