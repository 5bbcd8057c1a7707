"""The control host's own folder: history, schedules, logs, retry lists, controller-side backups.

Not to be confused with OpenClaw's state dir on a host (`state_dir` in the inventory): this is
fleet's folder on the machine fleet runs from.

Where: `$FLEET_STATE_DIR`, else `$XDG_STATE_HOME/fleet`, else `~/.local/state/fleet`.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "FLEET_STATE_DIR"


def control_dir() -> Path:
    """fleet's folder on the control host, absolute (not created here)."""
    if os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR]).expanduser()
    elif os.environ.get("XDG_STATE_HOME"):
        path = Path(os.environ["XDG_STATE_HOME"]).expanduser() / "fleet"
    else:
        path = Path.home() / ".local" / "state" / "fleet"
    return Path(os.path.abspath(path))


def private_dir(path: Path) -> Path:
    """`path`, created with its parents as 0700 where missing (reports and logs hold session text)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
