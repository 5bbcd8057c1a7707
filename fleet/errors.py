"""The one exception root of fleet and the exit codes of the CLI.

Exceptions are for "the whole command cannot continue". A host that fails is
data (`fleet.report.results.HostResult`), never an exception thrown through the others.
"""
from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """Exit codes of the `fleet` command (docs/contract.md)."""

    OK = 0
    FAILED = 1          # a host or a file failed; `scan --fail-on` matched; a restore refused
    USAGE = 2           # bad usage, inventory, playbook or run id: nothing was run
    OVERLAP = 3         # `fleet schedule run`: the same schedule is still running
    INTERRUPTED = 130


class FleetError(Exception):
    """Root of every error fleet expects; the CLI prints it as one line."""

    exit_status: ExitStatus = ExitStatus.FAILED


class UsageError(FleetError):
    exit_status = ExitStatus.USAGE


class ConfigError(FleetError):
    """Inventory, playbook or schedule config is invalid.

    `problems` holds every problem found (validation reports all at once), each
    already prefixed with its file and key, e.g.
    ``inventory.toml: hosts.t440.port: expected an integer, got "22a"``.
    """

    exit_status = ExitStatus.USAGE

    def __init__(self, problems: list[str] | str):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class InventoryError(ConfigError):
    pass


class PlaybookError(ConfigError):
    pass


class UnknownRunError(FleetError):
    exit_status = ExitStatus.USAGE


class ConnectionFailed(FleetError):
    """A host could not be reached; carried as a HostResult error, not raised to the CLI."""


class NothingToRestore(FleetError):
    """A restore found no file with a backup in the run (for the hosts and agents asked): nothing was done."""
