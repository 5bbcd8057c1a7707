"""What a playbook's sections mean for a SQLite-era agent (the same playbook, both eras).

- `store.prune` (disposable kinds idle longer than an age): OpenClaw's own `sessions cleanup`
  with that age (sqlite_clean.py), accepted only when it removes exactly such sessions;
- `trajectories.keep_runs` (or `sqlite.trajectory_keep_runs`): the trajectory cap;
- after any change, and whenever the database has free pages: the space reclaim;
- `transcripts.tiers`: OpenClaw's own transcript trim, loaded with the host's Node (sqlite_trim.py);
- `store.strip_fields`: OpenClaw's own entry update, loaded the same way;
- `store.stale_after_s` / `max_entries` (maintenance): OpenClaw's own cleanup with
  session.maintenance pruneAfter / maxEntries, judged like the prune (sqlite_clean.judge_prune);
- a tier's `slim`: fleet has no write path into OpenClaw's transcript rows that OpenClaw has
  proved, so it is reported as not done, with the reason, where it would have changed something.
"""
from .terms import SQLITE_DEFAULTS

NO_PROVED_WRITE = ("fleet has no write into OpenClaw's %s that OpenClaw itself has proved safe on this "
                   "schema; OpenClaw keeps them as they are")


def sqlite_settings(ops):
    """(the `sqlite` settings this plan implies, or None when it asks nothing of a SQLite agent;
    what the plan's other sections ask: {"prune": store.prune {kind: age_s}, "caps": store's
    {stale_after_s, max_entries} that are set, "tiers": transcripts.tiers, "strip_fields"})."""
    store = ops.get("store") or {}
    want = {"prune": dict((k, v) for k, v in (store.get("prune") or {}).items() if v is not None),
            "caps": dict((k, store[k]) for k in ("stale_after_s", "max_entries") if store.get(k) is not None),
            "tiers": (ops.get("transcripts") or {}).get("tiers") or [],
            "strip_fields": store.get("strip_fields") or []}
    keep_runs = (ops.get("trajectories") or {}).get("keep_runs")
    if "sqlite" not in ops and not keep_runs and not any(want.values()):
        return None, want
    cfg = dict(SQLITE_DEFAULTS, **(ops.get("sqlite") or {}))
    if cfg["trajectory_keep_runs"] is None and keep_runs:
        cfg["trajectory_keep_runs"] = keep_runs
    return cfg, want


def unsupported(ops, info):
    """[(what, why)] for the plan's JSON-era steps that would change something on this database."""
    out = []
    sessions = (info or {}).get("sessions") or {}
    slim = [t for t in (ops.get("transcripts") or {}).get("tiers") or [] if t.get("slim")]
    if slim:
        low = min(t["over_bytes"] for t in slim)
        over = [s for s in sessions.values() if s["transcript_text_bytes"] > low]
        if over:
            out.append(("slimming transcripts (%d session(s) over %d bytes)" % (len(over), low),
                        NO_PROVED_WRITE % "transcript_events rows"))
    return out
