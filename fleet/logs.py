"""What fleet says about its own steps: `-v`, `-vv`, `-q` and `--log-file`.

Every module logs through the standard `logging` tree under "fleet" (e.g. "fleet.runner",
"fleet.transport"); this module only decides where those lines go. It sits beside errors/units:
any layer may log, none imports this.

- default: nothing from the log on stderr (progress lines and warnings are printed as before).
- `-v`: each host's steps on stderr: connecting (user@address:port, keys, known_hosts), agent
  uploaded or cached, agent started, result, elapsed.
- `-vv`: also the SSH conversation (paramiko's INFO: banner, key exchange, authentication) and
  the agent's own stderr lines per host.
- `-q`: no progress lines and no notes; errors and the result itself still print.
- `--log-file FILE`: every step at the `-vv` level with times, appended to FILE (mode 0600),
  whatever -v/-q say; for runs made by hand that should leave a trace like scheduled ones.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

_state = {"quiet": False, "verbosity": 0}
_HANDLER_MARK = "_fleet_cli_handler"


def quiet() -> bool:
    """True after `-q`: progress lines and notes are not printed."""
    return bool(_state["quiet"])


def verbosity() -> int:
    return int(_state["verbosity"])


def configure(verbose: int = 0, quiet_flag: bool = False, log_file: Optional[Path] = None) -> None:
    """Route the "fleet" (and, from -vv, "paramiko") loggers for this command.

    Called once per CLI invocation; handlers from an earlier call in the same process (tests run
    the CLI in-process) are removed first, so lines are never written twice.
    """
    from fleet.errors import UsageError

    if verbose and quiet_flag:
        raise UsageError("-q and -v contradict each other: choose one")
    _state.update(quiet=quiet_flag, verbosity=verbose)
    fleet_log, ssh_log = logging.getLogger("fleet"), logging.getLogger("paramiko")
    for logger in (fleet_log, ssh_log):
        for handler in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
            logger.removeHandler(handler)
            handler.close()
    fleet_log.propagate = False
    levels = []
    if verbose:
        handler = logging.StreamHandler(_Stderr())
        handler.setFormatter(logging.Formatter("fleet: %(message)s"))
        handler.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
        setattr(handler, _HANDLER_MARK, True)
        fleet_log.addHandler(handler)
        levels.append(handler.level)
        if verbose >= 2:
            ssh_handler = logging.StreamHandler(_Stderr())
            ssh_handler.setFormatter(logging.Formatter("fleet: ssh: %(message)s"))
            ssh_handler.setLevel(logging.INFO)
            setattr(ssh_handler, _HANDLER_MARK, True)
            ssh_log.addHandler(ssh_handler)
    if log_file is not None:
        path = Path(log_file).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.close(fd)
            handler = logging.FileHandler(path, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--log-file {path}: cannot write: {exc.strerror or exc}") from None
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.DEBUG)
        setattr(handler, _HANDLER_MARK, True)
        fleet_log.addHandler(handler)
        file_ssh = logging.FileHandler(path, encoding="utf-8")
        file_ssh.setFormatter(handler.formatter)
        file_ssh.setLevel(logging.INFO)
        setattr(file_ssh, _HANDLER_MARK, True)
        ssh_log.addHandler(file_ssh)
        levels.append(logging.DEBUG)
    fleet_log.setLevel(min(levels) if levels else logging.WARNING)
    has_ssh = any(getattr(h, _HANDLER_MARK, False) for h in ssh_log.handlers)
    ssh_log.setLevel(logging.INFO if has_ssh else logging.WARNING)


class _Stderr:
    """The current sys.stderr at each write (tests swap it; a handler keeps no stale stream)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
