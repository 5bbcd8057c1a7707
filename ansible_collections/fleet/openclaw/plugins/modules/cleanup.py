#!/usr/bin/python
# Copyright: fleet developers
# MIT License
"""fleet.openclaw.cleanup: run fleet's host-side program on this host with a plan fleet compiled."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: cleanup
short_description: Back up, trim and prune an OpenClaw host with fleet's own host-side program
description:
  - Runs fleet's host-side program (the stdlib-only agent of C(fleet agent export), embedded in this
    collection when it was built) on the target with a plan compiled by fleet from a fleet playbook
    (C(fleet playbook compile weekly --json)), and returns the agent's per-host result document.
  - The policy lives in fleet's playbook only; this module adds what belongs to the host
    (I(state_dir), I(agents), I(openclaw_cmd)) and the run's id and clock, exactly as C(fleet run) does.
  - Every file the agent changes is backed up first and verified; the write is atomic. Backups go to
    the plan's backup folder on the host (default C(<state_dir>/fleet-backups/<run_id>/)), so
    C(fleet import-ansible) and C(fleet restore RUN_ID) can put them back.
  - In check mode the agent makes a dry run with the same clock, so the same decisions and numbers, with
    nothing written.
version_added: "0.1.0"
author:
  - fleet developers
options:
  plan:
    description:
      - The plan from C(fleet playbook compile NAME --json) (a mapping with C(protocol), C(operations),
        C(backup) and usually C(run_id), C(now_ms) and C(playbook)).
      - Give every host of one run the same plan, so they share the run id and clock; the example
        playbook compiles it once per play with C(run_once).
    type: dict
    required: true
  run_id:
    description:
      - The run id (letters, digits, C(.), C(_), C(-)); names the backup folder on the host and the run
        in fleet's history. Overrides the plan's C(run_id).
    type: str
  now_ms:
    description:
      - The run's clock in epoch milliseconds; every age decision uses it. Overrides the plan's C(now_ms).
    type: int
  state_dir:
    description:
      - The OpenClaw state directory on the host (C(~) and C($VARS) expanded there). Default is
        C($OPENCLAW_STATE_DIR), else C($OPENCLAW_HOME), else C(~/.openclaw).
    type: str
  agents:
    description:
      - OpenClaw agent ids to work on. Default is every agent under C(<state_dir>/agents).
    type: list
    elements: str
  openclaw_cmd:
    description:
      - The host's OpenClaw CLI as a command list (for example C([openclaw])), used for the SQLite-era
        C(sessions cleanup). Without it, SQLite-era databases are scanned and backed up, never changed.
    type: list
    elements: str
  python:
    description:
      - The Python (>= 3.8) that runs the agent. Default is the interpreter running this module.
    type: str
  fail_on_file_errors:
    description:
      - Fail the task when a single file could not be handled (the others were still handled and the
        result lists them), as C(fleet run) exits 1. With C(false) only a failed host fails.
    type: bool
    default: true
notes:
  - Supports check mode (the agent's dry run). C(changed) is true when a file was (or, in check mode,
    would be) changed.
  - The target needs Python 3.8 or later and nothing else; the agent is stdlib only.
  - Record the results in fleet's history with the collection's C(fleet.openclaw.fleet_results)
    callback and C(fleet import-ansible FILE).
"""

EXAMPLES = r"""
- name: Compile fleet's weekly playbook once per play (one run id, one clock)
  ansible.builtin.set_fact:
    fleet_plan: "{{ lookup('ansible.builtin.pipe', 'fleet playbook compile weekly --json') | from_json }}"
  run_once: true

- name: Weekly cleanup
  fleet.openclaw.cleanup:
    plan: "{{ fleet_plan }}"
    state_dir: "{{ openclaw_state_dir | default(omit) }}"
  register: cleanup

- name: Show what was freed
  ansible.builtin.debug:
    msg: "{{ cleanup.summary.before_bytes - cleanup.summary.after_bytes }} bytes freed"
"""

RETURN = r"""
protocol:
  description: The agent protocol version of the result.
  returned: when the agent ran
  type: int
  sample: 1
run_id:
  description: The run id the agent used.
  returned: when the agent ran
  type: str
  sample: 20261121T101500Z-3fa2c1
playbook:
  description: The fleet playbook the plan was compiled from (the plan's C(playbook)).
  returned: always
  type: str
  sample: weekly
dry_run:
  description: Whether this was a dry run (check mode).
  returned: when the agent ran
  type: bool
ok:
  description: False when the host could not be worked on at all (see C(error)).
  returned: when the agent ran
  type: bool
error:
  description: Why the host failed, or null.
  returned: when the agent ran
  type: str
host:
  description: The host as the agent saw it (hostname, user, python, resolved state_dir).
  returned: when the agent ran
  type: dict
agents:
  description: One entry per OpenClaw agent, with sizes before and after, era and per-agent errors.
  returned: when the agent ran
  type: list
  elements: dict
files:
  description:
    - One record per file of the agents, with C(path) (relative to the state dir), C(kind), C(action),
      C(actions), C(before) and C(after) (C(bytes), C(records), C(sha256)), C(backup), C(backup_sha256),
      C(archived_to), C(notes) and C(error). Untouched files have action C(none).
  returned: when the agent ran
  type: list
  elements: dict
health:
  description: Health findings (C(agent), C(severity), C(check), C(detail), C(path)).
  returned: when the agent ran
  type: list
  elements: dict
backup:
  description: The run's backup folder on the host, its bytes, and the expired runs' folders.
  returned: when the agent ran
  type: dict
summary:
  description: Totals of C(files) (C(files), C(files_changed), C(file_errors), C(before_bytes), C(after_bytes)).
  returned: when the agent ran
  type: dict
rc:
  description: The agent's exit status (0 all handled, 1 some file not handled, 2 bad plan, 3 no state dir).
  returned: always
  type: int
agent_sha256:
  description: The sha256 of the embedded agent (the .pyz of C(fleet agent export)).
  returned: always
  type: str
stderr_tail:
  description: The last lines of the agent's stderr (progress and fatal errors as JSON lines).
  returned: always
  type: str
"""

import base64
import hashlib
import json
import os
import sys

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible_collections.fleet.openclaw.plugins.module_utils.fleet_agent import AGENT_PYZ_B64, AGENT_SHA256
except ImportError:  # the collection was copied from the repository instead of built
    AGENT_PYZ_B64 = AGENT_SHA256 = None

UNCHANGED_ACTIONS = ("none", "skip")
# Kept equal to DOCUMENTATION's options (tests/control/test_ansible_collection.py compares them).
ARGUMENT_SPEC = dict(
    plan=dict(type="dict", required=True),
    run_id=dict(type="str"),
    now_ms=dict(type="int"),
    state_dir=dict(type="str"),
    agents=dict(type="list", elements="str"),
    openclaw_cmd=dict(type="list", elements="str"),
    python=dict(type="str"),
    fail_on_file_errors=dict(type="bool", default=True),
)


def host_plan(plan, params, check_mode):
    """The plan for this host: fleet's compiled plan plus the host's and the run's values.

    The same additions as fleet's build_plan: state dir, agents, the run's id and clock, dry run,
    and the host's OpenClaw CLI in the `sqlite` section.
    """
    out = dict(plan)
    out["mode"] = "run"
    out["run_id"] = params["run_id"] if params["run_id"] is not None else plan.get("run_id")
    out["now_ms"] = params["now_ms"] if params["now_ms"] is not None else plan.get("now_ms")
    out["dry_run"] = bool(check_mode)
    out["state_dir"] = params["state_dir"]
    out["agents"] = list(params["agents"]) if params["agents"] is not None else None
    out["restore"] = None
    operations = dict(plan.get("operations") or {})
    if isinstance(operations.get("sqlite"), dict):
        cmd = params["openclaw_cmd"]
        operations["sqlite"] = dict(operations["sqlite"], openclaw_cmd=list(cmd) if cmd else None)
    out["operations"] = operations
    return out


def summarize(files):
    """Totals of the agent's file records, counted as fleet's run totals count them."""
    return {
        "files": len(files),
        "files_changed": sum(1 for f in files if f.get("action") not in UNCHANGED_ACTIONS),
        "file_errors": sum(1 for f in files if f.get("error")),
        "before_bytes": sum(int((f.get("before") or {}).get("bytes") or 0) for f in files),
        "after_bytes": sum(int((f.get("after") or f.get("before") or {}).get("bytes") or 0) for f in files),
    }


def last_json_line(text):
    """The agent's result: its one JSON line on stdout (a login shell may print before it)."""
    for line in reversed(text.strip().splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc
    return None


def fatal_from(stderr):
    """The agent's own reason when it could not run: its last {"event": "fatal"} line on stderr."""
    for line in reversed(stderr.strip().splitlines()):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "fatal":
            return str(event.get("error"))
    return None


def write_agent(folder):
    """Write the embedded agent into `folder`; its sha256 is checked before it is ever run."""
    data = base64.b64decode(AGENT_PYZ_B64)
    if hashlib.sha256(data).hexdigest() != AGENT_SHA256:
        raise ValueError("the embedded fleet agent is damaged (sha256 mismatch); rebuild the collection")
    path = os.path.join(folder, "fleet-agent-%s.pyz" % AGENT_SHA256[:16])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    playbook = params["plan"].get("playbook")
    base = {"changed": False, "playbook": playbook, "agent_sha256": AGENT_SHA256, "rc": None, "stderr_tail": ""}
    if AGENT_PYZ_B64 is None:
        module.fail_json(msg="this copy of fleet.openclaw has no embedded agent: install the collection built "
                             "by fleet's scripts/build-collection.sh", **base)
    backup_to = (params["plan"].get("backup") or {}).get("to")
    if backup_to not in (None, "host"):
        # Backups to the controller travel on fleet's own connection to the agent; under Ansible
        # nothing receives them, so such a plan is refused before anything runs.
        module.fail_json(msg="the plan sends backups to the controller (backup to = %r): under Ansible the "
                             "backups stay on the host; compile a playbook whose [backup] to is \"host\" "
                             "or a folder on the host" % (backup_to,), **base)
    plan = host_plan(params["plan"], params, module.check_mode)
    if not plan["run_id"] or plan["now_ms"] is None:
        module.fail_json(msg="the plan has no run_id/now_ms and none was given: compile it with "
                             "`fleet playbook compile NAME --json`, once per play", **base)
    try:
        agent = write_agent(module.tmpdir)
    except (OSError, ValueError) as exc:
        module.fail_json(msg="cannot write the fleet agent on the host: %s" % exc, **base)
    python = params["python"] or sys.executable
    rc, out, err = module.run_command([python, agent, "run", "--plan", "-"], data=json.dumps(plan),
                                      binary_data=True)
    base["rc"] = rc
    base["stderr_tail"] = "\n".join(err.strip().splitlines()[-15:])
    doc = last_json_line(out)
    if doc is None or "protocol" not in doc:
        reason = fatal_from(err) or base["stderr_tail"][-500:] or "no output"
        module.fail_json(msg="fleet agent failed (exit %s): %s" % (rc, reason), **base)
    result = dict(doc)
    result.update(base)
    result["summary"] = summarize(doc.get("files") or [])
    result["changed"] = result["summary"]["files_changed"] > 0
    problems = []
    if doc.get("error"):
        problems.append(str(doc["error"]))
    problems += ["agent %s: %s" % (a.get("agent"), e) for a in doc.get("agents") or () for e in a.get("errors") or ()]
    if (doc.get("backup") or {}).get("error"):
        problems.append("backup: %s" % doc["backup"]["error"])
    if rc not in (0, 1) and not problems:
        problems.append("agent exited %s: %s" % (rc, fatal_from(err) or base["stderr_tail"][-500:]))
    if params["fail_on_file_errors"] and result["summary"]["file_errors"]:
        first = next(f for f in doc.get("files") or () if f.get("error"))
        problems.append("%d file(s) could not be handled, e.g. %s: %s"
                        % (result["summary"]["file_errors"], first.get("path"), first.get("error")))
    if problems:
        module.fail_json(msg="; ".join(problems), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
