"""The operations a playbook can ask for: one module each, one entry in OPERATIONS.

A playbook table `[NAME]`, the plan's `operations.NAME` and the module `ops/NAME.py` are the same
operation. Each module defines, in this order of use:

- `SECTION`: its name; `DEFAULTS`: every key of its plan section with its default (applied when
  the section is present; an absent section means the operation does not run); `REWRITES`: whether
  it rewrites files in place (through `work.rewrite`: on a nearly full disk those go last,
  biggest first, see runops);
- `read(t)`: the controller's reader of the playbook table (`t` is a fleet.config.validate.Table):
  the keys the table sets, in bytes and seconds (None for "not set");
- `describe(s, size, duration)`: the lines `fleet playbook check` prints for a compiled section
  (`size` and `duration` are the controller's formatters);
- `validate(s, where)`: the host's check of a plan section, defaults filled in; raises PlanError;
- `backup_need(ctx, af, s, info)`: whether this file may need a backup in this run (the space
  check before an agent is touched, space.py);
- `run(work, s)`: the pass over one agent (`work` is runops.AgentWork).

OPERATIONS is the order a playbook check lists them in; PASSES the order a run applies them to a
JSON-era agent: the store first (its rotation copy holds the store as it was; removed sessions'
files are archived with it), then orphans, the file rewrites, and housekeeping last. `sqlite` is
the whole run of a SQLite-era agent.

Adding an operation: write `ops/NAME.py` with the functions above and add it to both tuples here. The
controller's playbook reader, `fleet playbook check`, the plan validator, the space check and
the run all take it from this table.
"""
from . import archives, legacy, locks, orphans, sqlite, store, temp, trajectories, transcripts

OPERATIONS = (transcripts, trajectories, store, orphans, archives, legacy, locks, temp, sqlite)
PASSES = (store, orphans, transcripts, trajectories, legacy, archives, temp, locks, sqlite)
BY_SECTION = dict((op.SECTION, op) for op in OPERATIONS)
