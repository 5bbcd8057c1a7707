"""The agent's side of the plan/result contract (docs/agent-protocol.md).

`validate_plan(doc)` checks a whole plan before anything runs and returns it with every default
filled in; any problem raises PlanError whose message names the key (exit 2, nothing touched).
`new_result` / `finish_result` assemble the one JSON result document the agent prints.
"""
import getpass
import os
import platform
import socket
import time

from . import AGENT_VERSION, PROTOCOL_VERSION
from .fsutil import is_safe_id

MODES = ("scan", "run", "restore", "journals")   # journals: only answer the plan's `journals` request
SLIM_LEVELS = (None, "tool-output", "aggressive")
PRUNE_CLASSES = ("cron_run", "subagent", "heartbeat", "acp", "dashboard", "probe", "hook", "dreaming")


class PlanError(Exception):
    """The plan is unreadable, invalid or of another protocol version (exit 2)."""


# Defaults of each operations section, used only when the section is present: an absent
# section means the operation does not run at all.
OPERATION_DEFAULTS = {
    "transcripts": {
        "tiers": [],
        "tool_output_limit_bytes": 2048,
        "assistant_text_limit_bytes": 4096,
        "untouched_turns": 5,
    },
    "trajectories": {"keep_runs": 5, "max_age_s": None},
    "store": {
        "prune": {},
        "prune_direct_after_s": None,
        "stale_after_s": None,
        "max_entries": None,
        "strip_fields": ["skillsSnapshot", "systemPromptReport"],
        "rotate_over_bytes": None,
        "rotate_keep": 3,
    },
    "orphans": {"archive_after_s": 86400},
    "archives": {"delete_after_s": 2592000},
    "legacy": {"keep_records": 200, "slim": "tool-output"},
    "locks": {"remove_stale": False},
    "temp": {"remove_after_s": 3600},
    # SQLite-era agents (sqlite_run.py): OpenClaw's own cleanup, when given; a proved trajectory cap.
    "sqlite": {"openclaw_cmd": None, "cleanup": True, "trajectory_keep_runs": None, "checkpoint": True,
               "vacuum": False, "gateway_stopped": False, "timeout_s": 300},
}

BACKUP_DEFAULTS = {"dir": None, "gzip": False, "keep_runs": 10, "max_age_s": 2592000}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _want(cond, where, message):
    if not cond:
        raise PlanError("at '%s': %s" % (where, message))


def _int_or_none(section, key, where, minimum=0):
    value = section.get(key)
    _want(value is None or (_is_int(value) and value >= minimum), where + "." + key,
          "expected an integer >= %d or null, got %r" % (minimum, value))


def _int(section, key, where, minimum=0):
    value = section.get(key)
    _want(_is_int(value) and value >= minimum, where + "." + key,
          "expected an integer >= %d, got %r" % (minimum, value))


def _bool(section, key, where):
    _want(isinstance(section.get(key), bool), where + "." + key,
          "expected true or false, got %r" % (section.get(key),))


def _with_defaults(value, defaults, where):
    _want(isinstance(value, dict), where, "expected an object, got %s" % type(value).__name__)
    merged = dict(defaults)
    merged.update(value)
    return merged


def _check_slim(value, where):
    _want(value in SLIM_LEVELS, where, "expected null, \"tool-output\" or \"aggressive\", got %r" % (value,))


def validate_operations(ops):
    """Return the operations with defaults filled in per present section; raise PlanError."""
    if ops is None:
        return {}
    _want(isinstance(ops, dict), "operations", "expected an object")
    out = {}
    for name, value in ops.items():
        where = "operations." + name
        _want(name in OPERATION_DEFAULTS, where, "unknown operation (known: %s)"
              % ", ".join(sorted(OPERATION_DEFAULTS)))
        if value is None:
            continue
        out[name] = _with_defaults(value, OPERATION_DEFAULTS[name], where)
    if "transcripts" in out:
        t = out["transcripts"]
        _want(isinstance(t["tiers"], list), "operations.transcripts.tiers", "expected a list")
        tiers = []
        for i, tier in enumerate(t["tiers"]):
            tw = "operations.transcripts.tiers[%d]" % i
            _want(isinstance(tier, dict), tw, "expected an object")
            tier = dict({"slim": None}, **tier)
            _int(tier, "over_bytes", tw)
            _int(tier, "keep_records", tw, minimum=1)
            _check_slim(tier["slim"], tw + ".slim")
            tiers.append(tier)
        t["tiers"] = sorted(tiers, key=lambda tr: tr["over_bytes"])
        for key in ("tool_output_limit_bytes", "assistant_text_limit_bytes", "untouched_turns"):
            _int(t, key, "operations.transcripts")
    if "trajectories" in out:
        _int(out["trajectories"], "keep_runs", "operations.trajectories", minimum=1)
        _int_or_none(out["trajectories"], "max_age_s", "operations.trajectories")
    if "store" in out:
        s = out["store"]
        _want(isinstance(s["prune"], dict), "operations.store.prune", "expected an object")
        for cls, age in s["prune"].items():
            _want(cls in PRUNE_CLASSES, "operations.store.prune." + cls,
                  "unknown session class (known: %s)" % ", ".join(PRUNE_CLASSES))
            _int_or_none(s["prune"], cls, "operations.store.prune")
        for key in ("prune_direct_after_s", "stale_after_s", "rotate_over_bytes"):
            _int_or_none(s, key, "operations.store")
        _int_or_none(s, "max_entries", "operations.store", minimum=1)
        _int(s, "rotate_keep", "operations.store")
        _want(isinstance(s["strip_fields"], list) and all(isinstance(f, str) for f in s["strip_fields"]),
              "operations.store.strip_fields", "expected a list of field names")
    if "orphans" in out:
        _int(out["orphans"], "archive_after_s", "operations.orphans")
    if "archives" in out:
        _int_or_none(out["archives"], "delete_after_s", "operations.archives")
    if "legacy" in out:
        _int(out["legacy"], "keep_records", "operations.legacy", minimum=1)
        _check_slim(out["legacy"]["slim"], "operations.legacy.slim")
    if "locks" in out:
        _bool(out["locks"], "remove_stale", "operations.locks")
    if "temp" in out:
        _int(out["temp"], "remove_after_s", "operations.temp")
    if "sqlite" in out:
        q = out["sqlite"]
        cmd = q["openclaw_cmd"]
        _want(cmd is None or (isinstance(cmd, list) and cmd and all(isinstance(a, str) and a for a in cmd)),
              "operations.sqlite.openclaw_cmd", "expected null or a non-empty list of strings")
        for key in ("cleanup", "checkpoint", "vacuum", "gateway_stopped"):
            _bool(q, key, "operations.sqlite")
        _int(q, "timeout_s", "operations.sqlite", minimum=1)
        _int_or_none(q, "trajectory_keep_runs", "operations.sqlite", minimum=1)
    return out


def _validate_restore(restore):
    _want(isinstance(restore, dict), "restore", "a restore plan needs a restore object")
    restore = dict({"force": False}, **restore)
    _want(isinstance(restore.get("files"), list), "restore.files", "expected a list")
    for i, item in enumerate(restore["files"]):
        where = "restore.files[%d]" % i
        _want(isinstance(item, dict), where, "expected an object")
        for key in ("path", "backup"):
            _want(isinstance(item.get(key), str) and item.get(key), where + "." + key, "expected a path")
    _bool(restore, "force", "restore")
    return restore


def _validate_origin(origin):
    """Who started the run (shown to a second run that finds the host busy): {user, host, playbook}."""
    if origin is None:
        return {}
    _want(isinstance(origin, dict), "origin", "expected an object")
    out = {}
    for key in ("user", "host", "playbook"):
        value = origin.get(key)
        _want(value is None or isinstance(value, str), "origin." + key, "expected a string or null")
        if value:
            out[key] = value[:200]
    return out


def _validate_journals(journals):
    """The controller asks for the host's journals of runs it does not hold complete:
    {"known": [run ids it holds]} (null: do not list journals)."""
    if journals is None:
        return None
    _want(isinstance(journals, dict), "journals", "expected an object or null")
    known = journals.get("known") or []
    _want(isinstance(known, list) and all(is_safe_id(k) for k in known), "journals.known",
          "expected a list of run ids")
    return {"known": list(known)}


def validate_plan(doc, now_ms=None):
    """Check a parsed plan and return a normalized copy (defaults filled in).

    Raises PlanError naming the key at fault. `now_ms` is the default clock when the plan has
    none (the host's clock at start).
    """
    _want(isinstance(doc, dict), "(plan)", "expected a JSON object")
    proto = doc.get("protocol")
    if proto != PROTOCOL_VERSION:
        raise PlanError("plan speaks protocol %r, this agent speaks %d: use the agent of the same fleet "
                        "version" % (proto, PROTOCOL_VERSION))
    plan = {
        "protocol": PROTOCOL_VERSION,
        "mode": doc.get("mode", "run"),
        "run_id": doc.get("run_id"),
        "now_ms": doc.get("now_ms"),
        "dry_run": doc.get("dry_run", False),
        "state_dir": doc.get("state_dir"),
        "agents": doc.get("agents"),
    }
    _want(plan["mode"] in MODES, "mode", "expected one of %s, got %r" % (", ".join(MODES), plan["mode"]))
    if plan["run_id"] is None:
        plan["run_id"] = default_run_id()
    _want(is_safe_id(plan["run_id"]), "run_id",
          "expected a safe name (letters, digits, '.', '_', '-'), got %r" % (plan["run_id"],))
    if plan["now_ms"] is None:
        plan["now_ms"] = int(time.time() * 1000) if now_ms is None else int(now_ms)
    _want(_is_int(plan["now_ms"]) and plan["now_ms"] > 0, "now_ms",
          "expected epoch milliseconds, got %r" % (plan["now_ms"],))
    _want(isinstance(plan["dry_run"], bool), "dry_run", "expected true or false, got %r" % (plan["dry_run"],))
    _want(plan["state_dir"] is None or (isinstance(plan["state_dir"], str) and plan["state_dir"]),
          "state_dir", "expected a path or null")
    agents = plan["agents"]
    _want(agents is None or (isinstance(agents, list) and all(isinstance(a, str) for a in agents)),
          "agents", "expected a list of agent ids or null")
    if agents is not None:
        for a in agents:
            _want(is_safe_id(a), "agents", "not a safe agent id: %r" % (a,))
    backup = doc.get("backup")
    plan["backup"] = _with_defaults({} if backup is None else backup, BACKUP_DEFAULTS, "backup")
    b = plan["backup"]
    _want(b["dir"] is None or (isinstance(b["dir"], str) and b["dir"]), "backup.dir", "expected a path or null")
    _bool(b, "gzip", "backup")
    _int_or_none(b, "keep_runs", "backup", minimum=1)
    _int_or_none(b, "max_age_s", "backup")
    plan["operations"] = validate_operations(doc.get("operations"))
    plan["origin"] = _validate_origin(doc.get("origin"))
    plan["journals"] = _validate_journals(doc.get("journals"))
    plan["restore"] = None
    if plan["mode"] == "restore":
        plan["restore"] = _validate_restore(doc.get("restore"))
    return plan


def scan_plan(state_dir=None, agents=None, now_ms=None):
    """The plan `agent scan` runs: read-only, no operations."""
    doc = {"protocol": PROTOCOL_VERSION, "mode": "scan", "state_dir": state_dir, "agents": agents}
    if now_ms is not None:
        doc["now_ms"] = now_ms
    return validate_plan(doc)


def default_run_id(now=None):
    t = time.time() if now is None else now
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t)) + "-%06x" % (os.getpid() & 0xFFFFFF)


def iso_now(t=None):
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def host_info(state_dir):
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry, no $USER: still report something
        user = str(os.getuid()) if hasattr(os, "getuid") else "?"
    return {"hostname": socket.gethostname(), "user": user, "python": platform.python_version(),
            "state_dir": state_dir}


def new_result(plan, state_dir, started):
    """The result document's skeleton; operations fill files, health, agents and backup."""
    return {
        "protocol": PROTOCOL_VERSION,
        "agent_version": AGENT_VERSION,
        "mode": plan.get("mode") if plan else None,
        "run_id": plan.get("run_id") if plan else None,
        "dry_run": bool(plan.get("dry_run")) if plan else False,
        "now_ms": plan.get("now_ms") if plan else None,
        "host": host_info(state_dir),
        "started_at": iso_now(started),
        "finished_at": None,
        "elapsed_s": 0.0,
        "ok": True,
        "error": None,
        "agents": [],
        "files": [],
        "health": [],
        "backup": {"dir": None, "bytes": 0, "expired_runs": [], "expired_bytes": 0},
    }


def has_file_errors(result):
    """True when a file or an agent could not be handled (exit 1)."""
    if any(f.get("error") for f in result.get("files", ())):
        return True
    if (result.get("backup") or {}).get("error"):
        return True
    return any(a.get("errors") for a in result.get("agents", ()))


def finish_result(result, started, error=None):
    """Stamp the end time and ok flag; `error` is a fatal, run-level error (or None)."""
    end = time.time()
    result["finished_at"] = iso_now(end)
    result["elapsed_s"] = round(end - started, 3)
    if error is not None:
        result["error"] = error
    result["ok"] = result["error"] is None and not has_file_errors(result)
    return result
