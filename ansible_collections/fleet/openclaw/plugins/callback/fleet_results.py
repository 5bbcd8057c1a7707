# Copyright: fleet developers
# MIT License
"""fleet.openclaw.fleet_results: write every fleet.openclaw.cleanup result of a playbook run to one
JSON file that `fleet import-ansible FILE` records as a fleet run."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: fleet_results
type: aggregate
short_description: Save the results of fleet.openclaw.cleanup for fleet import-ansible
description:
  - Collects the result of every C(fleet.openclaw.cleanup) task on every host (also failed and
    unreachable hosts) and writes them, when the playbook ends, to one JSON file.
  - C(fleet import-ansible FILE) records that file as a fleet run in fleet's history, where
    C(fleet report), C(fleet report --trend) and C(fleet restore) use it like any run of C(fleet run).
  - The file is written to a temporary file in the same folder and renamed, mode 0600 (it names
    files and checksums of the hosts' sessions).
version_added: "0.1.0"
requirements:
  - enable it in ansible.cfg (C(callbacks_enabled = fleet.openclaw.fleet_results)) or with
    C(ANSIBLE_CALLBACKS_ENABLED)
options:
  path:
    description: The JSON file to write (replaced on every playbook run).
    type: path
    default: fleet-ansible-results.json
    env:
      - name: FLEET_ANSIBLE_RESULTS
    ini:
      - section: callback_fleet_results
        key: path
"""

import json
import os
import tempfile
from datetime import datetime

try:
    from datetime import timezone
    UTC = timezone.utc
except ImportError:  # pragma: no cover - Python 2 controllers are not supported by ansible-core >= 2.12
    UTC = None

from ansible.plugins.callback import CallbackBase

MODULE_NAMES = ("fleet.openclaw.cleanup", "cleanup")
SCHEMA = "fleet.ansible-results/1"


def _now():
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _plain(value):
    """The result as plain JSON values (ansible-core 2.19 tags strings; json.dumps then str()s them)."""
    return json.loads(json.dumps(value, default=str))


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "fleet.openclaw.fleet_results"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.results = []
        self.playbook = None
        self.started_at = _now()

    def v2_playbook_on_start(self, playbook):
        self.playbook = os.path.basename(getattr(playbook, "_file_name", "") or "") or None
        self.started_at = _now()

    def _record(self, result, status):
        task = getattr(result, "task", None) or getattr(result, "_task", None)
        host = getattr(result, "host", None) or getattr(result, "_host", None)
        action = getattr(task, "action", None)
        if action not in MODULE_NAMES:
            return
        # ansible-core >= 2.19 names it `result`; older releases only have `_result`.
        data = getattr(result, "result", None)
        if data is None:
            data = result._result
        self.results.append({"host": host.get_name(), "task": task.get_name(), "action": action,
                             "status": status, "result": _plain(dict(data))})

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        path = os.path.abspath(os.path.expanduser(self.get_option("path")))
        doc = {"schema": SCHEMA, "playbook": self.playbook, "started_at": self.started_at,
               "finished_at": _now(), "results": self.results}
        folder = os.path.dirname(path)
        try:
            fd, tmp = tempfile.mkstemp(prefix=".fleet-results.", dir=folder)
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, TypeError, ValueError) as exc:
            self._display.warning("fleet_results: cannot write %s: %s" % (path, exc))
            return
        self._display.display("fleet_results: %d result(s) written to %s; record them with "
                              "`fleet import-ansible %s`" % (len(self.results), path, path))
