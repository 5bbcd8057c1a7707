"""Playbooks: what a run does, written in TOML with human sizes and durations.

`load_playbook` resolves a name or path (`resolve_playbook`), validates the whole file (and the
files it includes) and compiles it into the agent plan's `operations` and `backup` sections of
docs/agent-protocol.md: sizes in bytes, durations in seconds, every key present. Any problem
raises `fleet.errors.PlaybookError` carrying all of them, each naming file, table and key.
The schema is documented in docs/playbooks.md.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fleet
from fleet.hostside.protocol import OPT_IN_KINDS, PRUNE_CLASSES
from fleet.errors import PlaybookError
from fleet.config.validate import Problems, Table, describe_value, read_toml, suggestion

SLIM_LEVELS = ("none", "tool-output", "aggressive")     # "none" compiles to null
SECTIONS = ("backup", "transcripts", "trajectories", "store", "orphans", "archives", "legacy", "locks", "temp",
            "sqlite")
OPERATIONS = SECTIONS[1:]
_TOP_KEYS = ("description", "include", *SECTIONS)
_TOP_HINTS = {"tiers": 'tiers go in [[transcripts.tier]] tables', "tier": 'write [[transcripts.tier]]',
              "name": "the playbook's name is its file name", "sessions": 'use [store]', "prune": 'use [store] prune'}

# Kinds fleet never prunes by age (shared/spec/openclaw-format.md, "Session keys").
PROTECTED_KINDS = ("main", "group", "channel", "topic", "thread", "cron")
# Entry fields OpenClaw needs to find and order a session; stripping them would lose it.
REQUIRED_ENTRY_FIELDS = ("sessionId", "updatedAt", "sessionFile")
_FIELD_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAX_INCLUDE_DEPTH = 8

# Section defaults, applied after includes are merged (only to sections the playbook has).
_OPERATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "transcripts": {"tiers": [], "tool_output_limit_bytes": 2048, "assistant_text_limit_bytes": 4096,
                    "untouched_turns": 5},
    "trajectories": {"keep_runs": 5, "max_age_s": None},
    "store": {"prune": {}, "prune_direct_after_s": None, "stale_after_s": None, "max_entries": None,
              "strip_fields": [], "rotate_over_bytes": None, "rotate_keep": 3},
    "orphans": {"archive_after_s": 86400},
    "archives": {"delete_after_s": None},
    "legacy": {"keep_records": 200, "slim": "tool-output", "follow_tiers": True},
    "locks": {"remove_stale": False},
    "temp": {"remove_after_s": 3600},
    # openclaw_cmd comes from the inventory, per host (fleet.control.plan.build_plan).
    "sqlite": {"openclaw_cmd": None, "cleanup": True, "trajectory_keep_runs": None, "checkpoint": True, "vacuum": False,
               "gateway_stopped": False, "timeout_s": 300},
}
_BACKUP_DEFAULTS: dict[str, Any] = {"dir": None, "gzip": False, "keep_runs": 10, "max_age_s": 30 * 86400}


@dataclass(frozen=True)
class Playbook:
    name: str
    path: Path
    description: str
    operations: dict      # the agent plan's "operations" section (bytes and seconds)
    backup: dict          # the plan's "backup" section: dir, gzip, keep_runs, max_age_s
    includes: tuple[Path, ...] = ()          # files pulled in by `include`, in merge order
    warnings: tuple[str, ...] = field(default=())


def shipped_playbooks() -> dict[str, Path]:
    """Name → file of every playbook shipped with fleet (wheel: fleet/_playbooks; checkout: playbooks/)."""
    package = Path(fleet.__file__).resolve().parent
    found: dict[str, Path] = {}
    for folder in (package / "_playbooks", package.parent / "playbooks"):
        if folder.is_dir():
            for file in sorted(folder.glob("*.toml")):
                found.setdefault(file.stem, file)
    return found


def resolve_playbook(name_or_path: str) -> Path:
    """The file a PLAYBOOK argument names.

    In order: `name_or_path` itself if it is a file; else `./playbooks/NAME.toml` in the current
    folder; else the shipped playbook NAME. Raises PlaybookError listing the shipped names.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if "/" in name_or_path or path.is_dir():
        raise PlaybookError(f"{name_or_path}: playbook file not found")
    name = name_or_path.removesuffix(".toml")
    shipped = shipped_playbooks()
    if _NAME_RE.fullmatch(name):
        local = Path("playbooks") / f"{name}.toml"
        if local.is_file():
            return local
        if name in shipped:
            return shipped[name]
    raise PlaybookError(f'no playbook "{name_or_path}": not a file, not ./playbooks/{name}.toml and not shipped '
                        f"with fleet{suggestion(name, shipped)} (shipped: {', '.join(shipped) or 'none'})")


def load_playbook(name_or_path: str) -> Playbook:
    """Resolve, validate and compile a playbook; raise PlaybookError with every problem."""
    path = resolve_playbook(name_or_path)
    problems = Problems(path)
    includes: list[Path] = []
    description, partial = _read_file(path, problems, stack=(path.resolve(),), includes=includes)
    operations, backup = _finish(partial, problems)
    problems.raise_if_any(PlaybookError)
    return Playbook(name=path.stem, path=path.resolve(), description=description, operations=operations,
                    backup=backup, includes=tuple(includes), warnings=tuple(problems.warnings))


def _read_file(path: Path, problems: Problems, stack: tuple[Path, ...],
               includes: list[Path]) -> tuple[str, dict[str, dict]]:
    """Validate one file; return its description and its sections with only the keys set
    (its includes merged underneath)."""
    data = read_toml(path, problems)
    if data is None:
        return "", {}
    root = Table(data, "", problems)
    root.check_keys(_TOP_KEYS, _TOP_HINTS)
    description = root.string("description", "", allow_empty=True)
    merged: dict[str, dict] = {}
    for index, name in enumerate(root.string_list("include", []) or []):
        where = f"include[{index}]"
        target = _resolve_include(name, path)
        if target is None:
            problems.add(where, f'no playbook "{name}"{suggestion(name, shipped_playbooks())} '
                                f"(shipped: {', '.join(shipped_playbooks())})")
            continue
        if target.resolve() in stack:
            problems.add(where, f'"{name}" is already being read: include loop')
            continue
        if len(stack) >= _MAX_INCLUDE_DEPTH:
            problems.add(where, f"includes nested more than {_MAX_INCLUDE_DEPTH} deep")
            continue
        inner = Problems(target)
        _, partial = _read_file(target, inner, stack + (target.resolve(),), includes)
        problems.extend(inner)
        includes.append(target.resolve())
        _merge(merged, partial)
    _merge(merged, _read_sections(root))
    return description, merged


def _resolve_include(name: str, including: Path) -> Path | None:
    """An include is looked up next to the including file first, then as a PLAYBOOK argument."""
    for candidate in (including.parent / name, including.parent / f"{name}.toml"):
        if candidate.is_file():
            return candidate
    try:
        return resolve_playbook(name)
    except PlaybookError:
        return None


def _merge(base: dict[str, dict], top: dict[str, dict]) -> None:
    """Key by key, `top` wins; `store.prune` merges kind by kind; lists (tiers, strip_fields) are replaced."""
    for section, values in top.items():
        target = base.setdefault(section, {})
        for key, value in values.items():
            if key == "prune" and isinstance(value, dict):
                target["prune"] = {**target.get("prune", {}), **value}
            else:
                target[key] = value


def _read_sections(root: Table) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for section in SECTIONS:
        if section in root:
            out[section] = {k: v for k, v in _READERS[section](root.table(section)).items() if v is not None}
    return out


def _read_backup(t: Table) -> dict:
    t.check_keys(("dir", "gzip", "keep_runs", "max_age"), {"enabled": "backups cannot be turned off"})
    return {"dir": t.string("dir"), "gzip": t.boolean("gzip"), "keep_runs": t.integer("keep_runs", minimum=1),
            "max_age_s": t.duration("max_age")}


def _read_transcripts(t: Table) -> dict:
    t.check_keys(("tool_output_limit", "assistant_text_limit", "untouched_turns", "tier"),
                 {"tiers": "write one [[transcripts.tier]] table per tier"})
    out: dict[str, Any] = {
        "tool_output_limit_bytes": t.size("tool_output_limit"),
        "assistant_text_limit_bytes": t.size("assistant_text_limit"),
        "untouched_turns": t.integer("untouched_turns", minimum=0),
    }
    tiers = []
    previous: tuple[int, Table] | None = None
    for tier in t.table_list("tier"):
        tier.check_keys(("over", "keep_records", "slim"), {"keep": 'use "keep_records"', "size": 'use "over"'})
        over = tier.size("over", required=True)
        keep = tier.integer("keep_records", required=True, minimum=1)
        slim = tier.string("slim", "none", choices=SLIM_LEVELS)
        if over is not None and previous is not None and over <= previous[0]:
            tier.add("over", f"tiers must grow strictly: {describe_value(tier.data['over'])} is not larger than "
                             f"{previous[1].path}.over = {describe_value(previous[1].data['over'])}")
        if over is not None:
            previous = (over, tier)
        tiers.append({"over_bytes": over, "keep_records": keep, "slim": None if slim == "none" else slim})
    if "tier" in t:
        out["tiers"] = tiers
    return out


def _read_trajectories(t: Table) -> dict:
    t.check_keys(("keep_runs", "max_age"))
    return {"keep_runs": t.integer("keep_runs", minimum=1), "max_age_s": t.duration("max_age")}


def _read_store(t: Table) -> dict:
    t.check_keys(("disposable_after", "prune", "prune_direct_after", "stale_after", "max_entries",
                  "strip_fields", "rotate_over", "rotate_keep"),
                 {"prune_after": 'use "stale_after" (any entry) or "disposable_after" (disposable kinds)',
                  "strip": 'use "strip_fields"'})
    prune: dict[str, int] = {}
    every = t.duration("disposable_after")
    if every is not None:
        # Heartbeats and dreaming sessions stay unless named in `prune` (OPT_IN_KINDS).
        prune = {kind: every for kind in PRUNE_CLASSES if kind not in OPT_IN_KINDS}
    table = t.table("prune")
    for kind in table.keys():
        if kind in PRUNE_CLASSES:
            seconds = table.duration(kind)
            if seconds is not None:
                prune[kind] = seconds
        elif kind == "direct":
            table.add(kind, 'direct messages are pruned with store.prune_direct_after, not store.prune')
        elif kind in PROTECTED_KINDS:
            table.add(kind, f'"{kind}" sessions are protected: fleet never prunes them by age')
        else:
            table.add(kind, f"unknown session kind{suggestion(kind, PRUNE_CLASSES)} "
                            f"(prunable kinds: {', '.join(PRUNE_CLASSES)})")
    out = {
        "prune_direct_after_s": t.duration("prune_direct_after"),
        "stale_after_s": t.duration("stale_after"),
        "max_entries": t.integer("max_entries", minimum=1),
        "strip_fields": t.string_list("strip_fields", item_check=_check_strip_field),
        "rotate_over_bytes": t.size("rotate_over", minimum=1),
        "rotate_keep": t.integer("rotate_keep", minimum=1),
    }
    if "prune" in t or every is not None:
        out["prune"] = prune
    return out


def _check_strip_field(name: str) -> str | None:
    if name in REQUIRED_ENTRY_FIELDS:
        return "must not name a field OpenClaw needs to find the session"
    return None if _FIELD_RE.fullmatch(name) else "expected a field name such as \"skillsSnapshot\""


def _read_orphans(t: Table) -> dict:
    t.check_keys(("archive_after",))
    return {"archive_after_s": t.duration("archive_after")}


def _read_archives(t: Table) -> dict:
    t.check_keys(("delete_after",), {"keep": 'use "delete_after"'})
    return {"delete_after_s": t.duration("delete_after", required=True)}


def _read_legacy(t: Table) -> dict:
    t.check_keys(("keep_records", "slim", "follow_tiers"))
    # "none" stays a string until _finish: None here would mean "not set" and take the default.
    return {"keep_records": t.integer("keep_records", minimum=1), "slim": t.string("slim", choices=SLIM_LEVELS),
            "follow_tiers": t.boolean("follow_tiers")}


def _read_locks(t: Table) -> dict:
    t.check_keys(("remove_stale",))
    return {"remove_stale": t.boolean("remove_stale")}


def _read_sqlite(t: Table) -> dict:
    """SQLite-era agents (OpenClaw 2026.8+). Changes go through the host's own `openclaw sessions
    cleanup` (the inventory's `openclaw_cmd`); without it nothing in the database is changed."""
    t.check_keys(("cleanup", "trajectory_keep_runs", "checkpoint", "vacuum", "gateway_stopped", "timeout"))
    out: dict = {}
    for key in ("cleanup", "checkpoint", "vacuum", "gateway_stopped"):
        if key in t:
            out[key] = t.boolean(key)
    if "trajectory_keep_runs" in t:
        out["trajectory_keep_runs"] = t.integer("trajectory_keep_runs", minimum=1)
    if "timeout" in t:
        out["timeout_s"] = t.duration("timeout")
    if out.get("vacuum") and not out.get("gateway_stopped"):
        t.add("vacuum", "VACUUM rewrites the whole database: set gateway_stopped = true as well, and only "
                        "when the gateway is really stopped")
    return out


def _read_temp(t: Table) -> dict:
    t.check_keys(("remove_after",))
    return {"remove_after_s": t.duration("remove_after")}


_READERS = {"backup": _read_backup, "transcripts": _read_transcripts, "trajectories": _read_trajectories,
            "store": _read_store, "orphans": _read_orphans, "archives": _read_archives, "legacy": _read_legacy,
            "locks": _read_locks, "temp": _read_temp, "sqlite": _read_sqlite}


def _finish(partial: dict[str, dict], problems: Problems) -> tuple[dict, dict]:
    """Apply defaults; check what only the merged playbook can show (empty tiers, a no-op).

    Those checks run only on an otherwise valid playbook: a bad value already reported would
    otherwise show up a second time as "does nothing".
    """
    checks = not problems
    operations: dict[str, dict] = {}
    for section in OPERATIONS:
        if section in partial:
            values = {**_OPERATION_DEFAULTS[section], **partial[section]}
            operations[section] = {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
                                   for k, v in values.items()}
    if operations.get("legacy", {}).get("slim") == "none":
        operations["legacy"]["slim"] = None
    if "legacy" in operations:
        # Legacy *.session.json files are trimmed by the transcripts' tiers when there are any.
        follow = operations["legacy"].pop("follow_tiers", True)
        tiers = operations.get("transcripts", {}).get("tiers") or []
        operations["legacy"]["tiers"] = [dict(tier) for tier in tiers] if follow else []
    backup = {**_BACKUP_DEFAULTS, **partial.get("backup", {})}
    if checks and "transcripts" in operations and not operations["transcripts"]["tiers"]:
        problems.add("transcripts", "no tiers: add at least one [[transcripts.tier]] with over and keep_records")
    store = operations.get("store")
    if checks and store is not None and not (store["prune"] or store["prune_direct_after_s"] is not None
                                  or store["stale_after_s"] is not None or store["max_entries"] is not None
                                  or store["strip_fields"] or store["rotate_over_bytes"] is not None):
        problems.add("store", "does nothing: set disposable_after, prune, stale_after, max_entries, "
                              "strip_fields or rotate_over (or remove [store])")
    if checks and not operations:
        problems.add("", f"does nothing: add at least one of {', '.join(f'[{s}]' for s in OPERATIONS)}")
    return operations, backup


def describe_playbook(playbook: Playbook) -> str:
    """The text of `fleet playbook check`: what each section will do, in words and numbers."""
    from fleet.units import human_bytes

    ops, backup = playbook.operations, playbook.backup
    lines = [f"Playbook {playbook.name} ({playbook.path})"]
    if playbook.description:
        lines.append(f"  {playbook.description}")
    if playbook.includes:
        lines.append(f"  includes: {', '.join(str(p) for p in playbook.includes)}")
    lines.append("")
    lines.append(f"backup: verified copy of every changed file in {backup['dir'] or '<state_dir>/fleet-backups/<run_id>'}"
                 f"{' (gzip)' if backup['gzip'] else ''}; keep {backup['keep_runs']} runs, "
                 f"at most {_human_duration(backup['max_age_s'])}")
    if "transcripts" in ops:
        t = ops["transcripts"]
        lines.append("transcripts:")
        for tier in t["tiers"]:
            lines.append(f"  over {human_bytes(tier['over_bytes']):>7}: keep the last {tier['keep_records']} records"
                         f"{', slim ' + tier['slim'] if tier['slim'] else ''}")
        lines.append(f"  slim limits: tool output {human_bytes(t['tool_output_limit_bytes'])}, assistant text "
                     f"{human_bytes(t['assistant_text_limit_bytes'])}; last {t['untouched_turns']} turns untouched")
    if "trajectories" in ops:
        tr = ops["trajectories"]
        age = f", drop runs older than {_human_duration(tr['max_age_s'])}" if tr["max_age_s"] is not None else ""
        lines.append(f"trajectories: keep the last {tr['keep_runs']} runs{age}")
    if "store" in ops:
        s = ops["store"]
        lines.append("store:")
        by_age: dict[int, list[str]] = {}
        for kind, seconds in s["prune"].items():
            by_age.setdefault(seconds, []).append(kind)
        for seconds, kinds in by_age.items():
            lines.append(f"  prune {', '.join(kinds)} idle > {_human_duration(seconds)} (files archived)")
        kept = [kind for kind in OPT_IN_KINDS if kind not in s["prune"]]
        if kept:
            lines.append(f"  keep {', '.join(kept)} sessions (protected unless named in prune)")
        if s["prune_direct_after_s"] is not None:
            lines.append(f"  prune direct messages idle > {_human_duration(s['prune_direct_after_s'])}")
        if s["stale_after_s"] is not None:
            lines.append(f"  remove unprotected entries idle > {_human_duration(s['stale_after_s'])}")
        if s["max_entries"] is not None:
            lines.append(f"  at most {s['max_entries']} entries (protected entries are never removed)")
        if s["strip_fields"]:
            lines.append(f"  strip {', '.join(s['strip_fields'])}")
        if s["rotate_over_bytes"] is not None:
            lines.append(f"  rotate a store over {human_bytes(s['rotate_over_bytes'])}, keep {s['rotate_keep']}")
    if "orphans" in ops:
        lines.append(f"orphans: archive unreferenced transcripts older than {_human_duration(ops['orphans']['archive_after_s'])}")
    if "archives" in ops:
        after = ops["archives"]["delete_after_s"]
        lines.append("archives: kept" if after is None else f"archives: delete archives older than {_human_duration(after)}")
    if "legacy" in ops:
        lg = ops["legacy"]
        if lg.get("tiers"):
            lines.append("legacy: *.session.json files trimmed by the transcript tiers above")
        else:
            lines.append(f"legacy: keep the last {lg['keep_records']} records{', slim ' + lg['slim'] if lg['slim'] else ''}")
    if "locks" in ops:
        lines.append(f"locks: {'remove stale locks' if ops['locks']['remove_stale'] else 'report stale locks only'}")
    if "temp" in ops:
        lines.append(f"temp: remove temp files older than {_human_duration(ops['temp']['remove_after_s'])}")
    if "sqlite" in ops:
        lines.append(f"sqlite: {_describe_sqlite(ops['sqlite'])}")
    for warning in playbook.warnings:
        lines.append(f"warning: {warning}")
    lines.append("")
    lines.append(f"OK: {len(ops)} operation{'s' if len(ops) != 1 else ''}")
    return "\n".join(lines)


def _describe_sqlite(q: dict) -> str:
    """The [sqlite] operation in words (SQLite-era agents, OpenClaw 2026.8+)."""
    parts = []
    if q["cleanup"]:
        parts.append(f"OpenClaw's own `sessions cleanup` (timeout {_human_duration(q['timeout_s'])})")
    if q["trajectory_keep_runs"] is not None:
        parts.append(f"keep each session's last {q['trajectory_keep_runs']} trajectory runs")
    if q["checkpoint"]:
        parts.append("WAL checkpoint")
    if q["vacuum"]:
        parts.append("VACUUM (gateway stopped)")
    done = "; ".join(parts) if parts else "scan and back up only"
    return f"{done}; hosts without openclaw_cmd in the inventory are only scanned and backed up"


def _human_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        # "24h" reads better than "1d"; from two days on, days.
        if seconds >= size and seconds % size == 0 and not (unit == "d" and seconds < 2 * 86400):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
