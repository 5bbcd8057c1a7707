"""Health findings from discovery's view of the agents (read-only; never parses a transcript).

Each finding is {"agent", "severity": info|warning|critical, "check", "detail", "path"}.
Checks: store-empty / store-invalid / store-shape / store-unreadable (critical), store-missing,
session-id-unsafe (critical), transcript-missing, orphan-transcript, transcript-size, tokens,
stale-lock, temp-leftover, peer-shared, half-migrated (critical).
"""
import os

from .fsutil import is_safe_id
from .locks import lock_state

TRANSCRIPT_WARN_BYTES = 500 * 1024
TEMP_LEFTOVER_S = 5 * 60
# (warning, critical) token thresholds per session type.
TOKEN_THRESHOLDS = {
    "group": (50000, 150000), "channel": (50000, 150000), "topic": (50000, 150000),
    "thread": (50000, 150000), "direct": (100000, 150000), "main": (150000, 200000),
    "global": (150000, 200000),
}


def finding(agent, severity, check, detail, path=None):
    return {"agent": agent, "severity": severity, "check": check, "detail": detail, "path": path}


def _kib(n):
    return "%.1f KB" % (n / 1024.0) if n < 1024 * 1024 else "%.1f MB" % (n / 1048576.0)


def entry_transcript_name(entry):
    """The transcript file name an entry points at (sessionFile's name, else <sessionId>.jsonl)."""
    sfile = entry.get("sessionFile")
    if isinstance(sfile, str) and sfile:
        return os.path.basename(sfile)
    sid = entry.get("sessionId")
    if is_safe_id(sid):
        return sid + ".jsonl"
    return None


def lock_problem(info, now_ms):
    """Why a lock is stale (a sentence), or None when it is live and fresh (OpenClaw's rules,
    judged by the locks module: dead or recycled pid, or older than its stale age)."""
    state = lock_state(info.path, now_ms)
    if state["exists"] and state["stale"]:
        return state["reason"]
    return None


def _store_findings(af):
    out = []
    if af.store_problem is not None:
        check, detail = af.store_problem
        out.append(finding(af.agent, "critical", check, detail,
                           af.store_info.rel if af.store_info else None))
    elif af.store_info is None and af.by_kind("transcript"):
        out.append(finding(af.agent, "warning", "store-missing",
                           "transcripts but no sessions.json: nothing is referenced, so no orphan is archived",
                           os.path.relpath(af.sessions_dir, af.state_dir)))
    return out


def _entry_findings(af, classify_key):
    out = []
    if not af.store_usable:
        return out
    sizes = {os.path.basename(f.path): f.size for f in af.files if f.kind == "transcript"}
    for key, entry in af.store.items():
        sid = entry.get("sessionId")
        if not is_safe_id(sid):
            out.append(finding(af.agent, "critical", "session-id-unsafe",
                               "entry %r has sessionId %r, not a safe name: never used as a path" % (key, sid),
                               af.store_info.rel))
        name = entry_transcript_name(entry)
        if name is not None and name not in sizes:
            out.append(finding(af.agent, "warning", "transcript-missing",
                               "entry %r points at %s, which does not exist" % (key, name),
                               af.store_info.rel))
        kind = classify_key(key)
        if kind in TOKEN_THRESHOLDS:
            out.extend(_token_findings(af, key, entry, kind, sizes.get(name)))
    return out


def _token_findings(af, key, entry, kind, transcript_bytes):
    total = entry.get("totalTokens")
    # contextTokens is the model's window, not usage: it only explains the number.
    window = entry.get("contextTokens")
    if isinstance(total, (int, float)) and not isinstance(total, bool) and total > 0:
        tokens, source = int(total), "totalTokens"
    elif transcript_bytes:
        tokens, source = transcript_bytes // 4, "transcript bytes / 4"
    else:
        return []
    warn, crit = TOKEN_THRESHOLDS[kind]
    if tokens < warn:
        return []
    severity = "critical" if tokens >= crit else "warning"
    detail = "%s session %r uses %d tokens (%s)%s; %s above %d" % (
        kind, key, tokens, source,
        " of a %d-token context" % window if isinstance(window, int) and window > 0 else "",
        severity, crit if severity == "critical" else warn)
    return [finding(af.agent, severity, "tokens", detail, af.store_info.rel)]


def _file_findings(af, now_ms):
    out = []
    for info in af.files:
        if info.rel in af.problems:
            continue
        if info.kind == "transcript" and info.size > TRANSCRIPT_WARN_BYTES:
            out.append(finding(af.agent, "warning", "transcript-size",
                               "transcript is %s (over %s)" % (_kib(info.size), _kib(TRANSCRIPT_WARN_BYTES)),
                               info.rel))
        elif info.kind == "orphan":
            severity = "warning" if info.size > TRANSCRIPT_WARN_BYTES else "info"
            out.append(finding(af.agent, severity, "orphan-transcript",
                               "transcript of %s not referenced by sessions.json" % _kib(info.size), info.rel))
        elif info.kind == "lock":
            why = lock_problem(info, now_ms)
            if why:
                out.append(finding(af.agent, "warning", "stale-lock", "stale lock: " + why, info.rel))
        elif info.kind == "temp":
            age_s = (now_ms - info.mtime_ns // 1000000) / 1000.0
            if age_s > TEMP_LEFTOVER_S:
                out.append(finding(af.agent, "warning", "temp-leftover",
                                   "temp file left over, %d min old" % (age_s // 60), info.rel))
    return out


def _peers_of(key, entry):
    """Bare peer ids a direct session is bound to (from the key, origin.from, deliveryContext.to)."""
    peers = set()
    parts = key.lower().split(":")
    for marker in ("direct", "dm", "dm-named"):
        if marker in parts[:-1]:
            peers.add(parts[parts.index(marker) + 1])
    for holder, field in (("origin", "from"), ("deliveryContext", "to")):
        obj = entry.get(holder)
        value = obj.get(field) if isinstance(obj, dict) else None
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            peers.add(str(value).split(":")[-1])
    return set(p.lower() for p in peers if p)


def _peer_findings(agents, classify_key):
    bound = {}
    for af in agents:
        if not af.store_usable:
            continue
        for key, entry in af.store.items():
            if classify_key(key) != "direct":
                continue
            for peer in _peers_of(key, entry):
                bound.setdefault(peer, {}).setdefault(af.agent, key)
    out = []
    for peer in sorted(bound):
        owners = bound[peer]
        if len(owners) > 1:
            detail = "peer %s has direct sessions in %d agents: %s" % (
                peer, len(owners), ", ".join("%s (%s)" % (a, owners[a]) for a in sorted(owners)))
            for agent in sorted(owners):
                out.append(finding(agent, "warning", "peer-shared", detail, None))
    return out


def check_agent(af, now_ms, classify_key):
    """Findings of one discovered agent."""
    out = []
    if af.error:
        return out
    if af.era == "half-migrated":
        out.append(finding(af.agent, "critical", "half-migrated",
                           "SQLite database beside un-imported sessions.json/transcripts: OpenClaw's own "
                           "cleanup would delete the legacy transcripts; run `openclaw doctor --fix` to "
                           "migrate first (fleet changes nothing here until then)",
                           os.path.relpath(af.dir, af.state_dir)))
    out.extend(_store_findings(af))
    out.extend(_entry_findings(af, classify_key))
    out.extend(_file_findings(af, now_ms))
    return out


def check_all(agents, now_ms, classify_key=None):
    """Findings for every agent plus the cross-agent ones (a peer bound in two agents)."""
    if classify_key is None:
        from .store import classify_key
    out = []
    for af in agents:
        try:
            out.extend(check_agent(af, now_ms, classify_key))
        except Exception as exc:  # a check's bug must not lose the other agents' findings
            out.append(finding(af.agent, "warning", "internal-error",
                               "health checks failed: %s: %s" % (type(exc).__name__, exc)))
    try:
        out.extend(_peer_findings(agents, classify_key))
    except Exception as exc:
        out.append(finding(None, "warning", "internal-error",
                           "peer check failed: %s: %s" % (type(exc).__name__, exc)))
    return out
