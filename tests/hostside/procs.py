"""Real processes for lock tests: a pid that is alive for the test, and one that is gone."""
import subprocess


def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def start_live_process():
    """A process that stays alive until the caller kills it (`sleep 30`)."""
    return subprocess.Popen(["sleep", "30"])
