"""`when = "findings"`: send a notice only when a warning or critical finding is new.

A finding is the same finding from run to run when its host, agent, severity, check, path and
the session key it names (the first quoted part of its detail, if any) are the same: its numbers
(a size, a token count) may move without it being new. The ids of the findings of the last
evaluated result are kept per inventory in `<state>/notify/findings-<hash>.json` (0600):

- a finding is new when it is not among them (one that went away and came back is new again);
- a failed run or host always sends (as `when = "failure"` does);
- after a notice was delivered, or when nothing was new, the kept ids become the current ones;
  after a failed delivery they stay, so the next run tries again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from fleet.report.results import HealthFinding, RunResult

SEVERITIES = ("critical", "warning")
_QUOTED = re.compile(r"'([^']*)'")


def finding_id(host: str, finding: HealthFinding) -> str:
    """The identity of a finding across runs (see the module doc)."""
    quoted = _QUOTED.search(finding.detail or "")
    return "\x1f".join([host, finding.agent or "", finding.severity, finding.check, finding.path or "",
                        quoted.group(1) if quoted else ""])


def current_ids(result: RunResult) -> set[str]:
    return {finding_id(h.host, f) for h in result.hosts for f in h.health if f.severity in SEVERITIES}


def memory_path(inventory_path: Path) -> Path:
    from fleet.home import control_dir

    digest = hashlib.sha256(str(Path(inventory_path).expanduser().absolute()).encode()).hexdigest()[:16]
    return control_dir() / "notify" / f"findings-{digest}.json"


def remembered(inventory_path: Path) -> set[str]:
    """The ids kept after the last evaluation for this inventory (empty when none or unreadable)."""
    try:
        doc = json.loads(memory_path(inventory_path).read_text(encoding="utf-8"))
        return {str(i) for i in doc.get("ids") or ()}
    except (OSError, ValueError, AttributeError):
        return set()


def remember(inventory_path: Path, result: RunResult) -> str | None:
    """Keep the current findings' ids; a problem line when they cannot be written."""
    path = memory_path(inventory_path)
    doc = {"inventory": str(Path(inventory_path).expanduser().absolute()), "run_id": result.run_id,
           "ids": sorted(current_ids(result))}
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(doc, out)
        os.replace(tmp, path)
    except OSError as exc:
        return f"notify: cannot keep the findings in {path}: {exc.strerror or exc}"
    return None


def new_findings(inventory_path: Path, result: RunResult) -> set[str]:
    """Ids of the result's warning/critical findings not kept from the last evaluation."""
    return current_ids(result) - remembered(inventory_path)
