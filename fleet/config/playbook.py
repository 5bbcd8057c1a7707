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

import fleet
from fleet.errors import PlaybookError
from fleet.hostside import ops as op_table
from fleet.hostside.protocol import BACKUP_DEFAULTS
from fleet.config.validate import Problems, Table, read_toml, suggestion
from fleet.units import human_bytes, human_duration

_TOP_HINTS = {"tiers": 'tiers go in [[transcripts.tier]] tables', "tier": 'write [[transcripts.tier]]',
              "name": "the playbook's name is its file name", "sessions": 'use [store]', "prune": 'use [store] prune'}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAX_INCLUDE_DEPTH = 8


def sections() -> tuple[str, ...]:
    """The playbook's tables: [backup], then one per operation (fleet/hostside/ops/)."""
    return ("backup", *(op.SECTION for op in op_table.OPERATIONS))


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
    root.check_keys(("description", "include", *sections()), _TOP_HINTS)
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
    """Each table present, read by its own reader: [backup] here, operations by theirs (ops/)."""
    out: dict[str, dict] = {}
    for section in sections():
        if section in root:
            read = _read_backup if section == "backup" else op_table.BY_SECTION[section].read
            out[section] = {k: v for k, v in read(root.table(section)).items() if v is not None}
    return out


def _read_backup(t: Table) -> dict:
    from fleet.config.inventory import read_backup_to
    t.check_keys(("dir", "gzip", "keep_runs", "max_age", "to"), {"enabled": "backups cannot be turned off"})
    return {"dir": t.string("dir"), "gzip": t.boolean("gzip"), "keep_runs": t.integer("keep_runs", minimum=1),
            "max_age_s": t.duration("max_age"), "to": read_backup_to(t, "to")}


def _finish(partial: dict[str, dict], problems: Problems) -> tuple[dict, dict]:
    """Apply defaults; check what only the merged playbook can show (empty tiers, a no-op).

    Those checks run only on an otherwise valid playbook: a bad value already reported would
    otherwise show up a second time as "does nothing".
    """
    checks = not problems
    operations: dict[str, dict] = {}
    for op in op_table.OPERATIONS:
        section = op.SECTION
        if section in partial:
            values = {**op.DEFAULTS, **partial[section]}
            values = {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
                      for k, v in values.items()}
            operations[section] = op.compile(values) if hasattr(op, "compile") else values
            problem = op.problem(operations[section]) if checks and hasattr(op, "problem") else None
            if problem:
                problems.add(section, problem)
    # "to" only when the playbook sets it: otherwise the host's backup_to (inventory) decides, per
    # host (control.plan.build_plan).
    backup = {**{k: v for k, v in BACKUP_DEFAULTS.items() if k != "to"}, **partial.get("backup", {})}
    if checks and not operations:
        problems.add("", f"does nothing: add at least one of {', '.join(f'[{s}]' for s in sections()[1:])}")
    return operations, backup


def describe_playbook(playbook: Playbook) -> str:
    """The text of `fleet playbook check`: what each section will do, in words and numbers."""
    ops, backup = playbook.operations, playbook.backup
    lines = [f"Playbook {playbook.name} ({playbook.path})"]
    if playbook.description:
        lines.append(f"  {playbook.description}")
    if playbook.includes:
        lines.append(f"  includes: {', '.join(str(p) for p in playbook.includes)}")
    lines.append("")
    to = backup.get("to")
    where = (f"the host's backup_to (inventory), else {backup['dir'] or '<state_dir>/fleet-backups/<run_id>'}"
             if to is None else {"controller": "the control host (streamed, gzip, sha256-verified)",
                                 "auto": "the host when there is room, else the control host",
                                 "host": backup['dir'] or '<state_dir>/fleet-backups/<run_id>'}.get(to, to))
    lines.append(f"backup: verified copy of every changed file in {where}"
                 f"{' (gzip)' if backup['gzip'] else ''}; keep {backup['keep_runs']} runs, "
                 f"at most {human_duration(backup['max_age_s'])}")
    for op in op_table.OPERATIONS:
        if op.SECTION in ops:
            lines.extend(op.describe(ops[op.SECTION], human_bytes, human_duration))
    for warning in playbook.warnings:
        lines.append(f"warning: {warning}")
    lines.append("")
    lines.append(f"OK: {len(ops)} operation{'s' if len(ops) != 1 else ''}")
    return "\n".join(lines)
