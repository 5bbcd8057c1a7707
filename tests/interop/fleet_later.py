"""Run the real fleet CLI with its run clock moved forward: `python fleet_later.py HOURS fleet-args...`.

Genuine sessions are minutes old when a test runs; fleet's age rules (a cron run idle > 24 h, an
orphan > 24 h) only act on older ones. Rather than edit OpenClaw's files, the controller's clock
(`now_ms`, sent to every host in the plan) is set HOURS ahead; everything else is the real
`fleet` command line, with the agent running on the host as usual.
"""
import sys

import fleet.control.controller
from fleet.cli import main

if __name__ == "__main__":
    hours = float(sys.argv[1])
    real_now_ms = fleet.control.controller.now_ms
    fleet.control.controller.now_ms = lambda: real_now_ms() + int(hours * 3600 * 1000)
    sys.argv = ["fleet"] + sys.argv[2:]
    main()
