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

from .fsutil import is_safe_id
from . import ops as operations
from .terms import (AGENT_VERSION, BACKUP_DEFAULTS, BACKUP_TO, MODES, PROTECTED_KINDS, PROTOCOL_VERSION, PRUNE_CLASSES,
                    SLIM_LEVELS, PlanError, check_bool, check_int, is_int, want)

__all__ = ["AGENT_VERSION", "BACKUP_DEFAULTS", "BACKUP_TO", "MODES", "PROTECTED_KINDS", "PROTOCOL_VERSION", "PRUNE_CLASSES",
           "SLIM_LEVELS", "PlanError", "operation_defaults", "validate_operations", "validate_plan"]


def operation_defaults():
    """Section name → its defaults, for every operation of this build (ops/)."""
    return dict((op.SECTION, op.DEFAULTS) for op in operations.OPERATIONS)


def _with_defaults(value, defaults, where):
    want(isinstance(value, dict), where, "expected an object, got %s" % type(value).__name__)
    merged = dict(defaults)
    merged.update(value)
    return merged


def validate_operations(ops):
    """Return the operations with defaults filled in per present section; raise PlanError.

    Each section is checked by its operation's own `validate` (ops/)."""
    if ops is None:
        return {}
    want(isinstance(ops, dict), "operations", "expected an object")
    out = {}
    for name, value in ops.items():
        where = "operations." + name
        op = operations.BY_SECTION.get(name)
        want(op is not None, where, "unknown operation (known: %s)" % ", ".join(sorted(operations.BY_SECTION)))
        if value is None:
            continue
        out[name] = _with_defaults(value, op.DEFAULTS, where)
        op.validate(out[name], where)
    return out


def _validate_restore(restore):
    want(isinstance(restore, dict), "restore", "a restore plan needs a restore object")
    restore = dict({"force": False}, **restore)
    want(isinstance(restore.get("files"), list), "restore.files", "expected a list")
    for i, item in enumerate(restore["files"]):
        where = "restore.files[%d]" % i
        want(isinstance(item, dict), where, "expected an object")
        for key in ("path", "backup"):
            want(isinstance(item.get(key), str) and item.get(key), where + "." + key, "expected a path")
    check_bool(restore, "force", "restore")
    return restore


def validate_plan(doc, now_ms=None):
    """Check a parsed plan and return a normalized copy (defaults filled in).

    Raises PlanError naming the key at fault. `now_ms` is the default clock when the plan has
    none (the host's clock at start).
    """
    want(isinstance(doc, dict), "(plan)", "expected a JSON object")
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
    want(plan["mode"] in MODES, "mode", "expected one of %s, got %r" % (", ".join(MODES), plan["mode"]))
    if plan["run_id"] is None:
        plan["run_id"] = default_run_id()
    want(is_safe_id(plan["run_id"]), "run_id",
          "expected a safe name (letters, digits, '.', '_', '-'), got %r" % (plan["run_id"],))
    if plan["now_ms"] is None:
        plan["now_ms"] = int(time.time() * 1000) if now_ms is None else int(now_ms)
    want(is_int(plan["now_ms"]) and plan["now_ms"] > 0, "now_ms",
          "expected epoch milliseconds, got %r" % (plan["now_ms"],))
    want(isinstance(plan["dry_run"], bool), "dry_run", "expected true or false, got %r" % (plan["dry_run"],))
    want(plan["state_dir"] is None or (isinstance(plan["state_dir"], str) and plan["state_dir"]),
          "state_dir", "expected a path or null")
    agents = plan["agents"]
    want(agents is None or (isinstance(agents, list) and all(isinstance(a, str) for a in agents)),
          "agents", "expected a list of agent ids or null")
    if agents is not None:
        for a in agents:
            want(is_safe_id(a), "agents", "not a safe agent id: %r" % (a,))
    backup = doc.get("backup")
    plan["backup"] = _with_defaults({} if backup is None else backup, BACKUP_DEFAULTS, "backup")
    b = plan["backup"]
    want(b["dir"] is None or (isinstance(b["dir"], str) and b["dir"]), "backup.dir", "expected a path or null")
    check_bool(b, "gzip", "backup")
    want(b["to"] in BACKUP_TO, "backup.to", "expected one of %s, got %r" % (", ".join(BACKUP_TO), b["to"]))
    check_int(b, "keep_runs", "backup", minimum=1, nullable=True)
    check_int(b, "max_age_s", "backup", nullable=True)
    plan["operations"] = validate_operations(doc.get("operations"))
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
