"""Genuine *aged* OpenClaw data: disposable sessions written by real OpenClaw 13 days ago.

OpenClaw's own cleanup judges age by its own clock, so a store whose cron runs are minutes old
proves nothing about a 24 h policy. Here the turns of the disposable kinds (a cron run, a
subagent) and of a protected topic run under OpenClaw with its clock set 13 days back
(`clock_shift.cjs`, loaded with `node --require`: `Date` and `Date.now` move, nothing else), then
a heartbeat turn and MAIN turns of the main session at today's time. Everything in the database is written by
OpenClaw itself; the mock model answers as in genuine.py.

Cached per version and main-turn count on disk like genuine.py (`aged-<version>-<turns>-<digest>`).
"""
import fcntl
import hashlib
import os
import shutil
import time
from pathlib import Path

import genuine
from genuine import CACHE, CRON_RUN_KEY, HEARTBEAT_KEY, MAIN_KEY, SUBAGENT_KEY, TOPIC_KEY, OpenClaw
from mock_model import MockModel

HERE = Path(__file__).resolve().parent
CLOCK_SHIFT = HERE / "clock_shift.cjs"
AGE_MS = 13 * 86400 * 1000
AGED_KEYS = (CRON_RUN_KEY, SUBAGENT_KEY, TOPIC_KEY)
DISPOSABLE_KEYS = (CRON_RUN_KEY, SUBAGENT_KEY)
# A heartbeat session is live infrastructure: it is written at today's time, as a running gateway's
# would be, and the shipped playbooks keep heartbeats unless one opts in to pruning them.
KEPT_KEYS = (MAIN_KEY, TOPIC_KEY, HEARTBEAT_KEY)
AGED_MESSAGES = {CRON_RUN_KEY: "cron job1 run: run a command", SUBAGENT_KEY: "subagent task: summarize",
                 HEARTBEAT_KEY: "heartbeat check", TOPIC_KEY: "topic 7: hello group"}


class ShiftedOpenClaw(OpenClaw):
    """OpenClaw whose clock runs `shift_ms` away from the real one."""

    def __init__(self, node, pkg, state, shift_ms):
        super().__init__(node, pkg, state)
        self.shift_ms = int(shift_ms)

    @property
    def command(self):
        return [self.node, "--require", str(CLOCK_SHIFT), str(self.pkg / "openclaw.mjs")]

    def env(self):
        env = super().env()
        env["FLEET_CLOCK_SHIFT_MS"] = str(self.shift_ms)
        return env


def main_message(i):
    return "main turn %d: please run a command" % i if i % 4 == 1 else "main turn %d: status?" % i


def _digest():
    h = hashlib.sha256()
    for name in ("aged.py", "genuine.py", "mock_model.py", "clock_shift.cjs"):
        h.update((HERE / name).read_bytes())
    return h.hexdigest()[:12]


def aged_state(version, node, pkg, main_turns):
    """The cached aged state dir for `version` (built on first use, under a file lock)."""
    target = CACHE / ("aged-%s-%d-%s" % (version, main_turns, _digest()))
    with open(CACHE / (".aged-%s.lock" % version), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".complete").is_file():
            build = CACHE / ("aged-%s.build-%d" % (version, os.getpid()))
            shutil.rmtree(build, ignore_errors=True)
            shutil.rmtree(target, ignore_errors=True)
            build.mkdir(parents=True, mode=0o700)
            mock = MockModel.start()
            try:
                genuine.write_config(build, mock.base_url)
                old = ShiftedOpenClaw(node, pkg, build, -AGE_MS)
                for key in AGED_KEYS:
                    assert old.turn(key, AGED_MESSAGES[key]).get("payloads"), key
                now = OpenClaw(node, pkg, build)
                assert now.turn(HEARTBEAT_KEY, AGED_MESSAGES[HEARTBEAT_KEY]).get("payloads")
                for i in range(main_turns):
                    assert now.turn(MAIN_KEY, main_message(i)).get("payloads"), i
            finally:
                mock.stop()
            genuine.relocate(build, build, target)
            os.rename(build, target)
            (target / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return target
