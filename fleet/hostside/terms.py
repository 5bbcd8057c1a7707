"""The words of the plan/result contract, owned here and imported by the controller.

The protocol version, plan modes, slim levels, session kinds (which may be pruned by age, which
never), backup defaults, and `PlanError` with the small checks every operation's validator uses.
Nothing here imports another module of the host-side program, so every module may import it.
"""

PROTOCOL_VERSION = 1
AGENT_VERSION = "0.1.0"

MODES = ("scan", "run", "restore", "journals")   # journals: only answer the plan's `journals` request

# What a slim level may shorten in kept transcript lines (slim.py); None keeps lines as they are.
SLIM_LEVELS = (None, "tool-output", "aggressive")

# Session kinds a playbook may prune by age (store.prune / disposable_after).
PRUNE_CLASSES = ("cron_run", "subagent", "heartbeat", "acp", "dashboard", "probe", "hook", "dreaming")
# Kinds never removed by any rule, whatever their age and whatever the entry cap.
PROTECTED_KINDS = ("main", "global", "group", "channel", "topic", "thread", "cron")
# Kept like protected kinds unless a plan's store.prune names them (store.PrunePlan): the field's
# cleanup keeps cron heartbeats and dreaming sessions as live infrastructure.
OPT_IN_KINDS = ("heartbeat", "dreaming")

# The plan's `sqlite` section when it sets nothing (ops/sqlite.py reads the playbook's [sqlite]).
# busy_within_s: a SQLite-era session whose entry OpenClaw updated this recently is in use, and is
# neither trimmed nor stripped. OpenClaw patches an entry optimistically (read, prepare, then write
# only if nobody changed it meanwhile) and refuses the turn when another process wrote the entry in
# between; its trim and its entry update both rewrite the entry, so either could fail the user's
# turn. (It also writes systemPromptReport again on every run, so a strip would not last.) A later
# run does both once the session is idle.
SQLITE_DEFAULTS = {"openclaw_cmd": None, "cleanup": True, "trajectory_keep_runs": None, "checkpoint": True,
                   "vacuum": False, "gateway_stopped": False, "timeout_s": 300, "busy_within_s": 10 * 60}

# The flat legacy `<state>/sessions/` folder's pseudo-agent (discover.discover_flat_legacy).
FLAT_LEGACY_AGENT = "(legacy)"

# Health thresholds (plan key "health"; fleet.toml [thresholds] on the control host). A transcript
# warns from the size where the shipped weekly playbook's first tier starts trimming, so a
# healthy weekly run leaves no size warning it could have fixed. Tokens: (warning, critical)
# per session kind.
HEALTH_DEFAULTS = {
    "transcript_warn_bytes": 2 * 1024 * 1024,
    "tokens": {
        "group": [50000, 150000], "channel": [50000, 150000], "topic": [50000, 150000],
        "thread": [50000, 150000], "direct": [100000, 150000], "main": [150000, 200000],
        "global": [150000, 200000],
    },
}

# The plan's `backup` section when it sets nothing: the run's folder under <state>/fleet-backups,
# plain copies, the last 10 runs kept for at most 30 days, on the host.
BACKUP_DEFAULTS = {"dir": None, "gzip": False, "keep_runs": 10, "max_age_s": 30 * 86400, "to": "host"}
# Where a run's backups go: the host (backup.dir, default <state>/fleet-backups), streamed to the
# controller, or "auto" (the host when there is room, else the controller).
BACKUP_TO = ("host", "controller", "auto")


class PlanError(Exception):
    """The plan is unreadable, invalid or of another protocol version (exit 2)."""


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def want(cond, where, message):
    """Raise PlanError("at 'where': message") unless `cond`."""
    if not cond:
        raise PlanError("at '%s': %s" % (where, message))


def check_int(section, key, where, minimum=0, nullable=False):
    """`section[key]` is an integer >= minimum (or None when `nullable`)."""
    value = section.get(key)
    if nullable and value is None:
        return
    want(is_int(value) and value >= minimum, where + "." + key,
         "expected an integer >= %d%s, got %r" % (minimum, " or null" if nullable else "", value))


def check_bool(section, key, where):
    want(isinstance(section.get(key), bool), where + "." + key,
         "expected true or false, got %r" % (section.get(key),))


def pick_tier(tiers, size):
    """The highest tier whose over_bytes is below `size` (tiers sorted by over_bytes), or None."""
    chosen = None
    for tier in tiers:
        if size > tier["over_bytes"]:
            chosen = tier
    return chosen


def check_slim(value, where):
    want(value in SLIM_LEVELS, where, "expected null, \"tool-output\" or \"aggressive\", got %r" % (value,))

