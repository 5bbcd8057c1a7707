"""Health findings from discovery's view of the agents (read-only; never parses a transcript).

Each finding is {"agent", "severity": info|warning|critical, "check", "detail", "path"}.
Checks: store-empty / store-invalid / store-shape / store-unreadable (critical), store-missing,
session-id-unsafe (critical), transcript-missing, orphan-transcript, transcript-size, tokens,
stale-lock, temp-leftover, peer-shared, half-migrated (critical).

Thresholds come from the plan's "health" section (protocol.HEALTH_DEFAULTS when absent): a
transcript over `transcript_warn_bytes` warns; a session's tokens over its kind's (warning,
critical) pair warn or are critical. A store's `totalTokens` is OpenClaw's count from the
session's last run: once the transcript was rewritten after that run (a trim: its mtime is later
than the entry's updatedAt) and holds less than half that count (bytes / 4), the count is
stale; the finding then judges the re-estimate and says so.
"""
import os

from .fsutil import is_safe_id
from .locks import lock_state
from .terms import HEALTH_DEFAULTS

TRANSCRIPT_WARN_BYTES = HEALTH_DEFAULTS["transcript_warn_bytes"]
TEMP_LEFTOVER_S = 5 * 60
# (warning, critical) token thresholds per session type.
TOKEN_THRESHOLDS = dict((k, tuple(v)) for k, v in HEALTH_DEFAULTS["tokens"].items())


def finding(agent, severity, check, detail, path=None):
    return {"agent": agent, "severity": severity, "check": check, "detail": detail, "path": path}


_BYTE_UNITS = (("TB", 1024 ** 4), ("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024))


def human_bytes(n):
    """A copy of fleet.units.human_bytes (this program imports nothing of fleet): "1.9 MB",
    "458 KB", "2 MB", "0 B". tests/test_units.py keeps the two equal."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit, size in _BYTE_UNITS:
        if n >= size:
            value = float(n) / size
            text = "%.1f" % value if round(value, 1) < 10 else "%.0f" % value
            if text.endswith(".0"):
                text = text[:-2]
            return "%s%s %s" % (sign, text, unit)
    return "%s%d B" % (sign, int(n))


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


def _entry_findings(af, classify_key, limits):
    out = []
    if not af.store_usable:
        return out
    transcripts = dict((os.path.basename(f.path), f) for f in af.files if f.kind == "transcript")
    sizes = dict((name, f.size) for name, f in transcripts.items())
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
        if kind in limits["tokens"]:
            out.extend(_token_findings(af, key, entry, kind, transcripts.get(name), limits["tokens"][kind]))
    return out


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def stale_token_count(entry, transcript):
    """The re-estimated tokens (bytes / 4) when the entry's totalTokens predates a rewrite of its
    transcript that left less than half of what it counts (a trim), else None."""
    total, updated = entry.get("totalTokens"), entry.get("updatedAt")
    if transcript is None or not _number(total) or not _number(updated):
        return None
    estimate = transcript.size // 4
    # Half, not merely fewer: the count also holds the system prompt and tools, which the
    # transcript does not; a trim leaves far less than half (191k counted, 43k left).
    if transcript.mtime_ns // 1000000 > updated and estimate < total / 2:
        return estimate
    return None


def _token_findings(af, key, entry, kind, transcript, pair):
    total = entry.get("totalTokens")
    # contextTokens is the model's window, not usage: it only explains the number.
    window = entry.get("contextTokens")
    transcript_bytes = transcript.size if transcript is not None else 0
    stale = stale_token_count(entry, transcript)
    if stale is not None:
        tokens = stale
        source = ("re-estimated from the %s transcript, bytes / 4; totalTokens %d is stale: counted "
                  "before the transcript was rewritten" % (human_bytes(transcript_bytes), int(total)))
    elif _number(total) and total > 0:
        tokens, source = int(total), "totalTokens"
    elif transcript_bytes:
        tokens, source = transcript_bytes // 4, "transcript bytes / 4"
    else:
        return []
    warn, crit = pair
    if tokens < warn:
        if stale is not None and total >= warn:
            # Say once that the store's figure is out of date, so nobody acts on it.
            return [finding(af.agent, "info", "tokens", "%s session %r: about %d tokens (%s)" % (
                kind, key, tokens, source), af.store_info.rel)]
        return []
    severity = "critical" if tokens >= crit else "warning"
    detail = "%s session %r uses %d tokens (%s)%s; %s above %d" % (
        kind, key, tokens, source,
        " of a %d-token context" % window if isinstance(window, int) and window > 0 else "",
        severity, crit if severity == "critical" else warn)
    return [finding(af.agent, severity, "tokens", detail, af.store_info.rel)]


def _file_findings(af, now_ms, limits):
    out = []
    warn_bytes = limits["transcript_warn_bytes"]
    for info in af.files:
        if info.rel in af.problems:
            continue
        if info.kind in ("transcript", "legacy") and info.size > warn_bytes:
            out.append(finding(af.agent, "warning", "transcript-size",
                               "%s is %s (over %s)" % ("transcript" if info.kind == "transcript" else "legacy session file",
                                                      human_bytes(info.size), human_bytes(warn_bytes)),
                               info.rel))
        elif info.kind == "orphan":
            severity = "warning" if info.size > warn_bytes else "info"
            out.append(finding(af.agent, severity, "orphan-transcript",
                               "transcript of %s not referenced by sessions.json" % human_bytes(info.size), info.rel))
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


def check_agent(af, now_ms, classify_key, limits=None):
    """Findings of one discovered agent (limits: the plan's validated "health" section)."""
    limits = limits or HEALTH_DEFAULTS
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
    out.extend(_entry_findings(af, classify_key, limits))
    out.extend(_file_findings(af, now_ms, limits))
    return out


def check_all(agents, now_ms, classify_key=None, limits=None):
    """Findings for every agent plus the cross-agent ones (a peer bound in two agents).

    `limits` is the plan's "health" section (protocol.validate_health); None: the defaults."""
    if classify_key is None:
        from .store import classify_key
    out = []
    for af in agents:
        try:
            out.extend(check_agent(af, now_ms, classify_key, limits))
        except Exception as exc:  # a check's bug must not lose the other agents' findings
            out.append(finding(af.agent, "warning", "internal-error",
                               "health checks failed: %s: %s" % (type(exc).__name__, exc)))
    try:
        out.extend(_peer_findings(agents, classify_key))
    except Exception as exc:
        out.append(finding(None, "warning", "internal-error",
                           "peer check failed: %s: %s" % (type(exc).__name__, exc)))
    return out
