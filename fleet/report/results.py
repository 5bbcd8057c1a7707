"""Outcomes as values: one frozen HostResult per host, one RunResult per run.

`parse_agent_output` turns what the agent printed into a HostResult; it is a pure function,
tested on recorded outputs. `RunResult.to_json()` is the `--json` document of
docs/contract.md ("fleet.run/1" / "fleet.scan/1").
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from fleet.hostside.terms import PROTOCOL_VERSION


@dataclass(frozen=True)
class Stats:
    bytes: int
    records: int
    sha256: str | None = None

    @classmethod
    def from_json(cls, d: dict | None) -> "Stats":
        d = d or {}
        return cls(int(d.get("bytes") or 0), int(d.get("records") or 0), d.get("sha256"))

    def to_json(self) -> dict:
        return {"bytes": self.bytes, "records": self.records, "sha256": self.sha256}


@dataclass(frozen=True)
class FileResult:
    agent: str
    path: str
    kind: str
    action: str
    actions: tuple[str, ...]
    before: Stats
    after: Stats
    backup: str | None = None
    backup_sha256: str | None = None
    archived_to: str | None = None
    notes: tuple[str, ...] = ()
    error: str | None = None

    @classmethod
    def from_json(cls, d: dict) -> "FileResult":
        return cls(
            agent=str(d.get("agent", "")), path=str(d.get("path", "")), kind=str(d.get("kind", "other")),
            action=str(d.get("action", "none")), actions=tuple(d.get("actions") or ()),
            before=Stats.from_json(d.get("before")), after=Stats.from_json(d.get("after") or d.get("before")),
            backup=d.get("backup"), backup_sha256=d.get("backup_sha256"), archived_to=d.get("archived_to"),
            notes=tuple(d.get("notes") or ()), error=d.get("error"),
        )

    def to_json(self) -> dict:
        return {
            "agent": self.agent, "path": self.path, "kind": self.kind, "action": self.action,
            "actions": list(self.actions), "before": self.before.to_json(), "after": self.after.to_json(),
            "backup": self.backup, "backup_sha256": self.backup_sha256, "archived_to": self.archived_to,
            "notes": list(self.notes), "error": self.error,
        }


@dataclass(frozen=True)
class HealthFinding:
    agent: str
    severity: str        # "info" | "warning" | "critical"
    check: str
    detail: str
    path: str | None = None

    @classmethod
    def from_json(cls, d: dict) -> "HealthFinding":
        return cls(str(d.get("agent", "")), str(d.get("severity", "info")), str(d.get("check", "")),
                   str(d.get("detail", "")), d.get("path"))

    def to_json(self) -> dict:
        return {"agent": self.agent, "severity": self.severity, "check": self.check,
                "detail": self.detail, "path": self.path}


@dataclass(frozen=True)
class HostResult:
    """What happened on one host. A failed host has ok=False and an `error` a person can act on."""

    host: str
    ok: bool
    error: str | None = None
    elapsed_s: float = 0.0
    files: tuple[FileResult, ...] = ()
    health: tuple[HealthFinding, ...] = ()
    agents: tuple[dict, ...] = ()
    backup_dir: str | None = None
    backup_bytes: int = 0
    expired_backup_bytes: int = 0
    state_dir: str | None = None
    interrupted: bool = False
    stderr_tail: str = ""
    backup_to: str | None = None        # "host" | "controller" | "auto" (the agent's backup.to)
    disk: dict | None = None            # {"before": {"free", "total"}, "after": {...}} of the state dir's disk

    @property
    def before_bytes(self) -> int:
        return sum(f.before.bytes for f in self.files)

    @property
    def after_bytes(self) -> int:
        return sum(f.after.bytes for f in self.files)

    @property
    def file_errors(self) -> tuple[FileResult, ...]:
        return tuple(f for f in self.files if f.error)

    @classmethod
    def failed(cls, host: str, error: str, elapsed_s: float = 0.0, stderr_tail: str = "",
               interrupted: bool = False) -> "HostResult":
        return cls(host=host, ok=False, error=error, elapsed_s=elapsed_s, stderr_tail=stderr_tail,
                   interrupted=interrupted)

    def to_json(self) -> dict:
        return {
            "host": self.host, "ok": self.ok, "error": self.error, "elapsed_s": round(self.elapsed_s, 3),
            "state_dir": self.state_dir, "interrupted": self.interrupted,
            "files": [f.to_json() for f in self.files],
            "health": [h.to_json() for h in self.health],
            "agents": [dict(a) for a in self.agents],
            "backup_dir": self.backup_dir, "backup_bytes": self.backup_bytes,
            "expired_backup_bytes": self.expired_backup_bytes,
            "before_bytes": self.before_bytes, "after_bytes": self.after_bytes,
            "backup_to": self.backup_to, "disk": self.disk,
        }

    @classmethod
    def from_json(cls, d: dict) -> "HostResult":
        return cls(
            host=d["host"], ok=bool(d.get("ok")), error=d.get("error"), elapsed_s=float(d.get("elapsed_s") or 0),
            files=tuple(FileResult.from_json(f) for f in d.get("files") or ()),
            health=tuple(HealthFinding.from_json(h) for h in d.get("health") or ()),
            agents=tuple(d.get("agents") or ()), backup_dir=d.get("backup_dir"),
            backup_bytes=int(d.get("backup_bytes") or 0), expired_backup_bytes=int(d.get("expired_backup_bytes") or 0),
            state_dir=d.get("state_dir"), interrupted=bool(d.get("interrupted")),
            backup_to=d.get("backup_to"), disk=d.get("disk"),
        )


@dataclass(frozen=True)
class RunResult:
    """One `fleet scan` / `fleet run` / `fleet restore` over the selected hosts."""

    run_id: str
    kind: str                 # "scan" | "run" | "restore"
    playbook: str | None
    dry_run: bool
    started_at: str
    finished_at: str
    hosts: tuple[HostResult, ...]
    extra: dict = field(default_factory=dict)

    @property
    def schema(self) -> str:
        return "fleet.scan/1" if self.kind == "scan" else "fleet.run/1"

    @property
    def ok(self) -> bool:
        return all(h.ok and not h.file_errors for h in self.hosts)

    def totals(self) -> dict:
        before = sum(h.before_bytes for h in self.hosts)
        after = sum(h.after_bytes for h in self.hosts)
        return {
            "hosts": len(self.hosts),
            "hosts_ok": sum(1 for h in self.hosts if h.ok),
            "hosts_failed": sum(1 for h in self.hosts if not h.ok),
            "before_bytes": before,
            "after_bytes": after,
            "freed_bytes": before - after,
            "backup_bytes": sum(h.backup_bytes for h in self.hosts),
            "expired_backup_bytes": sum(h.expired_backup_bytes for h in self.hosts),
            "files": sum(len(h.files) for h in self.hosts),
            "files_changed": sum(1 for h in self.hosts for f in h.files if f.action not in ("none", "skip")),
            "file_errors": sum(len(h.file_errors) for h in self.hosts),
        }

    def to_json(self) -> dict:
        doc = {
            "schema": self.schema, "run_id": self.run_id, "kind": self.kind, "playbook": self.playbook,
            "dry_run": self.dry_run, "started_at": self.started_at, "finished_at": self.finished_at,
            "hosts": [h.to_json() for h in self.hosts], "totals": self.totals(),
        }
        doc.update(self.extra)
        return doc

    @classmethod
    def from_json(cls, d: dict) -> "RunResult":
        known = {"schema", "run_id", "kind", "playbook", "dry_run", "started_at", "finished_at", "hosts", "totals"}
        kind = d.get("kind") or ("scan" if d.get("schema") == "fleet.scan/1" else "run")
        return cls(run_id=d["run_id"], kind=kind, playbook=d.get("playbook"), dry_run=bool(d.get("dry_run")),
                   started_at=d.get("started_at", ""), finished_at=d.get("finished_at", ""),
                   hosts=tuple(HostResult.from_json(h) for h in d.get("hosts") or ()),
                   extra={k: v for k, v in d.items() if k not in known})


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _last_progress_error(stderr: str) -> str | None:
    """The agent reports fatal errors as a JSON progress line {"event": "fatal", "error": …}."""
    for line in reversed(stderr.strip().splitlines()):
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and ev.get("event") == "fatal":
            return str(ev.get("error"))
    return None


def _not_progress(stderr: str) -> str:
    """stderr without the agent's JSON progress lines: what a shell or Python itself said."""
    return "\n".join(line for line in stderr.splitlines() if not line.lstrip().startswith('{"'))


def parse_agent_output(host: str, stdout: str, stderr: str, exit_code: int | None,
                       elapsed_s: float) -> HostResult:
    """Turn the agent's stdout/stderr/exit code into a HostResult (pure; never raises).

    Exit 0 or 1 with a result document → ok host (file errors are in the files), unless an error
    no file carries (agents[].errors, backup.error) makes it a failed host. Anything else →
    failed host whose error says what the agent said, or what the shell said
    (e.g. "python3: command not found").
    """
    doc: Any = None
    text = stdout.strip()
    if text:
        try:
            doc = json.loads(text)
        except ValueError:
            # The result is the last line; anything before it is noise from the host's shell.
            try:
                doc = json.loads(text.splitlines()[-1])
            except ValueError:
                doc = None
    if not isinstance(doc, dict) or "protocol" not in doc:
        reason = _last_progress_error(stderr) or _tail(_not_progress(stderr), 3)
        if not reason and text.startswith("{"):
            reason = (f"its result was cut off after {len(text)} characters "
                      f"(the connection or the agent ended early)")
        elif not reason:
            reason = _tail(stdout, 3) or ("it ended without any output (killed, or the connection was lost)"
                                          if exit_code is None else "no output")
        return HostResult.failed(host, f"agent failed (exit {exit_code}): {reason}", elapsed_s, _tail(stderr))
    if doc.get("protocol") != PROTOCOL_VERSION:
        return HostResult.failed(host, f"agent speaks protocol {doc.get('protocol')!r}, fleet needs "
                                       f"{PROTOCOL_VERSION}: the cached agent is stale; run again to replace it",
                                 elapsed_s, _tail(stderr))
    files = tuple(FileResult.from_json(f) for f in doc.get("files") or ())
    health = tuple(HealthFinding.from_json(h) for h in doc.get("health") or ())
    backup = doc.get("backup") or {}
    error = doc.get("error")
    # Problems no file carries (an agent not found, a backup that failed) must not pass as success.
    unfiled = [f"agent {a.get('agent')}: {e}" for a in doc.get("agents") or () for e in a.get("errors") or ()]
    if backup.get("error"):
        unfiled.append(f"backup: {backup['error']}")
    if unfiled and not error:
        error = "; ".join(unfiled)
    ok = exit_code in (0, 1) and not error
    if not ok and not error:
        error = f"agent exited {exit_code}: {_last_progress_error(stderr) or _tail(stderr, 3)}"
    return HostResult(
        host=host, ok=ok, error=error, elapsed_s=elapsed_s, files=files, health=health,
        agents=tuple(doc.get("agents") or ()), backup_dir=backup.get("dir"),
        backup_bytes=int(backup.get("bytes") or 0), expired_backup_bytes=int(backup.get("expired_bytes") or 0),
        state_dir=(doc.get("host") or {}).get("state_dir"), stderr_tail=_tail(stderr),
        backup_to=backup.get("to"), disk=doc.get("disk"),
    )


def host_results_ok(results: Iterable[HostResult]) -> bool:
    return all(r.ok and not r.file_errors for r in results)
